"""Acting in a network namespace without ever entering it.

Owns :class:`NetNamespace`: a handle on the namespace that plays "the host" or a container, and
the three ways isolate acts in one -- a socket made there by a short-lived child (``SETNS`` then
``SOCKET`` with a shared fd table, so netlink and listening sockets belong to that namespace),
a program run there (``nft``, the resolver, the proxy, pasta), and sysctls written there. The
calling process never changes its own namespaces: no ``setns`` in Python, no pyroute2
``pushns``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import socket
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

from isolate import _plan, _sys, lowlevel
from isolate._plan import Mode, Op, OpKind, Plan
from isolate.errors import ConfigError, IsolateOSError, NetworkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["NetNamespace", "NetnsLike"]

_Socket = socket.socket  # (inside the class, ``socket`` is a method's name)

_NS_GET_NSTYPE = 0xB703


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


#: What the functions of isolate.net take for a network namespace: a handle, a path
#: (``/proc/PID/ns/net``, a bind mount such as ``/run/netns/NAME``), an open fd, an object with
#: ``fileno()`` (an :class:`isolate.Namespace`), or None for the caller's own.
NetnsLike: TypeAlias = "NetNamespace | str | os.PathLike[str] | int | _HasFileno | None"


class NetNamespace:
    """A network namespace held by an O_CLOEXEC fd, optionally with the user namespace that
    owns it (joined first by every child, so that an unprivileged caller acts as root of its
    own rootless namespaces).

    Make one with :meth:`of`; close it (or use ``with``). Equal handles name the same namespace.
    """

    def __init__(self, fd: int, userns_fd: int = -1, *, path: str | None = None) -> None:
        self._fd = fd
        self._userns_fd = userns_fd
        st = os.fstat(fd)
        self.identity: tuple[int, int] = (st.st_dev, st.st_ino)
        #: The path it was opened from, when it was (informational: records show it).
        self.path = path

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def of(cls, where: NetnsLike = None, *, userns: object = None) -> NetNamespace:
        """Open ``where`` (see :data:`NetnsLike`; None: the caller's own namespace).

        ``userns``: the user namespace to join before it (a path, fd or handle), for a
        namespace owned by a user namespace of the caller's. A :class:`NetNamespace` given as
        ``where`` is duplicated, so the result is always the caller's to close.

        Raises NetworkError (cannot open, not a network namespace), ConfigError (bad type).
        """
        if isinstance(where, NetNamespace):
            fd = os.dup(where.fileno())
            ufd = os.dup(where._userns_fd) if where._userns_fd >= 0 else -1
            return cls(fd, ufd, path=where.path)
        fd, path = _open_ns(where if where is not None else "/proc/thread-self/ns/net",
                            _plan.CLONE_NEWNET, "network")
        ufd = -1
        try:
            if userns is not None:
                ufd, _ = _open_ns(userns, _plan.CLONE_NEWUSER, "user")
            return cls(fd, ufd, path=path if where is not None else None)
        except BaseException:
            os.close(fd)
            if ufd >= 0:
                os.close(ufd)
            raise

    @classmethod
    def create(cls, *, userns: object = None) -> NetNamespace:
        """A new network namespace (only ``lo``, down), alive while the handle is open; with
        ``userns`` it is made inside, and owned by, that user namespace (joined first).

        Raises NetworkError (the kernel refused: EPERM without privilege).
        """
        ufd = _open_ns(userns, _plan.CLONE_NEWUSER, "user")[0] if userns is not None else -1
        p = Plan(0, Mode.VFORK, share_files=True)
        if ufd >= 0:
            p.add(Op(OpKind.SETNS, a=ufd, b=_plan.CLONE_NEWUSER, note="join the user namespace"))
        p.add(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWNET, note="unshare a network namespace"))
        p.add(_plan.open_("/proc/thread-self/ns/net", note="open the new network namespace"))
        try:
            with lowlevel.spawn(p) as child:
                child.wait()
                fd = child.opened[len(p.ops) - 1]
        except IsolateOSError as exc:
            if ufd >= 0:
                os.close(ufd)
            raise NetworkError(exc.errno or errno.EIO, f"create a network namespace: "
                               f"{exc.message}", step="unshare") from exc
        return cls(fd, ufd)

    def fileno(self) -> int:
        """The namespace's nsfs fd (owned by the handle)."""
        if self._fd < 0:
            raise ValueError("the network namespace handle is closed")
        return self._fd

    @property
    def userns_fd(self) -> int:
        """The fd of the owning user namespace to join first, or -1."""
        return self._userns_fd

    @property
    def is_current(self) -> bool:
        """Whether this is the calling thread's own network namespace."""
        st = os.stat("/proc/thread-self/ns/net")
        return (st.st_dev, st.st_ino) == self.identity and self._userns_fd < 0

    def close(self) -> None:
        """Release what this handle holds (fds, netlink sockets); idempotent."""
        for name in ("_fd", "_userns_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"{self!r} was not closed", ResourceWarning, stacklevel=2,
                          source=self)
            self.close()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetNamespace):
            return NotImplemented
        return self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        return f"<NetNamespace net:[{self.identity[1]}]{' ' + self.path if self.path else ''}>"

    # -- acting in it ---------------------------------------------------------------------------
    def join_ops(self) -> list[Op]:
        """The plan operations that put a child into this namespace (user namespace first);
        none for the caller's own (which an ordinary user may not setns into, even though the
        child is there already)."""
        if self.is_current:
            return []
        ops = []
        if self._userns_fd >= 0:
            ops.append(Op(OpKind.SETNS, a=self._userns_fd, b=_plan.CLONE_NEWUSER,
                          note="join the owning user namespace"))
        ops.append(Op(OpKind.SETNS, a=self.fileno(), b=_plan.CLONE_NEWNET,
                      note=f"join network namespace {self.identity[1]}"))
        return ops

    def socket(self, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM,
               proto: int = 0) -> socket.socket:
        """A new socket that lives in this namespace (made by a child that joined it).

        Raises NetworkError naming the step that failed.
        """
        return self.sockets([(family, type_, proto)])[0]

    def sockets(self, specs: Sequence[tuple[int, int, int]], *,
                sysctls: Mapping[str, str] | None = None) -> list[_Socket]:
        """New sockets (``(family, type, proto)`` each) that live in this namespace, all made
        by one child, which first sets ``sysctls`` (as :meth:`write_sysctls`): one short-lived
        child however many there are.

        Raises ConfigError (not a net.* sysctl), NetworkError naming the step that failed.
        """
        files = {_sysctl_path(k): str(v).encode() for k, v in (sysctls or {}).items()}
        if self.is_current:
            self._write_here(files)
            return [socket.socket(f, t, p) for f, t, p in specs]
        p = Plan(0, Mode.VFORK, share_files=True)
        p.extend(self.join_ops())
        p.extend(_plan.write_file(path, data) for path, data in files.items())
        first = len(p.ops)
        p.extend(_plan.socket_(f, t, pr) for f, t, pr in specs)
        try:
            with lowlevel.spawn(p) as child:
                child.wait()
                fds = [child.opened[i] for i in range(first, len(p.ops))]
        except IsolateOSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"make sockets in {self!r}: "
                               f"{exc.message}", exc.filename,
                               step=exc.step or "socket") from exc
        return [socket.socket(fileno=fd) for fd in fds]

    def netlink(self, *, sysctls: Mapping[str, str] | None = None) -> IPRoute:
        """A pyroute2 ``IPRoute`` whose netlink socket lives in this namespace (close it);
        the child that makes it first sets ``sysctls`` (as :meth:`write_sysctls`)."""
        from pyroute2 import IPRoute

        sock = self.sockets([(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)], sysctls=sysctls)[0]
        try:
            return IPRoute(fileno=sock.detach(), groups=0)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _write_here(files: Mapping[str, bytes]) -> None:
        for path, data in files.items():
            try:
                with open(path, "wb") as f:
                    f.write(data)
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"set sysctl {path}",
                                   path, step="sysctl") from exc

    def write_sysctls(self, values: Mapping[str, str]) -> None:
        """Set ``net.*`` sysctls of this namespace (``{"net.ipv4.ip_forward": "1"}``).

        /proc/sys/net shows the namespace of the process that opens it, so a child that joined
        this one writes them. Raises ConfigError (not a net.* name), NetworkError.
        """
        if not values:
            return
        files = {_sysctl_path(k): str(v).encode() for k, v in values.items()}
        if self.is_current:
            self._write_here(files)
            return
        p = Plan(0, Mode.VFORK)
        p.extend(self.join_ops())
        p.extend(_plan.write_file(path, data) for path, data in files.items())
        try:
            with lowlevel.spawn(p) as child:
                child.wait()
        except IsolateOSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"set sysctls in {self!r}: "
                               f"{exc.message}", exc.filename, step="sysctl") from exc

    def read_sysctl(self, name: str) -> str:
        """The value of a ``net.*`` sysctl of this namespace. Raises ConfigError, NetworkError."""
        path = _sysctl_path(name)
        if self.is_current:
            try:
                with open(path) as f:
                    return f.read().strip()
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"read sysctl {name}", path,
                                   step="sysctl") from exc
        out = self.run(["cat", path]).stdout
        return out.decode().strip()

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              fds: Sequence[int] = (), detach: bool = False) -> lowlevel.Child:
        """Start ``argv`` in this namespace, with ``fds`` as its fds 0, 1, 2, 3... (every other
        fd closed).

        ``detach=True`` makes it a daemon that nobody has to reap: a shell starts it in the
        background in a session of its own and exits at once, saying its pid (the returned
        handle then only holds its pidfd, for signals; its stdout is /dev/null). The child is
        the caller's to close (and, without ``detach``, to wait for).

        Raises NetworkError (cannot join, program missing: ``errno`` ENOENT).
        """
        pid_r = pid_w = -1
        if detach:
            # The shell's stdout is the pid pipe; the daemon's is /dev/null. ``setsid`` execs
            # in place (a background job is no group leader), so $! is the daemon's pid.
            pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
            fds = [fds[0] if fds else pid_w, pid_w, *fds[2:]]
            argv = ["sh", "-c", 'setsid "$@" >/dev/null & echo $!', "sh", *argv]
        p = Plan(0, Mode.VFORK)
        p.extend(self.join_ops())
        p.add(_plan.fds([(fd, i, False) for i, fd in enumerate(fds)]))
        p.add(_plan.exec_(argv[0], argv, env if env is not None else _default_env()))
        try:
            try:
                child = lowlevel.spawn(p)
            finally:
                if pid_w >= 0:
                    os.close(pid_w)
        except IsolateOSError as exc:
            if pid_r >= 0:
                os.close(pid_r)
            what = f"start {argv[0]} in {self!r}"
            if exc.errno == errno.ENOENT and exc.step == "exec":
                what = f"{argv[0]} is not installed (not found on PATH)"
            raise NetworkError(exc.errno or errno.EIO, what, exc.filename,
                               step=exc.step) from exc
        if not detach:
            return child
        with child, os.fdopen(pid_r, "rb") as f:
            text = f.read().strip()
            child.wait()
        try:
            pid = int(text)
            pidfd = _sys.pidfd_open(pid)
        except (ValueError, IsolateOSError) as exc:
            raise NetworkError(errno.ESRCH, f"{argv[4]} did not start in {self!r}",
                               step="spawn") from exc
        return lowlevel.Child(pid, pidfd)

    def run(self, argv: Sequence[str], input: bytes = b"", *, check: bool = True,
            env: Mapping[str, str] | None = None) -> _Result:
        """Run ``argv`` in this namespace to its end, feeding ``input`` on stdin.

        Raises NetworkError (it could not start; with ``check``, it exited non-zero: the
        message holds its stderr).
        """
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                child = self.spawn(argv, env=env, fds=(in_r, out_w, err_w))
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            with child:
                out, err = _communicate(in_w, input, out_r, err_r)
                in_w = -1
                code = child.wait()
        finally:
            for fd in (in_w, out_r, err_r):
                if fd >= 0:
                    os.close(fd)
        result = _Result(code, out, err)
        if check and code != 0:
            message = err.decode(errors="replace").strip() or out.decode(errors="replace")
            raise NetworkError(errno.EIO, f"{' '.join(argv[:3])} failed (exit {code}): "
                               f"{message.strip()[:2000]}", step=os.path.basename(argv[0]))
        return result


class _Result:
    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _default_env() -> dict[str, str]:
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":")
    # nft, pasta and slirp4netns live in sbin directories an ordinary user's PATH may lack.
    path += [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path]
    return {"PATH": ":".join(path), "LANG": "C.UTF-8"}


def _communicate(in_w: int, data: bytes, out_r: int, err_r: int) -> tuple[bytes, bytes]:
    """Write ``data`` to ``in_w`` (then close it) while reading ``out_r`` and ``err_r`` to EOF."""
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    view = memoryview(data)
    with selectors.DefaultSelector() as sel:
        if view:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        else:
            os.close(in_w)
        for fd in (out_r, err_r):
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                fd = key.fd
                if fd == in_w:
                    try:
                        n = os.write(in_w, view[:65536])
                    except BrokenPipeError:
                        n = len(view)
                    view = view[n:]
                    if not view:
                        sel.unregister(in_w)
                        os.close(in_w)
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    sel.unregister(fd)
    return b"".join(bufs[out_r]), b"".join(bufs[err_r])


def _sysctl_path(name: str) -> str:
    if not name.startswith("net.") or "/" in name or ".." in name or not name[4:]:
        raise ConfigError(f"only net.* sysctls belong to a network namespace, not {name!r}")
    return "/proc/sys/" + name.replace(".", "/")


def _open_ns(where: object, nstype: int, what: str) -> tuple[int, str | None]:
    path: str | None = None
    if isinstance(where, (str, os.PathLike)):
        path = os.fspath(where)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"open {what} namespace {path}",
                               path, step="open") from exc
    elif isinstance(where, int) and not isinstance(where, bool):
        fd = os.dup(where)
    elif hasattr(where, "fileno"):
        fd = os.dup(where.fileno())
    else:
        raise ConfigError(f"a {what} namespace is a path, an fd or a handle, not {where!r}")
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        os.close(fd)
        raise NetworkError(errno.EINVAL, f"{path or where!r} is not a namespace file",
                           path, step="open") from exc
    if kind != nstype:
        os.close(fd)
        raise NetworkError(errno.EINVAL, f"{path or where!r} is not a {what} namespace",
                           path, step="open")
    os.set_inheritable(fd, False)
    return fd, path


def python_argv(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
