"""Process handles for sandboxed children: a real :class:`subprocess.Popen`, started by isolate.

Owns the bridge between subprocess's pipe handling (stdin/stdout/stderr, communicate, wait,
timeouts) and isolate's spawner: Popen makes the pipes, isolate clones the child. Nothing here
decides what the child's isolation is; the caller passes a function that builds the plan.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence

from isolate import lowlevel
from isolate._plan import Plan
from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["SandboxedPopen"]

# (stdio and passed fds as (source, target) pairs) -> plan
PlanFactory = Callable[[list[tuple[int, int]]], Plan]


class SandboxedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A :class:`subprocess.Popen` whose child is cloned by isolate from a set-up plan.

    Everything Popen offers works as usual: ``stdin``/``stdout``/``stderr`` pipes,
    ``communicate(input, timeout)``, ``poll``, ``wait``, ``send_signal``, ``kill``, context
    manager. ``pid`` is the child's pid in the caller's pid namespace. Create it through
    :meth:`isolate.Sandbox.popen`; there is no public constructor contract beyond that.
    """

    def __init__(self, args: Sequence[str], *, plan_factory: PlanFactory,
                 **kwargs: Any) -> None:
        self._plan_factory = plan_factory
        # With an init as pid 1 (``pid`` is the init's): where it reports the command's end.
        self._exit_fd = -1
        super().__init__(args, **kwargs)

    def _handle_exitstatus(self, sts: int, *args: Any, **kwargs: Any) -> None:
        # Popen's one place that turns a wait status into returncode (wait and poll alike):
        # under an init, the command's own status replaces the init's 128 + N.
        super()._handle_exitstatus(sts, *args, **kwargs)  # type: ignore[misc]
        fd, self._exit_fd = self._exit_fd, -1
        if fd >= 0 and self.returncode is not None:
            self.returncode = lowlevel.command_status(fd, self.returncode)

    def __del__(self, *args: Any, **kwargs: Any) -> None:
        super().__del__(*args, **kwargs)  # type: ignore[misc]
        fd, self._exit_fd = getattr(self, "_exit_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def _execute_child(self, args: Any, executable: Any, preexec_fn: Any, close_fds: Any,
                       pass_fds: Any, cwd: Any, env: Any, startupinfo: Any,
                       creationflags: Any, shell: Any, p2cread: int, p2cwrite: int,
                       c2pread: int, c2pwrite: int, errread: int, errwrite: int,
                       *rest: Any) -> None:
        # (-1: the caller's own stdio, inherited where it has it open)
        stdio = lowlevel.stdio_pairs((p2cread, c2pwrite, errwrite), pass_fds)
        child = lowlevel.spawn(self._plan_factory(stdio))
        # Popen waits by pid; the pid stays ours (unreaped) until Popen reaps it.
        self.pid = child.pid
        self._exit_fd = child.take_exit_fd()
        child.close()
        self._child_created = True
        self._close_pipe_fds(  # type: ignore[attr-defined]
            p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)
