"""The CGroup handle: create, open, fill, limit, freeze, kill and delete one cgroup.

Owns where isolate's cgroups live (an ``isolate`` sub-tree of the calling process's cgroup in
each hierarchy) and the lifecycle rules; the backends own the control files. It never
creates, writes or removes a cgroup outside the tree it is pointed at.

Many processes share one ``isolate`` base without a lock of their own: a delete removes the base
once it is empty (rmdir refuses while any group is in it), and a create that finds the base gone
between making it and making its group in it makes it again. A group with a generated name is
held by its creator (a shared flock on each of its directories, kept until it is deleted or the
process ends), so a sweep from any process, in any pid namespace, tells an orphan from a group
in use by trying for the lock -- and sweeps each hierarchy on its own, since v1 hierarchies may
place two processes in different cgroups. A group named by an id of 64 hex digits (a
container's) is held the same way, by its creator until it hands the lock on to the process
that outlives it (a supervisor, see :meth:`CGroup.hold_fds`), and swept once no one holds it
and no process is in it.
"""

from __future__ import annotations

import _thread  # (not threading: a container's start loads no threading)
import errno
import fcntl
import os
import select
import time
from _collections_abc import Iterable, Mapping, Sequence

from isolate import _ctx as contextlib
from isolate import _match
from isolate import _memo as functools
from isolate._procs import pid_alive
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.cgroups._backend import (
    Backend,
    Events,
    Stats,
    make_backend,
    read_file,
    read_optional,
    write_file,
)
from isolate.cgroups.detect import (
    V2_KEY,
    BackendKind,
    Hierarchy,
    Layout,
    detect,
    parse_proc_cgroup,
)
from isolate.cgroups.limits import Limits
from isolate.errors import CgroupError, ConfigError, UnsupportedError

if TYPE_CHECKING:
    from types import TracebackType

    from isolate.cgroups.devices import DeviceRule

__all__ = ["BASE_NAME", "SWEEP_INTERVAL", "CGroup", "host_layout"]

#: The name of the sub-tree, below the caller's own cgroup, that holds isolate's cgroups.
BASE_NAME = "isolate"

# Names the kernel uses for control files; a child cgroup must not shadow them.
_RESERVED_PREFIXES = ("cgroup.", "cpu.", "cpuacct.", "cpuset.", "memory.", "pids.", "io.",
                      "blkio.", "freezer.", "devices.", "hugetlb.", "rdma.", "misc.")


@functools.cache
def host_layout() -> Layout:
    """The cgroup layout of this host as seen by this process (detected once)."""
    return detect()


def add_note(exc: BaseException, note: str) -> None:
    """Attach ``note`` to ``exc`` (PEP 678; on Python 3.10 the note is kept but not shown)."""
    notes = getattr(exc, "__notes__", None)
    if notes is None:
        notes = []
        exc.__notes__ = notes  # type: ignore[attr-defined]
    notes.append(note)


# Generated names, ``cg-<creator pid>-<16 hex digits>`` (_match.generated_cgroup): held by
# their creator's flock. Ids (64 hex digits, as containers are named): held like generated
# names, by their creator or whoever it gave the lock to; swept when no one holds them and no
# process is in them. Generated names from before the lock (``cg-<pid>-<12 hex digits>``,
# _match.unlocked_cgroup_pid): judged by the creator pid they carry.
#: How often create makes a default base again that concurrent deletes keep pruning.
_ATTEMPTS = 64
#: Seconds between two orphan sweeps of one base by creates of one process: the first create
#: on a base always sweeps it, later ones only once this much time has passed. Listing a base
#: in every hierarchy costs more than the rest of a create where many groups share it (0.46 ms
#: with ~110 groups of other sessions here), and orphans appear only when a creator dies.
SWEEP_INTERVAL = 5.0

# Bases (their directories, one per hierarchy) -> when this process last swept them.
_swept: dict[tuple[str, ...], float] = {}
_swept_lock = _thread.allocate_lock()

# Directory -> an fd of it holding this process's shared flock, for each generated group this
# process made and has not deleted. Per process, not per CGroup object: a group stays held
# while its creator lives, whatever became of the object.
_held: dict[str, int] = {}
_held_lock = _thread.allocate_lock()


def _sweep_due(bases: tuple[str, ...]) -> bool:
    """Whether a create on ``bases`` sweeps them now (and if so, mark them swept): the first
    time in this process, then once per :data:`SWEEP_INTERVAL`."""
    now = time.monotonic()
    with _swept_lock:
        last = _swept.get(bases)
        if last is not None and now - last < SWEEP_INTERVAL:
            return False
        _swept[bases] = now
        return True


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ConfigError(f"name: expected a cgroup name like 'job-1', got {name!r}")
    parts = name.strip("/").split("/")
    for part in parts:
        if (not _match.cgroup_name(part) or part in (".", "..")
                or part.startswith(_RESERVED_PREFIXES)):
            raise ConfigError(f"name: {part!r} is not a usable cgroup name (in {name!r})")
    return "/".join(parts)


def _mkdir(path: str, layout: Layout) -> bool:
    """mkdir one cgroup; True if made, False if it existed. Maps refusals to UnsupportedError."""
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _refused(path, e.errno, layout) from e
        raise CgroupError(e.errno or errno.EIO, f"cannot create cgroup {path}", path,
                          step="create") from e


def _refused(path: str, code: int, layout: Layout) -> UnsupportedError:
    """Why this process may not make a cgroup at ``path``, and what would work."""
    what = f"cannot create cgroup {path}: {os.strerror(code)} for uid {os.geteuid()}"
    if os.geteuid() == 0:
        return UnsupportedError(f"{what} (the cgroup file system is read-only or "
                                "not ours here)", missing="write access to cgroups")
    if layout.kind is BackendKind.V2:
        return UnsupportedError(
            f"{what}; without root, cgroups need a delegated cgroup the user owns "
            "(e.g. systemd-run --user --scope -p Delegate=yes)",
            missing="cgroup delegation")
    v1 = ", ".join(sorted({c for h in layout.v1 for c in h.controllers} &
                          {"memory", "pids", "cpu", "cpuset", "blkio", "io"}))
    return UnsupportedError(
        f"{what}; this host is {layout.kind.value} (its {v1 or 'resource'} controllers are "
        "cgroup v1), and v1 controllers cannot be delegated to an ordinary user, so systemd "
        "delegation does not help here. What works: run as root, or boot with cgroup v2 only "
        "(systemd.unified_cgroup_hierarchy=1) and a delegated cgroup, or run without limits "
        "(best_effort=True; isolate run --best-effort)",
        missing="cgroup v2 controllers")


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CgroupError(e.errno or errno.EIO, f"cannot remove cgroup {path}", path,
                          step="delete") from e


def _base_of(h: Hierarchy) -> str:
    """The default base of hierarchy ``h``: ``isolate`` below the caller's cgroup there."""
    return h.dir_of(f"{h.self_path.rstrip('/')}/{BASE_NAME}")


#: The bases this process removed last (a hint, whoever made them since): a create makes
#: the base first there instead of finding it missing with its group's mkdir.
_pruned: set[str] = set()


def _make_base(h: Hierarchy, d: str, layout: Layout) -> None:
    """Make the base ``d`` of ``h`` unless it exists; on v1 cpuset, fill its cpus and mems
    (also when another creator made it and has not filled them yet) and have the kernel copy
    them into each group made in it (``cgroup.clone_children``), which spares every create
    reading the base and writing its group's (a group made before that is filled by
    :meth:`CGroup._make_dir`)."""
    _mkdir(d, layout)
    _pruned.discard(d)
    if h.version == 1 and "cpuset" in h.controllers:
        _copy_cpuset(os.path.dirname(d), d)
        with contextlib.suppress(CgroupError):
            write_file(os.path.join(d, "cgroup.clone_children"), "1", step="create")


def _hold(d: str) -> bool:
    """Take this process's shared flock on the cgroup ``d`` just made. False when ``d`` was
    removed before the lock was held (a sweep took the empty group for an orphan)."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise CgroupError(e.errno or errno.EIO, f"cannot open cgroup {d}", d,
                          step="create") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        held = os.fstat(fd)
        try:
            now: os.stat_result | None = os.stat(d)
        except FileNotFoundError:
            now = None
    except BaseException:
        os.close(fd)
        raise
    if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        os.close(fd)
        return False
    with _held_lock:
        old = _held.pop(d, None)
        _held[d] = fd
    if old is not None:
        os.close(old)
    return True


def _let_go(dirs: Iterable[str]) -> None:
    """Drop this process's flock on each of ``dirs`` (those it holds)."""
    with _held_lock:
        fds = [_held.pop(d) for d in dirs if d in _held]
    for fd in fds:
        os.close(fd)


def _subdirs(d: str) -> list[str]:
    """The child cgroups of ``d`` (none if it is gone or unreadable)."""
    try:
        with os.scandir(d) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _remove_empty_tree(d: str) -> bool:
    """rmdir ``d`` and the cgroups below it, deepest first; False (and the rest kept) as soon
    as one holds processes, is held by its creator, or cannot be removed."""
    for sub in _subdirs(d):
        if _match.generated_cgroup(os.path.basename(sub)):
            if not _remove_if_unheld(sub):
                return False
        elif not _remove_empty_tree(sub):
            return False
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _remove_if_unheld(d: str) -> bool:
    """Remove the generated group ``d`` (and empty groups below it) if no process holds its
    lock: its creator is gone. One that still has processes is left alone. True if it is
    gone now."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its creator lives, or another sweep is removing it
        return _remove_empty_tree(d)
    finally:
        os.close(fd)


def _populated(d: str) -> bool:
    """Whether a process is in the cgroup ``d`` or below it; True when that cannot be read
    (not ours to judge), False when ``d`` is gone."""
    try:
        with open(os.path.join(d, "cgroup.procs"), "rb") as f:
            if f.read().strip():
                return True
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return any(_populated(sub) for sub in _subdirs(d))


def _remove_unused(dirs: Sequence[str]) -> None:
    """Remove the directories ``dirs`` of one id group (:data:`_ID`), and the empty groups
    below them, if no process holds any of them (its supervisor is gone) and no process is in
    any of them; else leave them all. Each is locked exclusively meanwhile, so its creator
    (who locks it shared once made, see :func:`_hold`) waits and then finds it gone."""
    fds: list[int] = []
    try:
        for d in dict.fromkeys(dirs):
            try:
                fds.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                fcntl.flock(fds[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # held (its supervisor lives, or another sweep is at it), or gone
        if any(_populated(d) for d in dirs):
            return
        for d in dirs:
            _remove_empty_tree(d)
    finally:
        for fd in fds:
            os.close(fd)


def _cpuset_filled(d: str) -> bool:
    """Whether the v1 cpuset ``d`` has cpus and mems (a new one has neither, unless its
    parent has ``cgroup.clone_children`` set)."""
    return all(read_file(os.path.join(d, name), "create").strip()
               for name in ("cpuset.cpus", "cpuset.mems"))


def _copy_cpuset(parent: str, child: str) -> None:
    # A new v1 cpuset starts with no cpus and no mems, and refuses tasks until it has both.
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read_file(os.path.join(child, name), "create").strip():
            write_file(os.path.join(child, name),
                       read_file(os.path.join(parent, name), "create").strip(), step="create")


def _enable_v2_controllers(parent: str) -> None:
    # Children only get controller files that their parent lists in cgroup.subtree_control.
    offered = set(read_file(os.path.join(parent, "cgroup.controllers"), "create").split())
    enabled = set(read_file(os.path.join(parent, "cgroup.subtree_control"), "create").split())
    for controller in sorted(offered - enabled):
        try:
            write_file(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}",
                       step="create")
        except CgroupError:
            # EBUSY when the parent has processes of its own; a limit that needs the
            # controller then raises UnsupportedError saying exactly this.
            pass


class CGroup:
    """One cgroup, whichever way the host mounts cgroups (see :class:`BackendKind`).

    Get one from :meth:`create`, :meth:`open`, :meth:`from_pid` or :meth:`default_parent`; the
    constructor is not public. Used as a context manager, it is deleted on exit.
    """

    def __init__(self, layout: Layout, dirs: Mapping[str, str]) -> None:
        if len(dirs) < len(layout.hierarchies):
            # A group made in some of the v1 hierarchies only (as a container's is, in
            # those its processes join), seen through the whole host layout.
            layout = layout.only(lambda h: h.key in dirs)
        self._layout = layout
        self._dirs = dict(dirs)
        self._backend: Backend = make_backend(layout, self._dirs)
        #: Limits that :meth:`create` or :meth:`set_limits` skipped under best effort.
        self.skipped_limits: tuple[str, ...] = ()

    # ------------------------------------------------------------------ finding cgroups

    @classmethod
    def default_parent(cls, *, layout: Layout | None = None) -> CGroup:
        """The ``isolate`` cgroup below this process's own cgroup, created if missing.

        Groups made by other processes share it, and the last one deleted removes it (so a
        concurrent delete may remove it again once it is empty; :meth:`create` without a
        parent makes it again as needed).

        Raises :class:`UnsupportedError` when the process may not create it (rootless
        without delegation), :class:`CgroupError` for other failures.
        """
        layout = layout or host_layout()
        dirs = {h.key: _base_of(h) for h in layout.hierarchies}
        for h in layout.hierarchies:
            _make_base(h, dirs[h.key], layout)
        return cls(layout, dirs)

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        parent: CGroup | None = None,
        limits: Limits | None = None,
        best_effort: bool = False,
        layout: Layout | None = None,
    ) -> CGroup:
        """Create a new cgroup ``name`` (random if omitted) below ``parent`` and apply ``limits``.

        ``parent`` defaults to :meth:`default_parent`; then groups whose creator process is
        gone are removed first (see :meth:`_sweep_orphans`) -- by the first such create of a
        process, and after that once per :data:`SWEEP_INTERVAL` seconds. A group with a
        generated name, or named by an id of 64 hex digits, is held by this process until it
        is deleted, or let go of (:meth:`hold_fds`, :meth:`let_go`). With
        ``best_effort``, limits the host cannot honour are skipped and listed in
        :attr:`skipped_limits` instead of raising.
        Safe to call from many threads and processes at once.

        Raises :class:`ConfigError` for a bad name, :class:`CgroupError` (EEXIST if it exists
        already), :class:`UnsupportedError` when a limit's controller is missing or not
        delegated, or cgroups cannot be created by this user. Nothing is left behind on error.
        """
        # A generated name is held by this process (see _hold) until it deletes the group, so
        # a later create anywhere can tell a group whose creator was killed before it could
        # delete it from one still in use; the pid in it is for people reading the tree.
        # os.urandom is what secrets.token_hex reads; secrets would load hmac and hashlib
        # (~2.5 ms of every start of a process that makes a cgroup).
        name = _check_name(name) if name is not None else \
            f"cg-{os.getpid()}-{os.urandom(8).hex()}"
        # (Also a name given in the generated form.)
        held = _match.generated_cgroup(name) or _match.hex_string(name, 64, 64)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError(f"limits: expected a Limits, got {limits!r}")
        own_base = parent is None
        if parent is None:
            # The default base, made below as each hierarchy needs it (again, if a concurrent
            # delete prunes it meanwhile).
            layout = layout or host_layout()
            parent = cls(layout, {h.key: _base_of(h) for h in layout.hierarchies})
            if _sweep_due(tuple(parent._dirs.values())):
                parent._sweep_orphans()
        cg = cls(parent._layout, {k: os.path.join(d, name) for k, d in parent._dirs.items()})
        made: list[str] = []
        try:
            for h in cg._layout.hierarchies:
                d = cg._dirs[h.key]
                cg._make_dir(h, d, remake_base=own_base, hold=held)
                made.append(d)
            if limits is not None:
                cg.skipped_limits = cg._backend.apply(limits, best_effort)
        except BaseException as e:
            for d in reversed(made):
                try:
                    _rmdir(d)
                except CgroupError as cleanup:
                    add_note(e, f"while removing the half-made cgroup: {cleanup}")
            _let_go(made)
            raise
        return cg

    def _make_dir(self, h: Hierarchy, d: str, *, remake_base: bool, hold: bool) -> None:
        """Make this group's directory ``d`` in hierarchy ``h`` (and hold it).

        With ``remake_base`` the parent is the shared default base, which a concurrent delete
        removes whenever it happens to be empty: it is then made again and the group with it.
        A held group that a sweep removed before we held it (it was empty and unheld for a
        moment) is made again too.
        """
        parent = os.path.dirname(d)
        # On v1 the base is made only when the group's mkdir finds it missing (most creates
        # find it there) or this process removed it last; pure v2 enables its controllers
        # in it first, so it is made first.
        make_base = remake_base and (self.kind is BackendKind.V2 or parent in _pruned)
        for _ in range(_ATTEMPTS):
            try:
                if make_base:
                    _make_base(h, parent, self._layout)
                if self.kind is BackendKind.V2:
                    # Only pure v2 takes controllers from v2; enabling them on a hybrid host
                    # would just forbid processes in parents ("no internal processes").
                    _enable_v2_controllers(parent)
                if not _mkdir(d, self._layout):
                    raise CgroupError(errno.EEXIST, f"cgroup {d} already exists", d,
                                      step="create")
            except CgroupError as e:
                # ENOENT: the base was gone; ENODEV: it went while we read its files.
                if remake_base and e.errno in (errno.ENOENT, errno.ENODEV):
                    make_base = True
                    continue
                raise
            try:
                if hold and not _hold(d):
                    continue
                if h.version == 1 and "cpuset" in h.controllers and not _cpuset_filled(d):
                    if remake_base:
                        # The base may be a new one, made by another creator that has not
                        # filled it yet; with our group in it, it stays now.
                        _copy_cpuset(os.path.dirname(parent), parent)
                    _copy_cpuset(parent, d)
            except BaseException:
                _let_go([d])
                with contextlib.suppress(OSError):
                    os.rmdir(d)
                raise
            return
        raise CgroupError(errno.EAGAIN, f"cannot create cgroup {d}: it or its parent was "
                          f"removed {_ATTEMPTS} times while being made", d, step="create")

    @classmethod
    def open(cls, path: str, *, parent: CGroup | None = None,
             layout: Layout | None = None) -> CGroup:
        """Open an existing cgroup.

        A relative ``path`` (``"job-1"``, ``"a/b"``) is taken below ``parent`` (default:
        :meth:`default_parent`). An absolute one is a cgroup path as in /proc/PID/cgroup and
        :attr:`path` (``"/isolate/job-1"``): the same path in every hierarchy, except that a
        path at or below the caller's own cgroup (in the v2 or first hierarchy) is taken
        relative to the caller's cgroup in each hierarchy, since v1 hierarchies may place the
        caller differently (so ``CGroup.open(cg.path)`` finds ``cg``).

        Raises :class:`ConfigError` for a malformed path, :class:`CgroupError` (ENOENT) when
        the cgroup does not exist in every hierarchy.
        """
        layout = layout or (parent._layout if parent is not None else host_layout())
        if path.startswith("/"):
            rel = "/" + (_check_name(path) if path.strip("/") else "")
            own = layout.hierarchies[0].self_path.rstrip("/")
            if rel == own or rel.startswith(own + "/"):
                # At or below our own cgroup: the caller may sit at different places in
                # different v1 hierarchies, so follow it there (as default_parent does).
                below = rel[len(own):]
                dirs = {h.key: h.dir_of(h.self_path.rstrip("/") + below)
                        for h in layout.hierarchies}
            else:
                dirs = {h.key: h.dir_of(rel) for h in layout.hierarchies}
        else:
            rel = _check_name(path)
            base = parent if parent is not None else cls.default_parent(layout=layout)
            dirs = {k: os.path.join(d, rel) for k, d in base._dirs.items()}
        return cls._existing(layout, dirs)

    @classmethod
    def from_pid(cls, pid: int, *, layout: Layout | None = None) -> CGroup:
        """The cgroup process ``pid`` is in (per /proc/PID/cgroup).

        Raises :class:`ConfigError` for a bad pid, :class:`CgroupError` (ESRCH) when the
        process does not exist.
        """
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ConfigError(f"pid: expected a positive process id, got {pid!r}")
        layout = layout or host_layout()
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
                paths = parse_proc_cgroup(f.read())
        except FileNotFoundError:
            raise CgroupError(errno.ESRCH, f"no process {pid}", step="open", pid=pid) from None
        dirs = {h.key: h.dir_of(paths.get(h.key, "/")) for h in layout.hierarchies}
        return cls._existing(layout, dirs)

    @classmethod
    def _existing(cls, layout: Layout, dirs: Mapping[str, str]) -> CGroup:
        for d in dirs.values():
            if not os.path.isdir(d):
                raise CgroupError(errno.ENOENT, f"no cgroup {d}", d, step="open")
        return cls(layout, dirs)

    # ------------------------------------------------------------------ identity

    @property
    def kind(self) -> BackendKind:
        """Which backend drives this cgroup (for information; callers need not branch)."""
        return self._layout.kind

    @property
    def layout(self) -> Layout:
        """The cgroup layout this group is driven by (see :func:`detect`)."""
        return self._layout

    def _primary(self) -> Hierarchy:
        return self._layout.hierarchies[0]

    @property
    def path(self) -> str:
        """The cgroup path (as in /proc/PID/cgroup) in the v2 hierarchy, or the first v1 one."""
        h = self._primary()
        rel = os.path.relpath(self._dirs[h.key], h.mount)
        root = h.root.rstrip("/")
        return f"{root}/{rel}" if rel != "." else (root or "/")

    @property
    def name(self) -> str:
        """The last component of :attr:`path`."""
        return os.path.basename(self.path)

    @property
    def dirs(self) -> Mapping[str, str]:
        """Directory of this cgroup in each hierarchy, by hierarchy key (``"unified"``,
        ``"memory"``, ``"cpu,cpuacct"`` …)."""
        return dict(self._dirs)

    def procs_files(self, controllers: Iterable[str] | None = None) -> list[str]:
        """Every cgroup.procs file the group spans, one per hierarchy.

        A child can join the group by writing ``"0"`` to each of them before it execs. With
        ``controllers``, only the v1 hierarchies of those controllers (and the v2 one) are
        listed: on a v1 host each joined hierarchy costs the child a write.
        """
        files = self._backend.procs_files()
        if controllers is None:
            return files
        wanted = set(controllers)
        return [os.path.join(self._dirs[h.key], "cgroup.procs")
                for h in self._layout.hierarchies
                if h.version == 2 or h.controllers & wanted]

    def join_files(self, controllers: Iterable[str] | None = None) -> list[str]:
        """The files a new, single-threaded child writes ``"0"`` to, one per hierarchy, to
        join the group before it execs: ``cgroup.procs`` in the v2 hierarchy, ``tasks`` in
        each v1 one (with ``controllers``, only the v1 hierarchies of those and the v2 one,
        as :meth:`procs_files`).

        A v1 ``tasks`` write moves the writing thread alone, which for a process of one
        thread is the whole process, and for the calling thread the kernel takes no global
        lock: a ``cgroup.procs`` write takes ``cgroup_threadgroup_rwsem`` for writing, which
        waits for an RCU grace period (5-12 ms here) unless another move happened moments
        before. A v2 ``cgroup.threads`` write cannot do the same (it moves threads only
        within one resource domain), so the v2 hierarchy keeps ``cgroup.procs`` (or
        ``CLONE_INTO_CGROUP``). Only for a child that has not started a thread.
        """
        wanted = None if controllers is None else set(controllers)
        return [os.path.join(self._dirs[h.key], "cgroup.procs" if h.version == 2 else "tasks")
                for h in self._layout.hierarchies
                if h.version == 2 or wanted is None or h.controllers & wanted]

    def open_v2_dir(self) -> int:
        """Open the group's directory (O_PATH-free O_DIRECTORY|O_CLOEXEC) for CLONE_INTO_CGROUP.

        The caller owns and closes the fd. Raises :class:`UnsupportedError` unless the host is
        pure v2 (elsewhere the child must also join v1 hierarchies: use :meth:`procs_files`),
        :class:`CgroupError` if the directory cannot be opened.
        """
        if self.kind is not BackendKind.V2:
            raise UnsupportedError(
                f"CLONE_INTO_CGROUP places a child in the v2 hierarchy only; this host is "
                f"{self.kind.value}, so write the pid to every procs_files() entry instead",
                missing="a pure cgroup v2 host",
            )
        d = self._dirs[V2_KEY]
        try:
            return os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(e.errno or errno.EIO, f"cannot open {d}", d, step="open") from e

    def exists(self) -> bool:
        """Whether the cgroup's directory exists in every hierarchy."""
        return all(os.path.isdir(d) for d in self._dirs.values())

    def children(self) -> list[CGroup]:
        """The direct child cgroups (as seen in the v2 hierarchy, or the first v1 one).

        Raises :class:`CgroupError` if this cgroup does not exist.
        """
        primary = self._dirs[self._primary().key]
        try:
            names = sorted(e.name for e in os.scandir(primary) if e.is_dir(follow_symlinks=False))
        except OSError as e:
            raise CgroupError(e.errno or errno.EIO, f"cannot list {primary}", primary,
                              step="children") from e
        return [CGroup(self._layout, {k: os.path.join(d, n) for k, d in self._dirs.items()})
                for n in names]

    def hold_fds(self) -> list[int]:
        """The fds by which this process holds the group (one per directory; none if it does
        not hold it, see :meth:`create`). The lock belongs to the open file: a process that
        gets them (inherited, or sent) holds the group as long as it keeps them open, whatever
        becomes of this one -- how a group's creator hands it to a supervisor that outlives
        it, so that a sweep never takes the group while the supervisor lives. The fds stay
        this process's to close (:meth:`let_go`, :meth:`delete`)."""
        with _held_lock:
            return [_held[d] for d in dict.fromkeys(self._dirs.values()) if d in _held]

    def let_go(self) -> None:
        """Stop holding the group in this process (a process given :meth:`hold_fds` still
        holds it); a sweep may remove it once no process holds it and none is in it."""
        _let_go(self._dirs.values())

    # ------------------------------------------------------------------ processes

    def add(self, pid: int) -> None:
        """Move process ``pid`` into this cgroup (in every hierarchy).

        Raises :class:`ConfigError` for a bad pid, :class:`CgroupError` (ESRCH: no such
        process, ENOENT: cgroup gone, EACCES: not allowed).
        """
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
            raise ConfigError(f"pid: expected a process id, got {pid!r}")
        self._backend.add(pid)

    def procs(self) -> list[int]:
        """The pids in this cgroup itself (not its children), sorted. Raises CgroupError."""
        return self._backend.procs()

    def events(self) -> Events:
        """Populated and frozen state and OOM counts. Raises :class:`CgroupError`."""
        return self._backend.events()

    def stats(self) -> Stats:
        """Current resource use as one :class:`Stats` record. Raises :class:`CgroupError`."""
        return self._backend.stats()

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until no process is left in the group or below; False if ``timeout`` passed.

        Raises :class:`CgroupError` if the group's files cannot be read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self._backend.events_file()
        fd = -1
        if events is not None:
            try:
                fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
        try:
            poller = None
            if fd >= 0:
                poller = select.poll()
                poller.register(fd, select.POLLPRI)
            delay = 0.002
            while self._backend.populated():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Sleep at most 50 ms between checks, so a missed notification only delays.
                step = min(delay, 0.05 if remaining is None else remaining)
                if poller is not None:
                    if poller.poll(step * 1000 if step < 0.05 else 50):
                        os.pread(fd, 4096, 0)  # re-arm kernfs notification
                else:
                    time.sleep(step)
                delay = min(delay * 2, 0.05)
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    def freeze(self, timeout: float = 5.0) -> None:
        """Freeze every process in the group and wait until the freeze completes.

        Raises :class:`UnsupportedError` without a freezer, :class:`CgroupError` (ETIMEDOUT)
        if the freeze does not complete in ``timeout`` seconds (the group is then thawed).
        """
        if not self._backend.can_freeze():
            raise UnsupportedError("freezing needs cgroup.freeze (v2) or the v1 freezer "
                                   "controller; this host has neither", missing="freezer")
        self._backend.set_frozen(True)
        if not self._wait_frozen(timeout):
            self._backend.set_frozen(False)
            raise CgroupError(errno.ETIMEDOUT, f"cgroup {self.path} did not freeze within "
                              f"{timeout} s", step="freeze")

    def thaw(self) -> None:
        """Let a frozen group run again. Raises :class:`CgroupError`, UnsupportedError."""
        if not self._backend.can_freeze():
            raise UnsupportedError("thawing needs cgroup.freeze (v2) or the v1 freezer "
                                   "controller; this host has neither", missing="freezer")
        self._backend.set_frozen(False)

    @property
    def frozen(self) -> bool:
        """Whether the group is (completely) frozen."""
        return self._backend.can_freeze() and self._backend.frozen()

    def _wait_frozen(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not self._backend.frozen():
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the group and below, and wait until it is empty.

        Uses cgroup.kill where the kernel has it; otherwise freezes, signals the frozen
        processes and thaws, in a loop, so a process that keeps forking cannot escape.

        Raises :class:`CgroupError`: EBUSY if processes remain after ``timeout`` seconds,
        EPERM for a hierarchy's root cgroup, EDEADLK if the calling process is in the group.
        """
        self._refuse_to_harm_caller("kill")
        self._kill(time.monotonic() + timeout, timeout)

    def _kill(self, deadline: float, timeout: float) -> None:
        if not self._backend.populated():
            return
        if not self._backend.kill_all():
            self._kill_by_signal(deadline)
        if not self.wait_empty(max(0.0, deadline - time.monotonic())):
            raise CgroupError(errno.EBUSY, f"processes {self.procs()} are still in cgroup "
                              f"{self.path} {timeout:.3g} s after SIGKILL", step="kill")

    def _refuse_to_harm_caller(self, action: str) -> None:
        # A group opened by path or pid may be a hierarchy root or hold the caller itself;
        # killing it would take down the machine or this process.
        for h in self._layout.hierarchies:
            d = self._dirs[h.key]
            if os.path.normpath(d) == os.path.normpath(h.mount):
                raise CgroupError(errno.EPERM, f"refusing to {action} the root cgroup {d}", d,
                                  step=action)
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            own = parse_proc_cgroup(f.read())
        for h in self._layout.hierarchies:
            mine = h.dir_of(own.get(h.key, "/")) + "/"
            if mine.startswith(self._dirs[h.key].rstrip("/") + "/"):
                raise CgroupError(errno.EDEADLK, f"refusing to {action} cgroup "
                                  f"{self._dirs[h.key]}: the calling process is in it",
                                  self._dirs[h.key], step=action, pid=os.getpid())

    def _kill_by_signal(self, deadline: float) -> None:
        can_freeze = self._backend.can_freeze()
        while True:
            if can_freeze:
                self._backend.set_frozen(True)
                # A task in uninterruptible sleep can hold up the freeze; signal anyway.
                self._wait_frozen(max(0.0, min(0.5, deadline - time.monotonic())))
            pids = self._all_procs()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if can_freeze:
                self._backend.set_frozen(False)
            remaining = deadline - time.monotonic()
            if not pids or remaining <= 0 or self.wait_empty(min(0.2, remaining)):
                return

    def _all_procs(self) -> list[int]:
        pids = set(self.procs())
        for child in self.children():
            pids.update(child._all_procs())
        return sorted(pids)

    # ------------------------------------------------------------------ limits

    def set_limits(self, limits: Limits, *, best_effort: bool = False) -> tuple[str, ...]:
        """Apply ``limits`` (fields left ``None`` are not touched); return those skipped.

        Raises :class:`ConfigError` for a non-Limits value, :class:`UnsupportedError` naming
        the controller and why it is unusable (unless ``best_effort``), :class:`CgroupError`
        when the kernel refuses a value (EINVAL, EBUSY: below current usage).
        """
        if not isinstance(limits, Limits):
            raise ConfigError(f"limits: expected a Limits, got {limits!r}")
        skipped = self._backend.apply(limits, best_effort)
        self.skipped_limits = skipped
        return skipped

    def set_devices(self, rules: Sequence[DeviceRule]) -> None:
        """Let the group's processes open and create only the devices ``rules`` allow
        (:data:`isolate.cgroups.devices.DEFAULT_RULES` is Docker's list): the v1 ``devices``
        controller, a device program on the v2 cgroup, both on a hybrid host. Set it before
        the first process joins.

        Raises :class:`UnsupportedError` when the host cannot (no devices controller on v1,
        no BPF permission on v2), :class:`CgroupError` when the kernel refuses a rule.
        """
        self._backend.set_devices(rules)

    def read_control(self, controller: str, filename: str) -> str | None:
        """Raw text of a control file of ``controller`` in this group, or None if absent.

        For diagnostics and tests; raises :class:`UnsupportedError` if the controller is
        unavailable, :class:`CgroupError` on read errors.
        """
        return read_optional(os.path.join(self._backend.controller_dir(controller), filename))

    # ------------------------------------------------------------------ teardown

    def delete(self, timeout: float = 5.0) -> None:
        """Kill the group's processes, wait for them, and remove it and its children.

        Idempotent: deleting a group that is gone does nothing. Keeps going across
        hierarchies after a failure and raises the first error with the others as notes.
        Raises :class:`CgroupError` (EPERM for a root cgroup, EDEADLK if the calling process
        is in the group, see :meth:`kill`).
        """
        self._delete(time.monotonic() + timeout, prune=True)

    def _delete(self, deadline: float, *, prune: bool) -> None:
        if not any(os.path.isdir(d) for d in self._dirs.values()):
            _let_go(self._dirs.values())  # (removed by someone else: hold it no longer)
            return
        errors: list[BaseException] = []
        self._refuse_to_harm_caller("delete")
        if os.path.isdir(self._dirs[self._primary().key]):
            for child in self.children():
                try:
                    # Not pruned: when this group is an isolate base, it is still being
                    # deleted (and its caller's base is pruned by the caller).
                    child._delete(deadline, prune=False)
                except CgroupError as e:
                    errors.append(e)
            try:
                self._kill(deadline, max(0.0, deadline - time.monotonic()))
            except (CgroupError, UnsupportedError) as e:
                errors.append(e)
        primary = self._dirs[self._primary().key]
        gone: list[str] = []
        for d in self._dirs.values():
            delay = 0.001
            while True:
                try:
                    _rmdir(d)
                    gone.append(d)
                    break
                except CgroupError as e:
                    if e.errno == errno.EBUSY and d != primary and _subdirs(d):
                        # Groups below this one that only this hierarchy shows (left by a
                        # sweep that ran from another cgroup of it): remove them too.
                        for sub in _subdirs(d):
                            _remove_empty_tree(sub)
                    # EBUSY for a moment while exiting tasks are still being released.
                    if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                        errors.append(e)
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
        _let_go(gone)
        if errors:
            first = errors[0]
            for other in errors[1:]:
                add_note(first, f"also: {other}")
            raise first
        if prune:
            self._prune_base()

    def _sweep_orphans(self) -> None:
        """Remove the groups with generated names below this one whose creator is gone.

        A process killed before its ``delete`` ran (SIGKILL, a crash) leaves its group behind;
        the next create cleans up after it. Each hierarchy is swept on its own: a v1 hierarchy
        may place the sweeper elsewhere than the creator, so one sweep may see only some of an
        orphan's directories, and a later one (by a process placed as the creator was) the
        rest. A group is an orphan when no process holds its lock (see :meth:`create`); one
        named before the lock existed, when the pid in its name is gone; one named by an id
        (a container's), when no process holds it and none is in it in any hierarchy (its
        supervisor, which held it, is gone, and so is the store that would have removed it).
        Groups of live creators, and groups that still hold processes, are never touched.
        """
        primary = self._primary().key
        ids: set[str] = set()
        for h in self._layout.hierarchies:  # the primary one first
            base = self._dirs[h.key]
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for name in names:
                if len(name) == 64 and _match.hex_string(name, 64, 64):
                    ids.add(name)
                    continue
                if not name.startswith("cg-"):
                    continue  # control files, and groups named by their makers (cheap test)
                if _match.generated_cgroup(name):
                    _remove_if_unheld(os.path.join(base, name))
                    continue
                creator = _match.unlocked_cgroup_pid(name)
                if creator is None or pid_alive(int(creator)):
                    continue
                if h.key == primary:
                    orphan = CGroup(self._layout, {k: os.path.join(d, name)
                                                   for k, d in self._dirs.items()})
                    try:
                        if not orphan._all_procs():
                            for d in orphan._dirs.values():
                                _remove_empty_tree(d)
                    except (CgroupError, OSError):
                        pass  # raced with another sweeper, or not ours to remove after all
                elif not os.path.isdir(os.path.join(self._dirs[primary], name)):
                    _remove_empty_tree(os.path.join(base, name))  # what a sweep left
        for name in sorted(ids):
            # All its directories at once: emptiness is judged across the hierarchies (a
            # container joins only some of them, the others' directories are always empty).
            _remove_unused([d for d in (os.path.join(b, name) for b in self._dirs.values())
                            if os.path.isdir(d)])

    def _prune_base(self) -> None:
        """Remove the ``isolate`` directories made to hold default groups, once empty, so a
        deleted group leaves nothing behind. Another group still in one keeps it."""
        for d in self._dirs.values():
            base = os.path.dirname(d)
            if os.path.basename(base) == BASE_NAME:
                try:
                    os.rmdir(base)
                except OSError:
                    pass  # not empty (another group lives there) or already gone
                else:
                    _pruned.add(base)

    def __enter__(self) -> CGroup:
        """Return the group itself; leaving the ``with`` block deletes it."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """:meth:`delete` the group (raising what it raises); exceptions from the block
        propagate."""
        self.delete()

    def __repr__(self) -> str:
        return f"<CGroup {self.path} ({self.kind.value})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CGroup) and other._dirs == self._dirs

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._dirs.items())))
