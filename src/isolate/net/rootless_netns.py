"""The rootless network namespace: where an ordinary user's bridge networks live, as podman's
rootless netns.

Owns :class:`UserNetns`: one network namespace per user and store (the store's ``networks/``
directory holds its record, ``rootless-netns.json``), inside a user namespace the user owns --
mapping the user's own id and subordinate ranges as :func:`isolate.namespaces.rootless_maps`
does, or, where the namespace playing the host is itself one of the user's user namespaces (a
test's), nested inside that. A small holder process (``sleep infinity``, detached) keeps both
namespaces alive between the commands that use them, and pasta (slirp4netns where pasta is
missing) gives it a way out through the host's namespace. Inside it, :class:`isolate.net.Networks`
builds bridges, veths, nftables rules and resolvers exactly as root does in the host's.

It is made on first use and torn down (pasta and the holder stopped, the record removed) by the
last user that finds it idle -- no endpoint on any network -- when closing; the networks'
records stay, and their bridges are made again in the next namespace. Users hold a shared
``flock`` on ``rootless-netns.lock`` while they use it; making and tearing down take it
exclusively. Also :func:`nested_namespaces`, a user and network namespace made inside another
user namespace of the caller's (a container's, inside the rootless netns's).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from isolate import _json as json
from isolate.errors import ConfigError, IsolateOSError, NamespaceError, NetworkError
from isolate.net._helpers import HelperProcess, boot_id
from isolate.net._ns import NetNamespace, NetnsLike, _default_env
from isolate.net.rootless import UserModeNetwork, attach_user_mode, find_program, loopback_up

__all__ = ["LOCK", "PASTA_DNS", "RECORD", "SLIRP_DNS", "MakeNamespaces", "UserNetns",
           "nested_namespaces"]

#: What makes the rootless netns's user and network namespaces when the host's namespace is
#: the caller's own: ``() -> (user fd, net fd)``, new fds the callee owns (the container layer
#: passes one mapping :func:`isolate.namespaces.rootless_maps`).
MakeNamespaces = Callable[[], tuple[int, int]]

#: The record of the rootless netns in the networks directory, and its lock file.
RECORD = "rootless-netns.json"
LOCK = "rootless-netns.lock"
#: Where pasta answers DNS inside the rootless netns (forwarded to the host's resolvers, also
#: a loopback one such as systemd-resolved's), and slirp4netns's resolver.
PASTA_DNS = "169.254.1.1"
SLIRP_DNS = "10.0.2.3"


class UserNetns:
    """A user of the rootless network namespace of ``directory`` (made if there is none):
    :attr:`netns` (with its user namespace), :attr:`holder_pid`, :attr:`created` (whether
    this call made it), :attr:`upstream` (the DNS server pasta or slirp4netns answers on in
    it). Close it with :meth:`close` (``idle``: whether nothing uses it any more).

    ``host``: the namespace playing the host (pasta runs and publishes there; default the
    caller's); ``make_namespaces``: see :data:`MakeNamespaces`. Raises ConfigError (no
    ``make_namespaces`` where one is needed), UnsupportedError (neither pasta nor
    slirp4netns; newuidmap missing for a range), NamespaceError / NetworkError (the kernel
    or pasta refused: nothing is left running).
    """

    def __init__(self, directory: str, host: NetnsLike = None, *,
                 program: str | None = None,
                 make_namespaces: MakeNamespaces | None = None) -> None:
        self.directory = directory
        self._make_namespaces = make_namespaces
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = os.open(os.path.join(directory, LOCK),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with NetNamespace.of(host) as hostns:
                self.netns, self.holder_pid, self.upstream, self.created = \
                    self._open(hostns, program)
        except BaseException:
            os.close(self._lock)
            raise

    # -- the record --------------------------------------------------------------------------
    def _path(self) -> str:
        return os.path.join(self.directory, RECORD)

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self._path(), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("boot") != boot_id():
            return None
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self._path() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path())

    @staticmethod
    def _holder(data: dict[str, Any] | None) -> HelperProcess | None:
        return HelperProcess.from_json(data.get("holder")) if data else None

    def _attach(self, data: dict[str, Any] | None) -> tuple[NetNamespace, int, str] | None:
        """Open the recorded namespace if its holder still runs (checked again after the
        fds are open, so a recycled pid is never taken for it)."""
        holder = self._holder(data)
        if data is None or holder is None or not holder.alive():
            return None
        try:
            ns = NetNamespace.of(f"/proc/{holder.pid}/ns/net",
                                 userns=f"/proc/{holder.pid}/ns/user")
        except NetworkError:
            return None
        if not holder.alive():
            ns.close()
            return None
        return ns, holder.pid, str(data.get("upstream") or PASTA_DNS)

    def _open(self, host: NetNamespace, program: str | None
              ) -> tuple[NetNamespace, int, str, bool]:
        while True:
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            found = self._attach(self._read())
            if found is not None:
                return (*found, False)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            data = self._read()
            found = self._attach(data)
            created = found is None
            if found is None:
                self._stop(data)  # what a dead holder's record still names (pasta)
                found = self._make(host, program)
            # Back to shared -- not atomic: whoever tears it down in between wins, and this
            # starts over.
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            holder = self._holder(self._read())
            if holder is not None and holder.pid == found[1] and holder.alive():
                return (*found, created)
            found[0].close()

    def _make(self, host: NetNamespace, program: str | None) -> tuple[NetNamespace, int, str]:
        name, _ = find_program(program)
        user_fd, net_fd = _make_namespaces(host, self._make_namespaces)
        ns = NetNamespace(net_fd, user_fd)
        holder: HelperProcess | None = None
        link: UserModeNetwork | None = None
        try:
            sleep = shutil.which("sleep", path=_default_env()["PATH"]) or "sleep"
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                child = ns.spawn([sleep, "infinity"], fds=(null, null, null), detach=True)
            finally:
                os.close(null)
            holder = HelperProcess.of(child.pid, "rootless netns holder")
            child.close()  # (leaving a ``with`` would kill it)
            loopback_up(ns)
            upstream = PASTA_DNS if name == "pasta" else SLIRP_DNS
            extra = ["--dns-forward", PASTA_DNS] if name == "pasta" else []
            link = attach_user_mode(ns, host=host, program=name, extra_args=extra)
            self._write({"holder": holder.to_json(), "link": link.to_json(),
                         "upstream": upstream, "boot": boot_id(),
                         "inode": os.fstat(ns.fileno()).st_ino})
        except BaseException:
            for helper in (link, holder):
                if helper is not None:
                    helper.stop()
            ns.close()
            raise
        return ns, holder.pid, upstream

    @staticmethod
    def _stop(data: dict[str, Any] | None) -> None:
        """Stop what a record names (pasta first: its ports close; then the holder)."""
        if not data:
            return
        link = data.get("link")
        if isinstance(link, dict):
            with contextlib.suppress(Exception):
                UserModeNetwork.from_json(link).stop()
        holder = HelperProcess.from_json(data.get("holder"))
        if holder is not None:
            holder.stop()

    # -- closing -----------------------------------------------------------------------------
    def close(self, idle: Callable[[], bool] | None = None) -> bool:
        """Stop using the namespace; with ``idle`` (asked only when no other process uses it:
        an exclusive lock is to be had at once), tear it down if ``idle()`` says nothing is
        left in it. Returns whether it was torn down. Idempotent."""
        if self._lock < 0:
            return False
        done = False
        try:
            if idle is not None:
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    pass  # another user: the last one tears it down
                else:
                    if idle():
                        self._stop(self._read())
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._path())
                        done = True
        finally:
            self.netns.close()
            os.close(self._lock)
            self._lock = -1
        return done

    def __enter__(self) -> UserNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- maps --------------------------------------------------------------------------------
    def maps(self, which: str) -> list[tuple[int, int, int]]:
        """The holder's ``uid``/``gid`` map as the caller sees it: ``(inside, outside,
        count)`` with outside ids of the caller's user namespace."""
        return _read_map(f"/proc/{self.holder_pid}/{which}_map")


def _read_map(path: str) -> list[tuple[int, int, int]]:
    with open(path) as f:
        return [(int(a), int(b), int(c)) for a, b, c in
                (line.split() for line in f if len(line.split()) == 3)]


def _make_namespaces(host: NetNamespace, make: MakeNamespaces | None
                     ) -> tuple[int, int]:
    """``(user fd, net fd)`` of the rootless netns: nested in ``host``'s user namespace when
    it has one (mapping its ids), else what ``make`` gives (the caller's choice of maps)."""
    if host.userns_fd >= 0:
        return nested_namespaces(host)
    if make is None:
        raise ConfigError("a rootless netns in the caller's own user namespace needs "
                          "make_namespaces (a new user namespace with the rootless maps)")
    return make()


def _translate(wanted: Sequence[Any], ranges: Sequence[tuple[int, int, int]]) -> str | None:
    """``wanted`` (IdMap lines in the caller's ids) as lines of a namespace nested in one
    mapping ``ranges``; None if some id of ``wanted`` is not mapped there."""
    out = []
    for m in wanted:
        for inside, outside, count in ranges:
            if outside <= m.outside and m.outside + m.count <= outside + count:
                out.append(f"{m.inside} {inside + m.outside - outside} {m.count}\n")
                break
        else:
            return None
    return "".join(out)


def nested_namespaces(host: NetNamespace, *, uid_map: Sequence[Any] = (),
                      gid_map: Sequence[Any] = (), holder_pid: int | None = None
                      ) -> tuple[int, int]:
    """``(user fd, net fd)``: a user namespace made inside ``host``'s (which the caller owns)
    and a network namespace it owns -- so that helpers of ``host`` (pasta, isolate.net's
    netlink sockets) act in them as root. Its maps are ``uid_map``/``gid_map`` (IdMap lines
    in the caller's ids) where ``host``'s user namespace maps every id they name, else
    ``host``'s ids one to one. ``holder_pid``: a process of ``host``'s user namespace, whose
    maps the caller reads (else a child of ``host`` reads them, seeing its parent's ids).

    Raises NamespaceError (the kernel refused).
    """
    from isolate import _plan, lowlevel
    from isolate._plan import Mode, Op, OpKind, Plan

    maps = {}
    for which, wanted in (("uid", uid_map), ("gid", gid_map)):
        if holder_pid is not None:
            ranges = _read_map(f"/proc/{holder_pid}/{which}_map")
        else:
            text = host.run(["cat", f"/proc/self/{which}_map"]).stdout.decode()
            ranges = [(int(f[0]), int(f[1]), int(f[2])) for f in
                      (line.split() for line in text.splitlines()) if len(f) == 3]
        lines = _translate(wanted, ranges) if wanted else None
        maps[which] = lines or "".join(f"{i} {i} {c}\n" for i, _, c in ranges)
    join_user = Op(OpKind.SETNS, a=host.userns_fd, b=_plan.CLONE_NEWUSER,
                   note="join the host's user namespace")
    p = Plan(0, Mode.FORK)
    p.add(join_user)
    p.add(_plan.unshare(_plan.CLONE_NEWUSER | _plan.CLONE_NEWNET,
                        note="unshare the container's user and network namespaces"))
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pipe = [ready_r, ready_w]
    p.add(_plan.write_file(f"/proc/self/fd/{ready_w}", b"R"))
    p.add(_plan.wait_parent(note="wait for the maps"))
    got: list[int] = []

    def step(pid: int) -> None:
        # Only a process of the host's user namespace may write the new one's maps.
        pipe.remove(ready_w)
        os.close(ready_w)
        if not os.read(ready_r, 1):
            return   # it failed: its error follows
        for kind in ("user", "net"):
            got.append(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
        writer = Plan(0, Mode.VFORK)
        writer.add(join_user)
        for which in ("uid", "gid"):
            writer.add(_plan.write_file(f"/proc/{pid}/{which}_map", maps[which].encode()))
        with lowlevel.spawn(writer) as w:
            w.wait()
    try:
        try:
            with lowlevel.spawn(p, parent_step=step) as child:
                child.wait()
        finally:
            for fd in pipe:
                os.close(fd)
    except BaseException as exc:
        for fd in got:
            os.close(fd)
        if isinstance(exc, IsolateOSError):
            raise NamespaceError(exc.errno or errno.EIO, f"make a user and network namespace "
                                 f"inside another: {exc.message}", step="userns") from exc
        raise
    return got[0], got[1]
