"""A spare network namespace, made ahead, for a process that keeps entering fresh sandboxes.

Owns the spare: one new network namespace with ``lo`` up, made by a thread of its own
(:func:`isolate._sys.new_netns`: the kernel's ``copy_net_ns`` and the ``lo`` ioctls, nothing
else, done off the path of the sandbox that takes it) and held by an fd only. A sandbox with
a new network namespace and no user namespace takes it (the shared child joins it instead of
cloning into a new one); the thread then makes the next.

What a taker gets is what a clone would have made: a namespace nothing ever ran in, owned
by this process's user namespace, with ``lo`` up and nothing else. Nothing outlives the
process: the fd is O_CLOEXEC and dies with it (no name, no mount, nothing to sweep), a forked
child drops its copy, and :func:`drain` closes it now. A process that enters only one such
sandbox makes none: the spare is made from the second take on.
"""

from __future__ import annotations

import _thread
import os

from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.errors import IsolateError

if TYPE_CHECKING:
    import threading

__all__ = ["drain", "held_fds", "take"]

#: Takes (with or without a spare) after which the process is making sandboxes repeatedly.
_FROM_TAKE = 2


class _Spare:
    # Nothing of threading until the thread is wanted: a process that enters one sandbox
    # (``isolate run``) imports none of it.
    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._wake: threading.Condition | None = None  # on _lock, made with the thread
        self._fd = -1
        self._takes = 0
        self._wanted = False
        self._making = False
        self._broken = False  # the kernel refused once (not privileged, no /proc): never again
        self._closed = False

    def take(self) -> int:
        """The spare's fd (the caller's to close), or -1 when none is ready; never waits."""
        with self._lock:
            fd, self._fd = self._fd, -1
            self._takes += 1
            if self._broken or self._closed or self._takes < _FROM_TAKE:
                return fd
            self._wanted = True
            if self._wake is None:
                self._start()
            else:
                self._wake.notify_all()
        return fd

    def drain(self) -> None:
        """Close the spare now; the next take after this makes one again."""
        with self._lock:
            fd, self._fd = self._fd, -1
            self._wanted = False
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._wake is not None:
                self._wake.notify_all()
        self.drain()

    def held(self) -> list[int]:
        with self._lock:
            while self._making and self._wake is not None:
                self._wake.wait()
            return [self._fd] if self._fd >= 0 else []

    def forget(self) -> None:
        """In a forked child: the thread is the parent's; this copy of the fd goes."""
        self._lock = _thread.allocate_lock()
        self._wake = None
        fd, self._fd = self._fd, -1
        self._takes, self._wanted, self._making = 0, False, False
        if fd >= 0:
            os.close(fd)

    def _start(self) -> None:
        """Start the thread (called holding ``_lock``); the spare is closed at exit."""
        import atexit
        import threading

        self._wake = threading.Condition(self._lock)
        thread = threading.Thread(target=self._run, name="isolate-spare-netns", daemon=True)
        # Started with every signal blocked (a thread inherits its creator's mask): a signal
        # sent to the process never lands here, as for the cgroup pool's thread.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        atexit.register(self.close)

    def _run(self) -> None:
        from isolate import _sys

        wake = self._wake
        assert wake is not None
        while True:
            with self._lock:
                while not self._closed and not (self._wanted and self._fd < 0):
                    wake.wait()
                if self._closed:
                    return
                self._wanted, self._making = False, True
            fd, broken = -1, True
            try:
                fd = _sys.new_netns()
                broken = False
            except IsolateError:
                pass  # refused (not privileged, no /proc), or this thread is stranded in it
            finally:
                with self._lock:
                    self._making = False
                    self._broken = self._broken or broken
                    wake.notify_all()
                    if fd >= 0 and not self._closed and self._fd < 0:
                        self._fd, fd = fd, -1
                if fd >= 0:
                    os.close(fd)
            if broken:
                # It ends now, and no spare is made again (a stranded thread must run nothing
                # more that opens sockets: it is still in the namespace it made).
                return


_spare = _Spare()


def take() -> int:
    """An fd of a network namespace made ahead for the caller (``lo`` up, never used), which
    the caller closes once its own holds it; -1 when none is ready (make one as usual)."""
    return _spare.take()


def drain() -> None:
    """Close the spare, if one is held (the next takes make one again)."""
    _spare.drain()


def held_fds() -> list[int]:
    """The fd of the spare held now, if any, once the thread is not making one (what a
    check for leaked fds leaves out: the fds the thread opens while at work are gone)."""
    return _spare.held()


os.register_at_fork(after_in_child=_spare.forget)
