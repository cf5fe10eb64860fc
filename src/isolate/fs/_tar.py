"""Reading tar streams: headers, extended headers and sparse maps, by isolate itself.

Owns what a layer's bytes mean (ustar, GNU and pax headers; GNU long names; GNU sparse files
in the old, 0.0, 0.1 and 1.0 formats) and the judgement of what is corrupt: a bad header after
good ones, a truncated stream or a malformed extended header is an error here, whatever the
Python version's ``tarfile`` would make of it (its reading rules changed in security releases,
and an archive once refused was then read as ending early). Reads a forward-only stream; must
not touch the filesystem (:mod:`isolate.fs.layers` extracts what this reads).
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Protocol

from isolate.errors import ImageError

__all__ = ["CorruptLayer", "Entry", "TarStream", "UnsafeArchive", "parse_header"]

BLOCK = 512
# Extended headers (pax records, GNU long names) and sparse maps are read into memory whole; a
# real one is a few hundred bytes, so a larger one is an attempt to exhaust memory.
MAX_EXTENDED_HEADER = 1 << 20

REGTYPE, AREGTYPE, LNKTYPE, SYMTYPE = b"0", b"\0", b"1", b"2"
CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE, CONTTYPE = b"3", b"4", b"5", b"6", b"7"
PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX = b"x", b"g", b"X"
GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"L", b"K", b"S"
REGULAR_TYPES = (REGTYPE, AREGTYPE, CONTTYPE, GNU_SPARSE)
EXTENDED_TYPES = (PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX, GNU_LONGNAME, GNU_LONGLINK)
# Types whose header is all there is (Go's archive/tar and tarfile skip no data after them,
# whatever their size field says); after any other type, size bytes of data follow.
_HEADER_ONLY = (LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE)

# uid_t and gid_t are 32 bits and (uid_t)-1 means "unchanged" to chown; device numbers are 32
# bits each in glibc's makedev; mtimes stay within what nanoseconds in an int64 can hold
# (the C fast path takes only mtimes below 2**33 s, so both agree).
_MAX_ID = 0xFFFFFFFE
_MAX_DEV = 0xFFFFFFFF
_MAX_MTIME = 1 << 33


class UnsafeArchive(ImageError):
    """A layer entry would write outside the destination, or is otherwise hostile.

    ``entry`` is the name of the offending tar member as it appears in the archive, ``reason``
    says what is wrong with it (``"absolute name"``, ``"'..' component"``, ``"parent is a
    symlink"``, ``"hardlink target outside the root"``, ``"header too large"``...).
    """

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"unsafe layer entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


class CorruptLayer(ImageError):
    """A layer is not a readable tar stream (bad header, truncated, unknown compression)."""


class Source(Protocol):
    """What a :class:`TarStream` reads from: a forward-only stream that knows its position."""

    def read(self, size: int) -> bytes: ...

    def tell(self) -> int: ...

    def seek(self, offset: int) -> int: ...


class Entry:
    """One member of a tar stream, extended headers applied.

    ``size`` is the file's size (for a sparse file its real size, holes included);
    ``sparse`` is None or the file's data regions ``(offset, length)`` in order, their bytes
    stored one after the other in the archive. ``pax`` holds the pax records that applied
    (global and the member's own), of which extraction uses the ``SCHILY.xattr.*`` ones.
    """

    __slots__ = ("devmajor", "devminor", "gid", "linkname", "mode", "mtime_ns", "name", "pax",
                 "size", "sparse", "type", "uid")

    def __init__(self) -> None:
        self.name = ""
        self.linkname = ""
        self.type = REGTYPE
        self.mode = 0o644
        self.uid = self.gid = 0
        self.size = 0
        self.mtime_ns = 0
        self.devmajor = self.devminor = 0
        self.pax: dict[str, str] = {}
        self.sparse: tuple[tuple[int, int], ...] | None = None

    def __repr__(self) -> str:
        return f"<tar entry {self.name!r} type {self.type!r} size {self.size}>"

    def isreg(self) -> bool:
        return self.type in REGULAR_TYPES

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        return self.type == FIFOTYPE


def _decode(field: bytes) -> str:
    # As tarfile (and the C fast path's callers) decode names, so paths compare equal.
    return field.decode("utf-8", "surrogateescape")


def _nts(field: bytes) -> str:
    return _decode(field.split(b"\0", 1)[0])


# Spaces a writer may pad a number with (GNU tar accepts isspace()).
_PAD = b" \t\n\r\x0b\x0c"
_OCTAL = re.compile(rb"[0-7]*\Z")


def _number(field: bytes, what: str) -> int:
    """A numeric header field: base-256 (GNU and star), or octal digits padded with spaces and
    ended by a NUL or the field's end, as GNU tar reads them. Anything else is corrupt (where
    Python's ``int`` would also take signs and underscores)."""
    if field[0] in (0x80, 0xFF):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xFF else value
    digits = field.split(b"\0", 1)[0].strip(_PAD)
    if not _OCTAL.match(digits):
        raise CorruptLayer(f"bad tar header: {what} field {bytes(field)!r} is not a number")
    return int(digits, 8) if digits else 0


def _byte_sum(data: bytes | bytearray | memoryview) -> int:
    """sum(data) for up to 512 bytes, in C: adler32's low half is 1 + the byte sum modulo
    65521, exact for 256 bytes (at most 65280)."""
    total = 0
    for i in range(0, len(data), 256):
        total += (zlib.adler32(data[i : i + 256]) & 0xFFFF) - 1
    return total


def _signed_sum(block: bytes) -> int:
    return sum(b - 256 if b > 127 else b for b in block)


def _check_range(entry: Entry, what: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise CorruptLayer(f"layer entry {entry.name!r}: {what} {value} is out of range")
    return value


# The string fields of a ustar header: name, type, linkname, uname, gname, prefix.
_USTAR_STRINGS = struct.Struct("100s56xc100s88x155s12x")
# mode uid gid size mtime chksum as most writers format them, then the type.
_COMMON_NUMBERS = re.compile(rb"([0-7]{7})\0([0-7]{7})\0([0-7]{7})\0([0-7]{11})\0([0-7]{11})\0"
                             rb"([0-7]{6})\0 ")
_NO_DEVICE = b"\0" * 16
# (offset, size, what) of the numeric fields.
_FIELDS = ((100, 8, "mode"), (108, 8, "uid"), (116, 8, "gid"), (124, 12, "size"),
           (136, 12, "mtime"), (148, 8, "checksum"), (329, 8, "devmajor"), (337, 8, "devminor"))


def parse_header(block: bytes) -> Entry:
    """Read one 512-byte header block (not all zeros) into an :class:`Entry`.

    The name has the ustar prefix joined and, for a directory, trailing slashes stripped; a
    regular file whose name ends in a slash is a directory (old V7 archives). Extended
    headers are not applied here (see :class:`TarStream`).

    Raises:
        CorruptLayer: a short block, a bad checksum, a malformed number, or an id, time or
            device number out of range.
    """
    if len(block) != BLOCK:
        raise CorruptLayer("bad tar header: truncated")
    entry = Entry()
    name, type_, linkname, prefix = _USTAR_STRINGS.unpack(block)
    common = _COMMON_NUMBERS.fullmatch(block, 100, 156)
    if common is not None and block[329:345] == _NO_DEVICE:
        mode, uid, gid, size, mtime, checksum = (int(n, 8) for n in common.groups())
        devmajor = devminor = 0
    else:
        mode, uid, gid, size, mtime, checksum, devmajor, devminor = (
            _number(block[at : at + n], what) for at, n, what in _FIELDS)
    unsigned = 256 + _byte_sum(block) - _byte_sum(block[148:156])
    # Some old writers summed signed chars; both sums are accepted, as by GNU tar.
    if checksum != unsigned and checksum != 256 + _signed_sum(block[:148] + block[156:]):
        raise CorruptLayer("bad tar header: checksum does not match")
    entry.name = _nts(name)
    entry.linkname = _nts(linkname)
    entry.type = type_
    if prefix[0] and type_ not in (GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE):
        # In GNU headers those bytes hold other fields; as tarfile and the C fast path read it.
        entry.name = _nts(prefix) + "/" + entry.name
    entry.mode = mode & 0o7777
    entry.uid, entry.gid, entry.size = uid, gid, size
    entry.mtime_ns = mtime * 1_000_000_000
    entry.devmajor, entry.devminor = devmajor, devminor
    if type_ == GNU_SPARSE:
        entry.sparse = tuple(_old_gnu_map(block[386:482]))
    return entry


def _finish(entry: Entry) -> None:
    """Checks and normalisation once every header of the entry is applied."""
    if entry.type == AREGTYPE and entry.name.endswith("/"):
        entry.type = DIRTYPE  # old V7 tars mark directories with a slash only
    if entry.type == DIRTYPE:
        entry.name = entry.name.rstrip("/")
    _check_range(entry, "uid", entry.uid, 0, _MAX_ID)
    _check_range(entry, "gid", entry.gid, 0, _MAX_ID)
    _check_range(entry, "size", entry.size, 0, (1 << 63) - 1)
    if entry.type in (CHRTYPE, BLKTYPE):
        _check_range(entry, "device major", entry.devmajor, 0, _MAX_DEV)
        _check_range(entry, "device minor", entry.devminor, 0, _MAX_DEV)
    else:
        entry.devmajor = entry.devminor = 0


def _old_gnu_map(area: bytes) -> list[tuple[int, int]]:
    """The (offset, length) pairs of an old GNU sparse area (24 bytes each); an empty length
    field ends the map."""
    pairs = []
    for at in range(0, len(area) - 23, 24):
        if area[at + 12] == 0:
            break
        pairs.append((_number(area[at : at + 12], "sparse offset"),
                      _number(area[at + 12 : at + 24], "sparse length")))
    return pairs


# -- pax records

_RECORD_LENGTH = re.compile(rb"([0-9]{1,20}) ")
_DECIMAL = re.compile(r"[0-9]{1,20}\Z")
_TIME = re.compile(r"(-?)([0-9]{1,20})(?:\.([0-9]*))?\Z")


def parse_pax(data: bytes, entry: str) -> list[tuple[str, str]]:
    """The records ``LEN KEY=VALUE\\n`` of a pax extended header, in order.

    Raises:
        CorruptLayer: a record is malformed (a bad length, no ``=``, no newline at its end).
    """
    records = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        match = _RECORD_LENGTH.match(data, pos)
        if match is None:
            raise CorruptLayer(f"layer entry {entry!r}: malformed pax record at byte {pos}")
        end = pos + int(match.group(1))
        key, eq, value = data[match.end() : end - 1].partition(b"=")
        if end > len(data) or end - pos < 5 or data[end - 1] != 0x0A or not key or not eq:
            raise CorruptLayer(f"layer entry {entry!r}: malformed pax record at byte {pos}")
        records.append((_decode(key), _decode(value)))
        pos = end
    return records


def _pax_int(entry: Entry, key: str, value: str) -> int:
    if not _DECIMAL.match(value):
        raise CorruptLayer(f"layer entry {entry.name!r}: pax {key}={value!r} is not a number")
    return int(value)


def _pax_time_ns(entry: Entry, key: str, value: str) -> int:
    match = _TIME.match(value)
    if match is None:
        raise CorruptLayer(f"layer entry {entry.name!r}: pax {key}={value!r} is not a time")
    sign, whole, fraction = match.groups()
    ns = int(whole) * 1_000_000_000 + int((fraction or "").ljust(9, "0")[:9])
    return -ns if sign else ns


def _apply_pax(entry: Entry, pax: dict[str, str]) -> None:
    """Let pax records override header fields (POSIX: a record wins over the header)."""
    for key, value in pax.items():
        if key == "path":
            entry.name = value
        elif key == "linkpath":
            entry.linkname = value
        elif key == "size":
            entry.size = _pax_int(entry, key, value)
        elif key == "uid":
            entry.uid = _pax_int(entry, key, value)
        elif key == "gid":
            entry.gid = _pax_int(entry, key, value)
        elif key == "mtime":
            entry.mtime_ns = _pax_time_ns(entry, key, value)
    if "GNU.sparse.name" in pax:
        entry.name = pax["GNU.sparse.name"]


# -- the stream


class TarStream:
    """The entries of a tar stream, one after the other, with their data.

    Reads forward only. :meth:`next` skips whatever data of the previous entry was not read,
    reads the next entry's headers and stops at its data; :meth:`read` reads that data.
    ``offset`` is where the next header starts (a caller that consumed entries itself, as the
    C fast path does, moves it on). ``global_pax`` holds the records of global pax headers
    seen so far, which apply to every later entry.
    """

    def __init__(self, source: Source) -> None:
        self._source = source
        self.offset = source.tell()
        self.global_pax: dict[str, str] = {}
        self._data_left = 0

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._source.read(n)
        if len(data) != n:
            raise CorruptLayer(f"layer is not a readable tar stream: {what} truncated")
        return data

    def _skip_to_next(self) -> None:
        if self._source.seek(self.offset) != self.offset:
            raise CorruptLayer("layer is not a readable tar stream: unexpected end of data")

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current entry's stored data (b"" once it is all read,
        or where the stream ends early)."""
        data = self._source.read(min(size, self._data_left))
        self._data_left -= len(data)
        return data

    def next(self) -> Entry | None:
        """The next entry, or None at the end-of-archive block.

        Raises:
            CorruptLayer: a bad or truncated header, an extended header without an entry, a
                malformed pax record or sparse map, or a stream that ends without the
                end-of-archive block (truncated).
            UnsafeArchive: an extended header or sparse map larger than MAX_EXTENDED_HEADER.
        """
        pax: dict[str, str] = {}
        sparse_pairs: list[tuple[str, str]] = []
        longname = longlink = None
        extended = False
        while True:
            self._skip_to_next()
            block = self._source.read(BLOCK)
            if not block:
                raise CorruptLayer("layer is not a readable tar stream: it ends without the "
                                   "end-of-archive block (truncated?)")
            if len(block) < BLOCK:
                raise CorruptLayer("layer is not a readable tar stream: truncated header")
            if block.count(0) == BLOCK:
                if extended:
                    raise CorruptLayer("layer is not a readable tar stream: an extended "
                                       "header is followed by the end of the archive")
                self.offset += BLOCK
                return None
            entry = parse_header(block)
            data_at = self.offset + BLOCK
            if entry.type not in EXTENDED_TYPES:
                break
            if entry.size < 0:
                raise CorruptLayer(f"layer entry {entry.name!r}: negative size")
            if entry.size > MAX_EXTENDED_HEADER:
                raise UnsafeArchive(entry.name, f"extended header of {entry.size} bytes "
                                    f"(limit {MAX_EXTENDED_HEADER})")
            data = self._read_exact(entry.size, "extended header")
            self.offset = data_at + _padded(entry.size)
            extended = True
            if entry.type == GNU_LONGNAME:
                longname = _nts(data)
            elif entry.type == GNU_LONGLINK:
                longlink = _nts(data)
            else:
                records = parse_pax(data, entry.name)
                target = self.global_pax if entry.type == PAX_GLOBAL else pax
                for key, value in records:
                    if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
                        sparse_pairs.append((key, value))
                    elif value:
                        target[key] = value
                    else:  # POSIX: an empty value deletes the keyword
                        target.pop(key, None)
        stored = entry.size
        if longname is not None:
            entry.name = longname
        if longlink is not None:
            entry.linkname = longlink
        merged = {**self.global_pax, **pax}
        _apply_pax(entry, merged)
        entry.pax = merged
        if entry.type in _HEADER_ONLY:
            stored = 0
        elif "size" in merged:
            stored = entry.size
        self.offset = data_at + _padded(stored)
        _finish(entry)
        if not -_MAX_MTIME * 1_000_000_000 < entry.mtime_ns < _MAX_MTIME * 1_000_000_000:
            raise CorruptLayer(f"layer entry {entry.name!r}: mtime out of range")
        self._data_left = stored
        if entry.type == GNU_SPARSE:
            self._old_gnu_sparse(entry, block, stored)
        elif entry.isreg() and (sparse_pairs or any(k.startswith("GNU.sparse.") for k in merged)):
            self._pax_sparse(entry, merged, sparse_pairs, stored)
        return entry

    def _old_gnu_sparse(self, entry: Entry, header: bytes, stored: int) -> None:
        pairs = list(entry.sparse or ())
        extended = header[482]
        while extended:
            block = self._read_exact(BLOCK, "sparse header")
            self.offset += BLOCK
            pairs += _old_gnu_map(block[:504])
            extended = block[504]
            if len(pairs) * 24 > MAX_EXTENDED_HEADER:
                raise UnsafeArchive(entry.name, "sparse map too large")
        entry.size = _number(header[483:495], "sparse real size")
        entry.sparse = _checked_map(entry, pairs, stored)

    def _pax_sparse(self, entry: Entry, pax: dict[str, str], pairs: list[tuple[str, str]],
                    stored: int) -> None:
        real = pax.get("GNU.sparse.realsize", pax.get("GNU.sparse.size"))
        if real is None:
            raise CorruptLayer(f"layer entry {entry.name!r}: GNU sparse file without its size")
        if (pax.get("GNU.sparse.major"), pax.get("GNU.sparse.minor")) == ("1", "0"):
            numbers, used = self._sparse_map_in_data(entry, stored)
            stored -= used
        elif "GNU.sparse.map" in pax:
            numbers = pax["GNU.sparse.map"].split(",")  # format 0.1
        else:
            # Format 0.0: offset/numbytes records in pairs, in order.
            if [k for k, _ in pairs] != ["GNU.sparse.offset", "GNU.sparse.numbytes"] * (
                    len(pairs) // 2):
                raise CorruptLayer(f"layer entry {entry.name!r}: bad GNU sparse records")
            numbers = [v for _, v in pairs]
        if len(numbers) % 2:
            raise CorruptLayer(f"layer entry {entry.name!r}: odd GNU sparse map")
        values = [_pax_int(entry, "GNU.sparse.map", n) for n in numbers]
        entry.size = _pax_int(entry, "GNU.sparse.size", real)
        pairs_ = list(zip(values[::2], values[1::2], strict=True))
        entry.sparse = _checked_map(entry, pairs_, stored)

    def _sparse_map_in_data(self, entry: Entry, stored: int) -> tuple[list[str], int]:
        """Format 1.0: the map opens the data, decimal numbers one a line (the count, then
        offset and length pairs), padded to a whole block. Returns (numbers, bytes used)."""
        text = b""
        while True:
            if len(text) >= MAX_EXTENDED_HEADER:
                raise UnsafeArchive(entry.name, "sparse map too large")
            if len(text) + BLOCK > stored:
                raise CorruptLayer(f"layer entry {entry.name!r}: sparse map truncated")
            text += self._read_exact(BLOCK, "sparse map")
            self._data_left -= BLOCK
            lines = text.split(b"\n")
            if not lines[0] or not lines[0].isdigit():
                raise CorruptLayer(f"layer entry {entry.name!r}: bad GNU sparse map")
            count = int(lines[0])
            if len(lines) - 1 > 2 * count:  # all of count's pairs, each newline-ended
                break
        numbers = [n.decode("ascii", "replace") for n in lines[1 : 1 + 2 * count]]
        return numbers, len(text)


def _padded(size: int) -> int:
    return size + (-size % BLOCK)


def _checked_map(entry: Entry, pairs: list[tuple[int, int]], stored: int
                 ) -> tuple[tuple[int, int], ...]:
    """The data regions in order, inside the file, holding together the stored bytes."""
    _check_range(entry, "size", entry.size, 0, (1 << 63) - 1)
    end = 0
    for offset, length in pairs:
        if offset < end or length < 0 or offset + length > entry.size:
            raise CorruptLayer(f"layer entry {entry.name!r}: GNU sparse map is not in order "
                               "or reaches past the file's size")
        end = offset + length
    if sum(length for _, length in pairs) != stored:
        raise CorruptLayer(f"layer entry {entry.name!r}: GNU sparse map holds "
                           f"{sum(n for _, n in pairs)} bytes but the entry stores {stored}")
    return tuple(pairs)

