"""Reading a container's log: Docker's ``json-file`` format, as the supervisor writes it.

Owns the reading side only: one JSON object per line (``log``, ``stream``, ``time`` in RFC 3339
with nanoseconds) in ``container.log``, with rotated files ``container.log.1`` (newer) to
``container.log.N`` (oldest); ``tail``, ``since``/``until``, the two streams apart, and
``follow`` (reading on as the file grows or rotates, until the container has ended and
everything is read). The supervisor owns writing.
"""

from __future__ import annotations

import os
import sys
import time
from _collections_abc import Iterator

from isolate import _json as json
from isolate import _record
from isolate._typing import TYPE_CHECKING
from isolate.container.state import parse_time
from isolate.errors import ConfigError

if TYPE_CHECKING:
    import collections
    import datetime
    from typing import BinaryIO

    from isolate.container._view import ContainerView

__all__ = ["LogRecord", "parse_log_time", "read_logs", "read_records"]

_DURATION = r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)"  # compiled where used: a run needs no re
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_POLL = 0.05
#: The first wait of a follow that found nothing new; each further one doubles, up to _POLL
#: (new output shows within that). The end of the container's first process ends a wait at
#: once: a short command (``isolate run --rm IMAGE /bin/true`` follows its log) ends within a
#: few ms, and a first wait of _POLL made every such run 50 ms slower than its container.
_FIRST_POLL = 0.001


@_record.record
class LogRecord:
    """One record of the log: ``stream`` (``"stdout"`` or ``"stderr"``), ``time`` (as
    written, RFC 3339 with nanoseconds), ``time_ns`` (since the epoch) and ``text`` (the line
    with its newline; a piece of a longer line, or the unfinished end of a stream, without)."""

    stream: str
    time: str
    time_ns: int
    text: str

    @property
    def data(self) -> bytes:
        """``text`` as bytes (what the container wrote, invalid UTF-8 as U+FFFD)."""
        return self.text.encode("utf-8", "surrogateescape")


def parse_log_time(value: str | float | int | datetime.datetime) -> int:
    """``since``/``until`` as Docker takes them, in nanoseconds since the epoch: a number of
    seconds since the epoch, an RFC 3339 time, a ``datetime``, or a duration before now
    (``"10m"``, ``"1.5h"``, ``"30s"``).

    Raises:
        ConfigError: none of these.
    """
    # A datetime can only come from a caller that imported the module: 'isolate run' and
    # 'logs' (which never pass one) need not load it.
    dt = sys.modules.get("datetime")
    if dt is not None and isinstance(value, dt.datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1e9)
    if isinstance(value, str):
        text = value.strip()
        import re

        m = re.fullmatch(_DURATION, text)
        if m:
            return time.time_ns() - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)
        try:
            return int(float(text) * 1e9)
        except ValueError:
            pass
        try:
            return parse_time(text)
        except (ValueError, IndexError):
            pass
    raise ConfigError(f"invalid value for time: {value!r} (seconds since the epoch, an "
                      "RFC 3339 time or a duration such as 10m)")


def _parse(line: bytes) -> LogRecord | None:
    try:
        obj = json.loads(line)
        text, stream, stamp = obj["log"], obj["stream"], obj["time"]
        return LogRecord(str(stream), str(stamp), parse_time(str(stamp)), str(text))
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # a torn last line (the writer was cut off): skipped, as Docker does


def _files(path: str) -> list[str]:
    """The log's files, oldest first."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return [*reversed(rotated), path]


def read_records(path: str) -> Iterator[LogRecord]:
    """Every record of the log at ``path`` and its rotated files, oldest first."""
    for name in _files(path):
        yield from _records_of(name)


def read_logs(container: ContainerView, *, stdout: bool = True, stderr: bool = True,
              tail: int | None = None, since: str | float | None = None,
              until: str | float | None = None, follow: bool = False
              ) -> Iterator[LogRecord]:
    """The container's log records (``docker logs``): the streams asked for, the last
    ``tail`` of them, those at or after ``since`` and before ``until``; with ``follow``,
    new ones as they come, until the container is no longer running and all is read.

    Raises:
        ConfigError: a bad ``tail``, ``since`` or ``until``.
        NotFoundError: the container is gone.
    """
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise ConfigError(f"tail must be a number of lines >= 0, not {tail!r}")
    lo = parse_log_time(since) if since is not None else None
    hi = parse_log_time(until) if until is not None else None
    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def wanted(rec: LogRecord) -> bool:
        return rec.stream in streams and (lo is None or rec.time_ns >= lo) and (
            hi is None or rec.time_ns < hi)

    path = container.log_path
    # Whether the container runs is read before the file: output it writes after this
    # reading is seen by the follow loop below, never lost between the two.
    running = follow and container.state.status.running
    if not follow:
        records: Iterator[LogRecord] = filter(wanted, read_records(path))
        if tail is not None:
            import collections  # here: only --tail needs it

            records = iter(collections.deque(records, maxlen=tail))
        yield from records
        return
    # Follow: the rotated files, then the current one, kept open and read on as it grows;
    # on rotation the old file is read to its end before the new one is opened.
    held: collections.deque[LogRecord] | None = None
    if tail is not None:
        import collections

        held = collections.deque(maxlen=tail)
    f = _open_or_none(path)
    for name in _files(path)[:-1]:
        for rec in _records_of(name):
            if wanted(rec):
                if held is not None:
                    held.append(rec)
                else:
                    yield rec
    pending = b""
    wait = _FIRST_POLL
    try:
        while True:
            chunk = f.read() if f is not None else b""
            if chunk:
                wait = _FIRST_POLL
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    got = _parse(line + b"\n")
                    if got is not None and wanted(got):
                        if held is not None:
                            held.append(got)
                        else:
                            yield got
                continue
            if held is not None:  # the end of what was there: the tail is known now
                yield from held
                held = None
            if hi is not None and time.time_ns() >= hi:
                return
            if _rotated(f, path):
                if f is not None:
                    f.close()
                f = _open_or_none(path)
                pending = b""
                continue
            if not running:
                return
            st = container.state
            running = st.status.running
            if running:
                # Woken at once when its first process ends (a pidfd), not at the end of
                # the wait: a short command's run ends with it.
                container._wait_exit(st, wait)
                wait = min(wait * 2, _POLL)
            # else: one more read, of what it wrote just before it ended
    finally:
        if f is not None:
            f.close()


def _records_of(name: str) -> Iterator[LogRecord]:
    """The complete records of one file (none if it was rotated away meanwhile)."""
    try:
        with open(name, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    rec = _parse(line)
                    if rec is not None:
                        yield rec
    except FileNotFoundError:
        return


def _open_or_none(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _rotated(f: BinaryIO | None, path: str) -> bool:
    """Whether the log at ``path`` is another file than the open ``f`` (rotated, or made
    since we looked)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if f is None:
        return True
    own = os.fstat(f.fileno())
    return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino) or st.st_size < f.tell()
