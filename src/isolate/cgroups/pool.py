"""A pool of emptied cgroups, for a process that makes many short-lived limited groups.

Owns reuse: a group given back empty is kept (held by this process's flock, as every group it
makes) and handed out again to the next taker that asks for the same hierarchies, the same
limits other than memory, and the same device rules. Its memory directory is made anew for
each taker (a memory cgroup keeps charges, a peak and OOM counts that cannot all be reset) and
its cpu accounting is reset, so no limit or counter of one holder reaches the next; a
thread of the pool's own makes the new memory directory as soon as a group is given back, off
the path of the next take (which makes it itself if the thread is not done). It must
not keep a group that still has processes, child groups or a freeze, nor any group past the
end of the process: spares are removed by :meth:`CGroupPool.close` (the default pool's at
interpreter exit), and after a crash by the next process's orphan sweep (nothing holds their
lock any more).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import queue
import signal
import threading
import time
import weakref
from collections.abc import Sequence

from isolate import _record
from isolate.cgroups._backend import parse_kv, read_file, write_file
from isolate.cgroups.cgroup import CGroup, _hold, _let_go, _rmdir, add_note, host_layout
from isolate.cgroups.detect import V2_KEY, BackendKind, Layout
from isolate.cgroups.devices import DeviceRule
from isolate.cgroups.limits import Limits
from isolate.errors import CgroupError, IsolateError

__all__ = ["CGroupPool", "default_pool"]

_MEMORY = {"memory_max": None, "memory_high": None, "memory_swap_max": None}
#: How long the rmdir of a spare's old memory directory is retried while the kernel calls it busy.
_RMDIR_WAIT = 5.0

_Key = tuple[BackendKind, tuple[str, ...], "Limits | None", "tuple[DeviceRule, ...] | None"]


@_record.mutable
class _Lease:
    """What the pool knows of one of its groups: what it was made for, and what is in force."""

    cg: CGroup
    key: _Key
    skipped: tuple[str, ...]  # limits other than memory that best effort skipped
    rules: tuple[DeviceRule, ...] | None = None  # the device policy in force, if any
    tainted: bool = False  # something half-applied: never reused
    # "in use" (handed out), "stale" (given back: its memory directory is the last holder's)
    # or "ready" (a spare with a new memory directory). Changed under ``lock``.
    state: str = "in use"
    gone: bool = False  # deleted (by drain or eviction): the refresher leaves it alone
    # The memory limits in force in its memory directory (a refresh applies the last holder's
    # again: the next taker most often asks for the same), what best effort skipped of them.
    memory: Limits | None = None
    memory_skipped: tuple[str, ...] = ()
    best_effort: bool = False
    # Held while the group's memory directory is remade, and while a taker readies it.
    lock: threading.Lock = _record.field(factory=threading.Lock, eq=False, repr=False)
    # Files of the group kept open for its holders ((path, flags) -> fd; see opened()).
    fds: dict[tuple[str, int], int] = _record.field(factory=dict, eq=False, repr=False)


def _close_fds(lease: _Lease, below: str | None = None) -> None:
    """Close the files the pool keeps open of ``lease``'s group (only those in ``below``)."""
    for key in [k for k in lease.fds if below is None or k[0].startswith(below + "/")]:
        os.close(lease.fds.pop(key))


def _make_ready(lease: _Lease, limits: Limits | None, best_effort: bool) -> None:
    """The rest of a refresh: the memory ``limits`` written, cpu accounting reset (user and
    system times with it); tainted if the kernel refuses."""
    cg = lease.cg
    try:
        skipped: tuple[str, ...] = ()
        if limits is not None:
            skipped = cg._backend.apply(limits, best_effort)
        cpuacct = cg.layout.v1_for("cpuacct")
        if cpuacct is not None:
            write_file(os.path.join(cg.dirs[cpuacct.key], "cpuacct.usage"), "0", step="reset")
    except (IsolateError, OSError):
        lease.tainted = True
        return
    lease.memory, lease.memory_skipped, lease.best_effort = limits, skipped, best_effort
    lease.state = "ready"


@functools.lru_cache(maxsize=32)
def _memory_limits(limits: Limits | None) -> Limits | None:
    if limits is None:
        return None
    memory = Limits(memory_max=limits.memory_max, memory_high=limits.memory_high,
                    memory_swap_max=limits.memory_swap_max)
    return None if memory == Limits() else memory


@functools.lru_cache(maxsize=32)
def _other_limits(limits: Limits | None) -> Limits | None:
    if limits is None:
        return None
    other = _record.evolve(limits, **_MEMORY)
    return None if other == Limits() else other


class CGroupPool:
    """Groups made by :meth:`take` and kept, once given back empty, for the next taker.

    A taker gets a group with exactly its limits in force and counters of its own: the same
    group again only when the hierarchies, the limits other than memory and the device rules
    match (those files then already hold the right values), with a new memory directory and
    cpu accounting reset to zero. Where that cannot be promised -- a pure v2 host, whose
    memory controller shares the group's one directory, or io limits, whose v1 statistics
    would carry over -- :meth:`take` makes a new group and :meth:`give_back` deletes it, as
    :meth:`CGroup.create` and :meth:`CGroup.delete` would. At most ``max_spares`` empty groups
    are kept. Safe to use from many threads; each process has its own (a forked child starts
    with none).
    """

    def __init__(self, max_spares: int = 8) -> None:
        if not isinstance(max_spares, int) or isinstance(max_spares, bool) or max_spares < 0:
            raise ValueError(f"max_spares: expected an int >= 0, got {max_spares!r}")
        self._max = max_spares
        self._lock = threading.Lock()
        self._spares: list[_Lease] = []  # oldest first
        self._out: dict[int, _Lease] = {}  # id(CGroup) -> lease, for the groups handed out
        self._closed = False
        # Spares whose memory directory is to be made anew, for the refresher thread.
        self._stale: queue.SimpleQueue[_Lease | None] = queue.SimpleQueue()
        self._refresher: threading.Thread | None = None
        _pools.add(self)

    # -- taking and giving back -----------------------------------------------------------
    def take(self, layout: Layout | None = None, *, limits: Limits | None = None,
             best_effort: bool = False,
             devices: Sequence[DeviceRule] | None = None) -> CGroup:
        """A group with ``limits`` in force in the hierarchies of ``layout`` (default: the
        host's), like :meth:`CGroup.create` with a generated name and the default parent:
        a spare when one matches, else a new one. ``devices`` names the device policy the
        caller is about to set (:meth:`set_devices`): a spare that has it already is chosen.

        Raises what :meth:`CGroup.create` raises.
        """
        layout = layout or host_layout()
        rules = None if devices is None else tuple(devices)
        key: _Key = (layout.kind, tuple(h.key for h in layout.hierarchies),
                     _other_limits(limits), rules)
        if self._poolable(layout, limits):
            wanted = _memory_limits(limits)
            lease = self._pop(key, best_effort, wanted, grow=True)
            while lease is not None:
                cg = self._reuse(lease, layout, limits, best_effort)
                if cg is not None:
                    return cg
                lease = self._pop(key, best_effort, wanted)
        cg = CGroup.create(limits=limits, best_effort=best_effort, layout=layout)
        memory_fields = tuple(f"{f}:" for f in _MEMORY)
        lease = _Lease(cg, key,
                       tuple(s for s in cg.skipped_limits if not s.startswith(memory_fields)),
                       memory=_memory_limits(limits),
                       memory_skipped=tuple(s for s in cg.skipped_limits
                                            if s.startswith(memory_fields)),
                       best_effort=best_effort)
        with self._lock:
            self._out[id(cg)] = lease
        return cg

    def opened(self, cg: CGroup, path: str, flags: int) -> int:
        """An fd of ``path`` (a file or the directory of ``cg``, opened with ``flags``) for
        the caller to close: the pool keeps one open per group it hands out again and gives
        a copy of it, which spares each holder the opens (~10 us each in cgroupfs, 50 us
        while the caches are cold; a limited sandbox joins five or six). A group not of
        the pool gets a plain open."""
        flags |= os.O_CLOEXEC
        with self._lock:
            lease = self._out.get(id(cg))
        if lease is None:
            return os.open(path, flags)
        with lease.lock:
            fd = lease.fds.get((path, flags))
            if fd is None:
                fd = lease.fds[(path, flags)] = os.open(path, flags)
            return os.dup(fd)

    def set_devices(self, cg: CGroup, rules: Sequence[DeviceRule]) -> None:
        """:meth:`CGroup.set_devices` on a group of this pool, unless those very rules are in
        force on it already (a spare keeps its policy). Raises what that raises; a group
        whose policy failed is never handed out again."""
        rules = tuple(rules)
        with self._lock:
            lease = self._out.get(id(cg))
        if lease is not None and lease.rules == rules:
            return
        try:
            cg.set_devices(rules)
        except BaseException:
            if lease is not None:
                lease.tainted = True
            raise
        if lease is not None:
            lease.rules = rules

    def give_back(self, cg: CGroup, timeout: float = 5.0) -> None:
        """End the use of ``cg`` (a group :meth:`take` handed out): keep it as a spare when it
        is empty and the pool has room, else :meth:`CGroup.delete` it (``timeout`` as there).
        The handle must not be used afterwards. Raises what delete raises."""
        with self._lock:
            lease = self._out.pop(id(cg), None)
            keep = (lease is not None and not lease.tainted and not self._closed
                    and lease.rules == lease.key[3] and self._max > 0
                    and self._poolable(cg.layout, None))
        if not keep or lease is None or not self._idle(cg):
            if lease is not None:
                with lease.lock:
                    _close_fds(lease)
            cg.delete(timeout)
            return
        with lease.lock:
            lease.state = "stale"
        evicted: list[_Lease] = []
        with self._lock:
            if self._closed:
                evicted.append(lease)
            else:
                self._spares.append(lease)
                while len(self._spares) > self._max:
                    evicted.append(self._spares.pop(0))
                self._stale.put(lease)
                if self._refresher is None:
                    self._refresher = threading.Thread(
                        target=self._refresh_stale, name="isolate-cgroup-pool", daemon=True)
                    # Started with every signal blocked (a thread inherits its creator's
                    # mask): a signal sent to the process is then never delivered to this
                    # thread, whose default action would end a caller that blocks it in its
                    # own threads to sigwait for it (as ``isolate run`` does for SIGTERM).
                    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                    try:
                        self._refresher.start()
                    finally:
                        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._delete_all(evicted)

    # -- the pool's end -----------------------------------------------------------------------
    @property
    def spares(self) -> list[CGroup]:
        """The empty groups kept for the next taker."""
        with self._lock:
            return [lease.cg for lease in self._spares]

    def drain(self) -> None:
        """Delete every spare now (the pool keeps working). Keeps going after a failure and
        raises the first :class:`CgroupError` with the others as notes."""
        with self._lock:
            spares, self._spares = self._spares, []
        self._delete_all(spares)

    def close(self) -> None:
        """Delete the spares and keep none from now on (groups still handed out are deleted
        when given back); the refresher thread ends. Idempotent; raises as :meth:`drain`."""
        with self._lock:
            self._closed = True
            refresher, self._refresher = self._refresher, None
        if refresher is not None:
            self._stale.put(None)
        self.drain()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- inside -------------------------------------------------------------------------------
    @staticmethod
    def _poolable(layout: Layout, limits: Limits | None) -> bool:
        # Every counter a holder sees must start from zero for the next one: memory lives in a
        # directory of its own (made anew), cpu accounting in cpuacct (reset by a write).
        if layout.kind is BackendKind.V2 or layout.v1_for("cpuacct") is None:
            return False
        return limits is None or (limits.io_weight is None and not limits.io_devices)

    def _pop(self, key: _Key, best_effort: bool, wanted: Limits | None, *,
             grow: bool = False) -> _Lease | None:
        """The spare to hand out for ``key``: the warmest one the refresher has made ready
        for ``wanted`` memory limits, else the warmest of the others (readied by the taker).
        With ``grow``, not one the refresher is still to make ready for ``wanted`` while
        fewer than two groups of ``key`` exist: the caller makes a second one, and from then
        on one is made ready off the path while the other is in use (a process entering
        limited sandboxes one after another would otherwise take each one back before the
        refresher came to it, and make it ready itself)."""
        with self._lock:
            fits = [i for i in range(len(self._spares) - 1, -1, -1)  # the warmest first
                    if self._spares[i].key == key
                    and (best_effort or not self._spares[i].skipped)]
            for i in fits:
                lease = self._spares[i]
                if (lease.state == "ready" and lease.memory == wanted
                        and (best_effort or not lease.memory_skipped)):
                    return self._spares.pop(i)
            if not fits:
                return None
            warmest = self._spares[fits[0]]
            if (grow and warmest.state == "stale" and warmest.memory == wanted
                    and len(self._spares) < self._max
                    and sum(1 for lease in (*self._spares, *self._out.values())
                            if lease.key == key) < 2):
                return None
            return self._spares.pop(fits[0])

    def _reuse(self, lease: _Lease, layout: Layout, limits: Limits | None,
               best_effort: bool) -> CGroup | None:
        """Hand ``lease``'s group out again for ``limits``, or delete it and return None when
        it cannot be made ready (the caller makes a new one then)."""
        cg = lease.cg
        wanted = _memory_limits(limits)
        with lease.lock:  # (the refresher may be making its memory directory right now)
            if lease.gone:
                return None
            if not lease.tainted and (lease.state == "stale" or lease.memory != wanted
                                      or (lease.memory_skipped and not best_effort)):
                # The refresher has not come to it yet, or made it for other memory limits
                # (a memory directory no process has used yet is removed at once).
                self._refresh(lease, wanted, best_effort)
            ready = lease.state == "ready" and not lease.tainted
            lease.state = "in use"
        if not ready:
            with lease.lock:
                _close_fds(lease)
            with contextlib.suppress(IsolateError, OSError):
                cg.delete()
            return None
        cg.skipped_limits = (*lease.skipped, *lease.memory_skipped)
        with self._lock:
            self._out[id(cg)] = lease
        return cg

    @staticmethod
    def _idle(cg: CGroup) -> bool:
        """No process in the group or below, no child group, no freeze."""
        try:
            core = cg.dirs.get(V2_KEY)
            if core is not None:
                events = parse_kv(read_file(os.path.join(core, "cgroup.events"), "events"))
                # (A cgroup directory's link count is 2 + its child groups.)
                return (events.get("populated", 1) == 0 and events.get("frozen", 0) == 0
                        and os.stat(core).st_nlink == 2)
            return not cg.procs() and not cg.frozen and not cg.children()
        except (IsolateError, OSError):
            return False

    @staticmethod
    def _refresh(lease: _Lease, limits: Limits | None, best_effort: bool) -> None:
        """Make a spare (``lease.lock`` held) ready: its v1 memory directory replaced with a
        new one with the memory ``limits`` in force, its cpu accounting reset. A spare whose
        old directory will not go, or whose new one cannot be made so, is tainted."""
        cg = lease.cg
        memory = cg.layout.v1_for("memory")
        if memory is None:
            _make_ready(lease, limits, best_effort)
            return
        d = cg.dirs[memory.key]
        _close_fds(lease, below=d)  # (of the directory that goes)
        deadline = time.monotonic() + _RMDIR_WAIT
        delay = 0.0005
        while True:
            try:
                _rmdir(d)
                break
            except CgroupError as e:
                # EBUSY for a moment while exiting tasks are still being released.
                if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                    lease.tainted = True
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        _let_go([d])
        try:
            try:
                os.mkdir(d, 0o755)  # (its base stayed, unless someone pruned it)
            except FileNotFoundError:
                cg._make_dir(memory, d, remake_base=True, hold=True)
            else:
                if not _hold(d):
                    raise CgroupError(errno.ENOENT, f"{d} went while being made", d,
                                      step="create")
        except (IsolateError, OSError):
            lease.tainted = True
            return
        _make_ready(lease, limits, best_effort)

    def _refresh_stale(self) -> None:
        """The refresher thread: make the memory directory of each spare given back anew."""
        while True:
            lease = self._stale.get()
            if lease is None:
                return
            with lease.lock:
                if not lease.gone and lease.state == "stale" and not lease.tainted:
                    self._refresh(lease, lease.memory, lease.best_effort)

    @staticmethod
    def _delete_all(leases: Sequence[_Lease]) -> None:
        errors: list[BaseException] = []
        for lease in leases:
            with lease.lock:
                lease.gone = True
                _close_fds(lease)
            try:
                lease.cg.delete()
            except CgroupError as e:
                errors.append(e)
        if errors:
            for other in errors[1:]:
                add_note(errors[0], f"also: {other}")
            raise errors[0]

    def _forget(self) -> None:
        """In a forked child: the spares are the parent's; drop this copy's hold on them."""
        self._lock = threading.Lock()
        spares, self._spares = self._spares, []
        self._out = {}
        self._stale = queue.SimpleQueue()
        self._refresher = None  # (not in the child)
        for lease in spares:
            _let_go(lease.cg.dirs.values())
            _close_fds(lease)

    def __repr__(self) -> str:
        return f"<CGroupPool {len(self._spares)} spare(s), max {self._max}" \
               f"{', closed' if self._closed else ''}>"


_pools: weakref.WeakSet[CGroupPool] = weakref.WeakSet()
_default: CGroupPool | None = None
_default_lock = threading.Lock()


def default_pool() -> CGroupPool:
    """The process's pool (made on first use; closed at interpreter exit), which sandboxes
    with limits take their groups from. Close it to make every group anew from then on."""
    global _default
    pool = _default
    if pool is None:
        with _default_lock:
            if _default is None:
                _default = CGroupPool()
                atexit.register(_close_at_exit, _default)
            pool = _default
    return pool


def _close_at_exit(pool: CGroupPool) -> None:
    # What cannot be removed now is an orphan once this process is gone (no flock holds it):
    # the next process's sweep removes it.
    with contextlib.suppress(IsolateError, OSError):
        pool.close()


def _after_fork_in_child() -> None:
    for pool in list(_pools):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
