"""Networking for ordinary users: pasta (Debian ``passt``), falling back to slirp4netns.

Owns :func:`attach_user_mode`, which gives a container's network namespace a way out and its
published ports through a user-mode network stack running in the host's namespace, and
:class:`UserModeNetwork`, the record of that helper (persist it; :meth:`UserModeNetwork.stop`
works from the record alone). No privilege is needed beyond owning the user namespace that
owns the container's network namespace. Also :func:`loopback_up` for the ``none`` mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence

from isolate import _json as json
from isolate import _record
from isolate.errors import ConfigError, NetworkError, UnsupportedError
from isolate.net._helpers import HelperProcess
from isolate.net._ns import NetNamespace, NetnsLike, _default_env
from isolate.net.ports import PortBinding, PortMapping, parse_publish

__all__ = ["PROGRAMS", "UserModeNetwork", "attach_user_mode", "find_program", "loopback_up"]

#: The user-mode network programs, in the order they are tried.
PROGRAMS = ("pasta", "slirp4netns")


def find_program(preferred: str | None = None) -> tuple[str, str]:
    """``(name, path)`` of the user-mode network program to use: ``preferred`` or the first
    of :data:`PROGRAMS` installed. Raises UnsupportedError naming what is missing."""
    path = _default_env()["PATH"]
    names = (preferred,) if preferred else PROGRAMS
    for name in names:
        if name not in PROGRAMS:
            raise ConfigError(f"unknown user-mode network program {name!r} "
                              f"(one of {', '.join(PROGRAMS)})")
        found = shutil.which(name, path=path)
        if found:
            return name, found
    wanted = " or ".join(names)
    raise UnsupportedError(f"rootless networking needs {wanted} (Debian packages passt, "
                           "slirp4netns); none is installed", missing=wanted)


@_record.record
class UserModeNetwork:
    """A running pasta/slirp4netns serving one network namespace, and the ports it
    publishes."""

    program: str
    process: HelperProcess
    ports: tuple[PortBinding, ...] = ()
    address: str | None = None

    def alive(self) -> bool:
        """Whether the helper process is still running (by pidfd or pid and start time)."""
        return self.process.alive()

    def stop(self) -> None:
        """Stop the helper (nothing if it is gone already): its ports close with it."""
        self.process.stop()

    def to_json(self) -> dict[str, object]:
        """The record as JSON-ready data, for the state files."""
        return {"program": self.program, "process": self.process.to_json(),
                "ports": [p.to_json() for p in self.ports], "address": self.address}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> UserModeNetwork:
        """The record back from what :meth:`to_json` wrote."""
        proc = HelperProcess.from_json(data["process"])  # type: ignore[arg-type]
        assert proc is not None
        ports = tuple(PortBinding.from_json(p) for p in data.get("ports") or ())  # type: ignore[attr-defined]
        return cls(str(data["program"]), proc, ports,
                   str(data["address"]) if data.get("address") else None)


def _bindings(host: NetNamespace, mappings: Sequence[PortMapping]) -> list[PortBinding]:
    """Resolve host ports (ephemeral ones chosen by the kernel), each checked free by a bind
    in the host's namespace."""
    bindings, held = hold_ports(host, mappings, listen=False)
    for sock in held:
        sock.close()
    return bindings


def hold_ports(host: NetNamespace, mappings: Sequence[PortMapping], *, listen: bool = True
               ) -> tuple[list[PortBinding], list[socket.socket]]:
    """Bind the host ports of ``mappings`` in ``host`` (ephemeral ones chosen by the kernel;
    a range takes its first free port): the bindings and their sockets, bound (TCP ones
    listening with ``listen``), one per binding in order -- the caller's to hand to a proxy
    or close. Raises ConfigError (a port in use; nothing stays bound)."""
    out: list[PortBinding] = []
    held: list[socket.socket] = []
    try:
        _bind_all(host, mappings, out, held, listen)
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return out, held


def _bind_all(host: NetNamespace, mappings: Sequence[PortMapping], out: list[PortBinding],
              held: list[socket.socket], listen: bool) -> None:
    for m in mappings:
        family = socket.AF_INET6 if ":" in m.host_ip else socket.AF_INET
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        addr = m.host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        for i, cport in enumerate(m.container_ports):
            cands = [0] if m.ephemeral else (
                list(range(m.host_start, m.host_end + 1)) if m.any_of_range
                else [m.host_start + i])
            for port in cands:
                if any(b.host_port == port and b.protocol == m.protocol for b in out):
                    continue
                s = host.socket(family, kind)
                try:
                    if kind == socket.SOCK_STREAM:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port))
                    if listen and kind == socket.SOCK_STREAM:
                        s.listen(128)
                except OSError:
                    s.close()
                    continue
                held.append(s)
                out.append(PortBinding(m.protocol, m.host_ip, s.getsockname()[1], cport))
                break
            else:
                raise ConfigError(f"host port {m} is already in use")


def _pasta_ports(bindings: Sequence[PortBinding]) -> list[str]:
    """pasta's -t/-u options: one per binding (an address-bound spec cannot share a list)."""
    args: list[str] = []
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        specs = [f"{b.host_ip + '/' if b.host_ip else ''}{b.host_port}:{b.container_port}"
                 for b in bindings if b.protocol == proto]
        for spec in specs or ["none"]:
            args += [flag, spec]
    return args


def attach_user_mode(netns: NetnsLike, *, ports: Sequence[str | PortMapping] = (),
                     host: NetnsLike = None, userns: object = None,
                     program: str | None = None, mtu: int = 65520,
                     extra_args: Sequence[str] = ()) -> UserModeNetwork:
    """Give ``netns`` (a container's network namespace) outbound access and publish
    ``ports`` through pasta, or slirp4netns where pasta is missing (``program`` forces one).

    ``host``: the namespace whose network the helper uses and where the ports are published
    (default: the caller's); ``userns``: the user namespace owning ``netns``, when the caller
    has no privilege over it otherwise (rootless). The helper keeps running after the caller
    exits; stop it with :meth:`UserModeNetwork.stop`.

    Raises UnsupportedError (neither program installed), ConfigError (malformed port, host
    port in use), NetworkError (the program failed; its message is included).
    """
    mappings = [parse_publish(p) if isinstance(p, str) else p for p in ports]
    name, path = find_program(program)
    with NetNamespace.of(host) as hostns, NetNamespace.of(netns, userns=userns) as inner:
        bindings = _bindings(hostns, mappings)
        if name == "pasta":
            return _pasta(path, hostns, inner, bindings, mtu, extra_args)
        return _slirp4netns(path, hostns, inner, bindings, mtu, extra_args)


def _joins_userns(host: NetNamespace, inner: NetNamespace) -> bool:
    """Whether the helper (running where ``host`` puts it) must join the container's user
    namespace: it has one, and it is not the one the helper already runs in."""
    if inner.userns_fd < 0:
        return False
    if host.userns_fd < 0:
        return True
    a, b = os.fstat(inner.userns_fd), os.fstat(host.userns_fd)
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)


def _target_args(host: NetNamespace, inner: NetNamespace, fds: list[int], flag_netns: str,
                 flag_userns: str | None) -> list[str]:
    """Arguments naming the container's namespaces through fds handed to the helper."""
    args = [flag_netns, f"/proc/self/fd/{len(fds)}"]
    fds.append(inner.fileno())
    if _joins_userns(host, inner) and flag_userns is not None:
        args += [flag_userns, f"/proc/self/fd/{len(fds)}"]
        fds.append(inner.userns_fd)
    return args


def _pasta(path: str, host: NetNamespace, inner: NetNamespace,
           bindings: Sequence[PortBinding], mtu: int, extra: Sequence[str]) -> UserModeNetwork:
    tmp = tempfile.mkdtemp(prefix="isolate-pasta-")
    try:
        pidfile = os.path.join(tmp, "pid")
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fds = [null, null, null]
        args = [path, "--config-net", "--quiet", "--mtu", str(mtu),
                *_pasta_ports(bindings), "-T", "none", "-U", "none", "--pid", pidfile, *extra]
        if os.geteuid() == 0 and host.userns_fd < 0:
            # As root pasta would switch to nobody, who may not join the namespace.
            args += ["--runas", "0:0"]
        args += _target_args(host, inner, fds, "--netns", "--userns")
        if not _joins_userns(host, inner):
            args.append("--netns-only")
        # pasta forks itself into the background once the namespace is configured and its
        # ports are bound; the foreground process exits 0 then, or non-zero with a message.
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        fds[2] = err_w
        try:
            child = host.spawn(args, fds=fds)
        finally:
            os.close(err_w)
            os.close(null)
        with child:
            code = child.wait()
        with os.fdopen(err_r, "rb") as f:
            # The daemon inherits the pipe too (it is its stderr until it detaches): read only
            # what is there now.
            os.set_blocking(f.fileno(), False)
            message = (f.read() or b"").decode(errors="replace").strip()
        if code != 0:
            raise NetworkError(errno.EIO, f"pasta failed (exit {code}): {message}",
                               step="pasta")
        pid = _read_pid(pidfile)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return UserModeNetwork("pasta", HelperProcess.of(pid, "pasta"), tuple(bindings))


def _read_pid(path: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        if time.monotonic() > deadline:
            raise NetworkError(errno.ETIMEDOUT, f"the helper wrote no pid to {path}",
                               step="pid")
        time.sleep(0.01)


def _slirp4netns(path: str, host: NetNamespace, inner: NetNamespace,
                 bindings: Sequence[PortBinding], mtu: int, extra: Sequence[str]
                 ) -> UserModeNetwork:
    # slirp4netns stays in the foreground: ``setsid -f`` detaches it (nobody has to reap
    # it), and a shell line says its pid before it becomes slirp4netns.
    setsid = shutil.which("setsid", path=_default_env()["PATH"])
    if setsid is None:
        raise UnsupportedError("the slirp4netns fallback needs setsid (util-linux)",
                               missing="setsid")
    tmp = tempfile.mkdtemp(prefix="isolate-slirp-")
    try:
        api = os.path.join(tmp, "api.sock")
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        fds = [null, null, null, pid_w, ready_w]
        target = _target_args(host, inner, fds, "--netns-type=path", None)
        userns = []
        if _joins_userns(host, inner):
            userns = [f"--userns-path=/proc/self/fd/{len(fds)}"]
            fds.append(inner.userns_fd)
        cmd = [path, "--configure", f"--mtu={min(mtu, 65520)}", "--disable-host-loopback",
               "--ready-fd=4", f"--api-socket={api}", *userns, "--netns-type=path",
               *extra, target[1], "tap0"]
        script = 'echo $$ >&3; exec 3>&-; exec "$@"'
        try:
            child = host.spawn([setsid, "-f", "sh", "-c", script, "sh", *cmd], fds=fds)
        finally:
            for fd in (null, pid_w, ready_w):
                os.close(fd)
        with child:
            child.wait()
        try:
            with os.fdopen(pid_r, "rb") as f:
                pid = int(f.read().strip() or b"0")
            with os.fdopen(ready_r, "rb") as f:
                ready = f.read(1)
        except ValueError:
            pid, ready = 0, b""
        if not pid or ready != b"1":
            raise NetworkError(errno.EIO, "slirp4netns did not configure the namespace",
                               step="slirp4netns")
        proc = HelperProcess.of(pid, "slirp4netns")
        try:
            for b in bindings:
                _slirp_forward(api, b)
        except BaseException:
            proc.stop()
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return UserModeNetwork("slirp4netns", proc, tuple(bindings), "10.0.2.100")


def _slirp_forward(api: str, b: PortBinding) -> None:
    request = {"execute": "add_hostfwd", "arguments": {
        "proto": b.protocol, "host_addr": b.host_ip or "0.0.0.0", "host_port": b.host_port,
        "guest_port": b.container_port}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(api)
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        reply = json.loads(s.recv(65536) or b"{}")
    if "error" in reply:
        raise NetworkError(errno.EIO, f"slirp4netns refused to publish {b}: "
                           f"{reply['error']}", step="slirp4netns")


def loopback_up(netns: NetnsLike, *, userns: object = None) -> None:
    """Bring up ``lo`` in ``netns`` (the ``none`` mode). Raises NetworkError."""
    from pyroute2.netlink.exceptions import NetlinkError

    with NetNamespace.of(netns, userns=userns) as ns, ns.netlink() as ipr:
        try:
            idx = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=idx, state="up")
        except (NetlinkError, IndexError) as exc:
            raise NetworkError(getattr(exc, "code", None) or errno.ENODEV,
                               "bring up lo", step="netlink") from exc
