"""Being attached to a container: relaying its streams, the local terminal, signals.

Owns what ``docker run``/``start -a``/``attach``/``exec`` do on the client's side: the local
terminal put in raw mode for a container with a tty and restored on every way out (errors and
signals too), the window size passed at the start and on SIGWINCH, the detach keys (ctrl-p
ctrl-q, ``--detach-keys``) that leave the container running, signals proxied to a container
without a tty, and the exit status. The streams come from the library: the client of the
container's supervisor (:meth:`isolate.container.Container.attach`), the terminal of an exec'd
process (:attr:`isolate.container.Exec.pty`), and the json-file log. Nothing here acts on the
container but through its public methods.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import time
from _collections_abc import Iterator, Sequence

from isolate import _ctx as contextlib
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.cli import UsageError
from isolate.errors import IsolateError

if TYPE_CHECKING:
    from typing import Any, Final

    from isolate.container import Container

__all__ = [
    "DetachScanner",
    "PtyAttachment",
    "SocketAttachment",
    "check_input_tty",
    "exec_attached",
    "raw_terminal",
    "relay",
    "run_attached",
    "window_size",
]

#: What a signal proxy forwards to the container (Docker forwards all but a few: SIGCHLD,
#: SIGPIPE and SIGURG, and the ones no handler can catch).
PROXIED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                  signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCONT,
                  signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
#: Signals that end an attached command: the terminal is restored before it ends by them.
ENDING: Final = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


# For the type checker only: typing (Protocol) is not loaded at run time.
if TYPE_CHECKING:
    from typing import Protocol

    class Attachment(Protocol):
        """The streams of a running container (or exec'd process) as the CLI uses them: an fd
        to wait on, output chunks (``("stdout"|"stderr", data)``; None once it has ended), input,
        and the terminal's size."""

        def fileno(self) -> int:
            """An fd that is readable when :meth:`read` has something (or the end)."""
            ...

        def read(self) -> tuple[str, bytes] | None:
            """The next chunk of output, or None at the end."""
            ...

        def write(self, data: bytes) -> None:
            """Send ``data`` to its stdin."""
            ...

        def close_stdin(self) -> None:
            """Its stdin reads EOF (pipes only)."""
            ...

        def resize(self, rows: int, cols: int) -> None:
            """Set its terminal's size."""
            ...

        def close(self) -> None:
            """Detach (the container keeps running)."""
            ...


class PtyAttachment:
    """An :class:`Attachment` over the master side of a pseudo-terminal: what a process
    with a tty of its own gives its client (its output is one stream, ``stdout``)."""

    def __init__(self, master: int) -> None:
        self.master = master

    def fileno(self) -> int:
        """The master's fd."""
        return self.master

    def read(self) -> tuple[str, bytes] | None:
        """Output, or None once the other side is closed."""
        try:
            data = os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:  # the other side is closed: the process has ended
                return None
            raise
        return ("stdout", data) if data else None

    def write(self, data: bytes) -> None:
        """Type ``data`` into the terminal."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [])
                continue
            view = view[n:]

    def close_stdin(self) -> None:
        """End of input: ^D at the start of a line."""
        self.write(b"\x04")  # a terminal has no EOF of its own: ^D at a line's start

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's size."""
        import termios  # here: a run without a terminal loads neither it nor tty

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        """Close the master."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


# -- the local terminal -----------------------------------------------------------------------

def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal ``fd``, or None when it is not a terminal."""
    if not os.isatty(fd):
        return None  # (and no termios for a run without one)
    import termios

    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols, _, _ = struct.unpack("HHHH", packed)
    return rows, cols


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """The terminal ``fd`` in raw mode for the body (yields whether it is a terminal), its
    settings restored however the body ends: an exception, or SIGTERM, SIGHUP or SIGQUIT
    (they raise :class:`SystemExit` with 128 + N, so the restoring runs first)."""
    try:
        import termios  # here: only a local terminal needs it (and tty)
        import tty as ttymod

        saved = termios.tcgetattr(fd)
    except (termios.error, OSError):
        yield False
        return

    def ending(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {}
    for sig in ENDING:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, ending)
    try:
        ttymod.setraw(fd, termios.TCSANOW)
        yield True
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


class DetachScanner:
    """Finds the detach keys in what the user types. Bytes that may begin the sequence are
    held back until the sequence is complete (detach) or broken (they are sent after all),
    as Docker's client does."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the keys were typed: the rest is dropped)."""
        out = bytearray()
        for b in data:
            self.held += bytes([b])
            if self.keys.startswith(self.held):
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
                continue
            # Broken: send what was held, but the last byte may begin a new sequence.
            out += self.held[:-1]
            self.held = self.held[-1:]
            if not self.keys.startswith(self.held):
                out += self.held
                self.held = b""
        return bytes(out), False


# -- the relay --------------------------------------------------------------------------------

def relay(att: Attachment, *, stdin: bool, tty: bool, detach_keys: bytes | None,
          stdin_fd: int = 0, stdout_fd: int = 1, stderr_fd: int = 2) -> str:
    """Relay between our stdio and ``att`` until its output ends (``"ended"``) or the user
    types the detach keys (``"detached"``). With ``tty``, the local terminal's size is sent
    at once and on every SIGWINCH; the caller has put it in raw mode."""
    scanner = DetachScanner(detach_keys) if detach_keys else None
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    old_wakeup = -1
    old_winch: Any = None
    reading_stdin = stdin
    try:
        if tty:
            old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
            old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
            size = window_size(stdout_fd) or window_size(stdin_fd)
            if size is not None:
                att.resize(*size)
        while True:
            fds = [att.fileno(), wake_r] + ([stdin_fd] if reading_stdin else [])
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 256)
                size = window_size(stdout_fd) or window_size(stdin_fd)
                if tty and size is not None:
                    att.resize(*size)
            if att.fileno() in ready:
                chunk = att.read()
                if chunk is None:
                    return "ended"
                _write_all(stdout_fd if chunk[0] == "stdout" else stderr_fd, chunk[1])
            if reading_stdin and stdin_fd in ready:
                data = os.read(stdin_fd, 65536)
                if not data:
                    reading_stdin = False
                    if not tty:
                        att.close_stdin()
                    continue
                if scanner is not None and tty:
                    data, detached = scanner.feed(data)
                    if data:
                        att.write(data)
                    if detached:
                        return "detached"
                else:
                    att.write(data)
    finally:
        if tty:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGWINCH, old_winch)
        os.close(wake_r)
        os.close(wake_w)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


# -- attached runs ----------------------------------------------------------------------------

#: Frame kinds of the supervisor's socket: Docker's multiplexed streams (docs/shim.md).
_STREAMS: Final = {1: "stdout", 2: "stderr", 3: "stderr"}


class SocketAttachment:
    """An :class:`Attachment` over the client of a container's supervisor
    (:meth:`isolate.container.Container.attach`): frames of stdout and stderr, or the raw
    bytes of its terminal with a tty; stdin, EOF of stdin and resizes the other way."""

    def __init__(self, client: Any, *, tty: bool, stdout: bool = True,
                 stderr: bool = True) -> None:
        self.client = client
        self.tty = tty
        if stdout or stderr:
            client.attach(stdout=stdout, stderr=stderr)

    def fileno(self) -> int:
        """The socket's fd."""
        return int(self.client.fileno())

    def read(self) -> tuple[str, bytes] | None:
        """The next output (None once the supervisor has gone: the container ended)."""
        if self.tty:
            data = self.client.read_raw()
            return ("stdout", data) if data else None
        frame = self.client.read_frame()
        if frame is None:
            return None
        kind, payload = frame
        return _STREAMS.get(int(kind), "stderr"), payload

    def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin."""
        self.client.write_stdin(data)

    def close_stdin(self) -> None:
        """The container's stdin reads EOF (without a tty; with one, ^D is typed)."""
        if self.tty:
            self.client.write_stdin(b"\x04")
        else:
            self.client.close_stdin()

    def resize(self, rows: int, cols: int) -> None:
        """Set the container's terminal size."""
        self.client.resize(rows, cols)

    def close(self) -> None:
        """Detach: the container runs on."""
        self.client.close()


@contextlib.contextmanager
def _proxying(c: Container, enabled: bool) -> Iterator[None]:
    """Forward the signals this command receives to the container, for the body."""
    if not enabled:
        yield
        return

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(IsolateError, OSError):
            c.kill(signum)

    previous = {}
    for sig in PROXIED:
        if sig == signal.SIGWINCH:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


def _exit_code(status: Any) -> int:
    code = int(status.exit_code)
    return code if 0 <= code <= 255 else 125


def check_input_tty(tty: bool, stdin: bool) -> None:
    """Refuse ``-i -t`` when our stdin is not a terminal, as Docker does.

    Raises:
        UsageError: "the input device is not a TTY".
    """
    if tty and stdin and not os.isatty(0):
        raise UsageError("isolate: the input device is not a TTY")


def run_attached(c: Container, *, streams: set[str], tty: bool, detach_keys: bytes | None,
                 sig_proxy: bool, start: bool) -> int:
    """Start ``c`` (with ``start``) and stay attached to it until it ends: its exit code,
    or 0 when the user typed the detach keys (it runs on).

    Without a tty the output comes from the container's log, followed from the moment of
    the start, so that nothing it writes before this command is attached is lost (stdin
    goes through the supervisor's socket); with a tty, the terminal's bytes come through
    the socket, attached right after the start.

    Raises:
        UsageError: ``-i -t`` and our stdin is not a terminal.
        what :meth:`Container.start` and :meth:`Container.attach` raise.
    """
    check_input_tty(tty, "stdin" in streams)
    # Waiting from before the start: an --rm container's supervisor leaves it to us to read
    # how it ended before it goes (docker run waits for "removed" the same way).
    with c.awaiting():
        return _run_attached(c, streams=streams, tty=tty, detach_keys=detach_keys,
                             sig_proxy=sig_proxy, start=start)


def _run_attached(c: Container, *, streams: set[str], tty: bool, detach_keys: bytes | None,
                  sig_proxy: bool, start: bool) -> int:
    from isolate.cli.container_options import parse_detach_keys

    want_stdin = "stdin" in streams
    if tty or not start:
        keys = detach_keys if detach_keys is not None else parse_detach_keys(None)
        if start:
            rows, cols = (window_size(1) or window_size(0) or (0, 0)) if tty else (0, 0)
            c.start(rows=rows, cols=cols)
        att = SocketAttachment(c.attach(), tty=tty, stdout="stdout" in streams,
                               stderr="stderr" in streams)
        return _relayed(c, att, stdin=want_stdin, tty=tty, keys=keys,
                        sig_proxy=sig_proxy and not tty)
    since = time.time()
    c.start()
    feeder = _StdinFeeder(c) if want_stdin else None
    with _proxying(c, sig_proxy):
        records = c.logs(follow=True, since=since, stdout="stdout" in streams,
                         stderr="stderr" in streams)
        try:
            for rec in records:
                _write_all(1 if rec.stream == "stdout" else 2, rec.data)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
            if feeder is not None:
                feeder.close()
        status = c.wait()
    return _exit_code(status)


class _StdinFeeder:
    """Our stdin to a container's, through its supervisor's socket, from a thread (the main
    thread follows the log); EOF here is EOF there."""

    def __init__(self, c: Container) -> None:
        import threading

        self.att = SocketAttachment(c.attach(), tty=False, stdout=False, stderr=False)
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._pump, name="isolate-stdin", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                ready, _, _ = select.select([0, self.stop_r], [], [])
                if self.stop_r in ready:
                    return
                data = os.read(0, 65536)
                if not data:
                    self.att.close_stdin()
                    return
                self.att.write(data)

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join()
        for fd in (self.stop_r, self.stop_w):
            os.close(fd)
        self.att.close()


def _relayed(c: Container, att: Attachment, *, stdin: bool, tty: bool, keys: bytes,
             sig_proxy: bool) -> int:
    """Relay ``att`` (raw mode on our terminal with a tty) until it ends or is detached."""
    local_tty = tty and stdin and os.isatty(0)
    size = window_size(1) or window_size(0)
    if tty and size is not None:
        # What the container showed before we were attached (a shell's prompt) is not sent
        # again: a size one larger, then the real one (relay sets it), makes a line editor
        # draw it anew -- Docker's client does the same when it attaches.
        att.resize(size[0] + 1, size[1] + 1)
    try:
        with raw_terminal(0) if local_tty else contextlib.nullcontext(False), \
                _proxying(c, sig_proxy):
            how = relay(att, stdin=stdin, tty=tty, detach_keys=keys if tty else None)
    finally:
        att.close()
    if how == "detached":
        return 0  # it runs on
    return _exit_code(c.wait())


def exec_attached(c: Container, command: Sequence[str], options: dict[str, Any], *,
                  interactive: bool, tty: bool, detach: bool,
                  detach_keys: bytes | None) -> int:
    """``isolate exec``: run ``command`` in ``c``; its exit code (0 with ``detach``, or
    when the user typed the detach keys: it runs on).

    Raises:
        StateError: the container is not running (Docker's message).
        UsageError: ``-i -t`` and our stdin is not a terminal.
        SpawnError: the command cannot be run (126/127).
    """
    from isolate.cli.container_options import parse_detach_keys

    check_input_tty(tty and not detach, interactive)
    if tty and not detach:
        rows, cols = window_size(1) or window_size(0) or (24, 80)
        proc = c.exec(list(command), tty=True, rows=rows, cols=cols, **options)
        keys = detach_keys if detach_keys is not None else parse_detach_keys(None)
        att = PtyAttachment(proc.pty)
        local_tty = interactive and os.isatty(0)
        try:
            with raw_terminal(0) if local_tty else contextlib.nullcontext(False):
                how = relay(att, stdin=interactive, tty=True, detach_keys=keys)
            if how == "detached":
                return 0
            return int(proc.wait())
        finally:
            proc.pty = -1  # closed with the attachment
            att.close()
            proc.close()
    stdin = 0 if interactive and not detach else None
    out = None if not detach else _devnull()
    try:
        proc = c.exec(list(command), stdin=stdin, stdout=out, stderr=out, **options)
    finally:
        if out is not None:
            os.close(out)
    if detach:
        proc.close()
        return 0
    try:
        return int(proc.wait())
    finally:
        proc.close()


def _devnull() -> int:
    return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
