"""Sandbox.call: run a picklable Python callable inside a sandbox and bring back its result.

A fresh interpreter costs tens of milliseconds, and forking the caller is unsafe when it has
threads, so a sandbox starts one helper interpreter inside itself (the "zygote") on its first
call. The zygote is single-threaded, so it may fork; each call runs in a fresh fork of it and
the result (or the exception and its traceback text) travels back pickled. The zygote sends the
caller a pidfd of each call's process, so a timeout kills exactly that process.

A call's process ends with ``os._exit`` (the zygote's atexit handlers are not the call's), so it
flushes ``sys.stdout`` and ``sys.stderr`` itself before it answers: what the function printed
is written out, to a pipe or a file too, before the caller has the result.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import cloudpickle  # type: ignore[import-untyped]

from isolate.errors import CallError, SpawnError

__all__ = ["CallDied", "Caller"]


class Spawner(Protocol):
    """Where the zygote runs: what :class:`isolate.Sandbox` offers (its ``popen``), so that
    this module needs nothing of the sandbox module, which builds on it."""

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, **popen_kwargs: Any) -> subprocess.Popen[Any]: ...


class CallDied(CallError):
    """A call's process ended without an answer; ``status`` is its wait status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, or None when it exited."""
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None


_BY_VALUE_LOCK = threading.Lock()  # cloudpickle's by-value registry is process-wide

# Runs inside the sandbox. Protocol on the control socket (fd given in argv[1]):
#   caller -> zygote: b"C" + SCM_RIGHTS(call socket)       one call
#   zygote -> caller: b"P" + SCM_RIGHTS(pidfd of the call process)
#   zygote -> caller: b"S" + int32 wait status, once the call process is reaped
# On the call socket: caller writes len + pickle((fn, args, kwargs)); the call process writes
# len + pickle(("ok", value) | ("err", exception, traceback_text)) and exits.
_ZYGOTE = r"""
import os, pickle, socket, struct, sys, traceback, array
ctl = socket.socket(fileno=int(sys.argv[1]))
init = pickle.loads(ctl.recv(1 << 20))
sys.path[:] = init["path"]
def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)
def reply(s, result):
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:
        data = pickle.dumps(("err", RuntimeError("cannot send the result back: %r" % (exc,)),
                             traceback.format_exc()))
    s.sendall(struct.pack("=Q", len(data)) + data)
def flush():
    # os._exit skips the interpreter's own flush: a pipe or file behind sys.stdout is
    # block-buffered, and what the call printed would be lost.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
def run(s, request):
    try:
        fn, args, kwargs = request
        result = ("ok", fn(*args, **kwargs))
    except BaseException as exc:
        result = ("err", exc, traceback.format_exc())
    flush()
    reply(s, result)
for name in init["preload"]:
    try:
        __import__(name)
    except ImportError:
        pass
ctl.send(b"R")
while True:
    try:
        msg, fds, _, _ = socket.recv_fds(ctl, 16, 1)
    except OSError:
        break
    if not msg:
        break
    s = socket.socket(fileno=fds[0])
    # Unpickle here, in the zygote: the modules the call needs are imported once and every
    # later fork finds them loaded.
    try:
        n, = struct.unpack("=Q", recv_exact(s, 8))
        request = pickle.loads(recv_exact(s, n))
        failed = None
    except BaseException as exc:
        request, failed = None, ("unpickle-err", exc, traceback.format_exc())
    pid = os.fork()
    if pid == 0:
        ctl.close()
        code = 0
        try:
            if failed is not None:
                reply(s, failed)
            else:
                run(s, request)
        except BaseException:
            code = 70
        os._exit(code)
    s.close()
    del request
    pidfd = os.pidfd_open(pid)
    socket.send_fds(ctl, [b"P"], [pidfd])
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    ctl.send(b"S" + struct.pack("=i", status))
"""


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class Caller:
    """The zygote of one sandbox and the caller's end of its control socket."""

    def __init__(self, sandbox: Spawner) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._by_value: set[str] = set()  # modules the sandbox cannot import: sent by value
        self._sock = parent
        try:
            self._proc: subprocess.Popen[bytes] = sandbox.popen(
                [sys.executable, "-S", "-c", _ZYGOTE, str(child.fileno())],
                stdin=subprocess.DEVNULL, pass_fds=[child.fileno()],
                env=self._environment())
        except SpawnError as exc:
            parent.close()
            if exc.step == "exec":
                prefix = sys.prefix
                raise CallError(
                    f"the sandbox cannot run this Python interpreter, {sys.executable} "
                    f"({exc}): its root does not have it at that path. Give a rootfs or image "
                    "that has this interpreter there, or bind it and its prefix in "
                    f"(binds=[\"{prefix}:{prefix}:ro\"])") from exc
            raise
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        try:
            self._sock.send(pickle.dumps({"path": list(sys.path), "preload": ["cloudpickle"]}))
            ready = self._sock.recv(16)
        except OSError as exc:
            self.close()
            raise CallError(f"the sandbox's Python helper failed to start: {exc}") from exc
        if ready != b"R":
            status = self._proc.wait()
            self.close()
            raise CallError("the sandbox's Python helper failed to start "
                            f"({sys.executable} exited with status {status}); does the "
                            "sandbox's root filesystem have this Python interpreter?")

    @staticmethod
    def _environment() -> Mapping[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for key in ("LANG", "LC_ALL", "PYTHONHASHSEED"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def alive(self) -> bool:
        """Whether the zygote still runs."""
        return self._proc.poll() is None

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None) -> Any:
        """``fn(*args, **kwargs)`` in a fork of the zygote, its result or exception.

        Raises CallDied (the process died without an answer), CallError (the zygote is gone,
        the call cannot be pickled), TimeoutError (``timeout`` ran out: the process was
        killed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            kind, error, tb = self._attempt(fn, args, kwargs, deadline, timeout)
            if kind == "ok":
                return error
            # A module the caller imported from a path the sandbox cannot see (its private
            # /tmp hides the caller's /tmp; a rootfs hides everything) cannot be imported
            # there: send that module's functions by value instead, and try once more.
            if (kind == "unpickle-err" and isinstance(error, ModuleNotFoundError)
                    and error.name in sys.modules and error.name not in self._by_value):
                self._by_value.add(error.name)
                continue
            break
        if isinstance(error, BaseException):
            error.child_traceback = tb  # type: ignore[attr-defined]
            if hasattr(error, "add_note"):
                error.add_note("Traceback in the sandbox:\n" + tb.rstrip())
            raise error
        raise CallError(f"sandboxed call failed: {error!r}\n{tb}")

    def _dumps(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> bytes:
        # cloudpickle sends functions of __main__, lambdas and closures by value; plain
        # pickle could only name module-level functions the sandbox can import.
        with _BY_VALUE_LOCK:
            modules = [sys.modules[name] for name in self._by_value if name in sys.modules]
            for module in modules:
                cloudpickle.register_pickle_by_value(module)
            try:
                data: bytes = cloudpickle.dumps((fn, args, kwargs),
                                                protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise CallError(f"cannot send {fn!r} to the sandbox: {exc}") from exc
            finally:
                for module in modules:
                    cloudpickle.unregister_pickle_by_value(module)
        return data

    def _attempt(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 deadline: float | None, timeout: float | None) -> tuple[str, Any, str]:
        payload = self._dumps(fn, args, kwargs)
        with self._lock:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pidfd = -1
            try:
                try:
                    socket.send_fds(self._sock, [b"C"], [theirs.fileno()])
                    theirs.close()
                    mine.sendall(struct.pack("=Q", len(payload)) + payload)
                    msg, fds, _, _ = socket.recv_fds(self._sock, 16, 1)
                except OSError as exc:
                    raise CallError(f"the sandbox's Python helper is gone ({exc})") from None
                if msg != b"P" or not fds:
                    raise CallError("the sandbox's Python helper is gone")
                pidfd = fds[0]
                try:
                    (n,) = struct.unpack("=Q", _recv_exact(mine, 8, deadline))
                    reply = _recv_exact(mine, n, deadline)
                except TimeoutError:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    self._status()
                    raise TimeoutError(f"sandboxed call of {fn!r} timed out after "
                                       f"{timeout:g} s; its process was killed") from None
                except (EOFError, ConnectionResetError):
                    status = self._status()
                    raise CallDied(f"sandboxed call of {fn!r} died without a result "
                                   f"({_describe(status)})", status) from None
                self._status()
            finally:
                mine.close()
                theirs.close()
                if pidfd >= 0:
                    os.close(pidfd)
        kind, *rest = pickle.loads(reply)
        if kind == "ok":
            return "ok", rest[0], ""
        return kind, rest[0], rest[1]

    def _status(self) -> int:
        msg = self._sock.recv(16)
        if not msg.startswith(b"S"):
            raise CallError("the sandbox's Python helper is gone")
        (status,) = struct.unpack("=i", msg[1:5])
        return int(status)

    def close(self) -> None:
        self._sock.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"

