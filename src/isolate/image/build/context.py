"""The build context: the files a build may read, with ``.dockerignore`` applied, hashed once.

Owns walking the context directory once per build (an index of every entry the ignore file
lets through), resolving ``COPY``/``ADD`` sources in it (globs, the named source's symlinks
followed only while they stay inside the context; ``..`` and symlinks pointing out are
refused) and the content digests that go into cache keys (each file hashed at most once per
build). Reading a file opens it beneath the context root one component at a time, never
following a symlink, so a context changed under a running build cannot make it read outside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import stat
import time
from collections.abc import Iterator
from typing import Any

from isolate import _record
from isolate.image.build.dockerignore import Ignores, find_ignore_file, read_patterns
from isolate.image.build.errors import BuildError, DockerfileError, SourceLocation

__all__ = ["BuildContext", "ContextEntry", "glob_regex", "has_glob", "open_beneath"]

_CHUNK = 1 << 20
_MAX_SYMLINKS = 40
_RACY_SECONDS = 2.0


@_record.record
class ContextEntry:
    """One entry of the context: its slash path relative to the root (``"."`` for the root),
    ``kind`` (``"file"``, ``"dir"``, ``"symlink"`` or ``"other"``) and its lstat fields."""

    path: str
    kind: str
    mode: int
    size: int
    mtime_ns: int
    link: str | None = None
    ctime_ns: int = 0
    ino: int = 0

    def fingerprint(self) -> list[int]:
        """What must stay the same for a remembered file digest to hold: size, times, inode,
        mode (a write changes ctime, which no one can set)."""
        return [self.size, self.mtime_ns, self.ctime_ns, self.ino, self.mode]

    @property
    def name(self) -> str:
        """The last path component."""
        return posixpath.basename(self.path) if self.path != "." else "."


def has_glob(path: str) -> bool:
    """Whether a source path uses wildcards (``*``, ``?``, ``[``), as Docker checks."""
    return any(c in path for c in "*?[")


def glob_regex(component: str) -> re.Pattern[str]:
    """One path component of a Go ``filepath.Match`` pattern as a regular expression:
    ``*`` any run of characters, ``?`` one, ``[...]``/``[^...]`` a class, ``\\x`` a literal.

    Raises:
        ValueError: an unterminated class.
    """
    out: list[str] = []
    i, n = 0, len(component)
    while i < n:
        ch = component[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(component[i]))
        elif ch == "[":
            j = component.find("]", i + 2 if i + 1 < n and component[i + 1] == "^" else i + 1)
            if j < 0:
                raise ValueError(f"syntax error in pattern {component!r}")
            body = component[i + 1:j]
            neg = body.startswith("^")
            if neg:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" if neg else "") + body + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.S)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: str, path: str, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` (relative, slash-separated) below ``root`` without following any
    symlink on the way (the last component included); returns an fd the caller closes.

    Raises:
        OSError: a component is missing or is a symlink (``ELOOP``/``ENOTDIR``).
    """
    parts = [p for p in path.split("/") if p and p != "."]
    if any(p == ".." for p in parts):
        raise OSError(1, f"'..' in {path!r}")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if not parts:
            return os.dup(fd) if flags & os.O_DIRECTORY else os.open(".", flags, dir_fd=fd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class BuildContext:
    """A context directory as the build sees it. Get one with :meth:`open`.

    The directory is walked once, at the first question asked; entries the ignore file
    excludes do not exist for the build (``COPY`` cannot name them, a copied directory leaves
    them out). File digests are computed once and remembered for the build.
    """

    def __init__(self, root: str, ignores: Ignores, ignore_file: str | None = None) -> None:
        self.root = root
        self.ignores = ignores
        self.ignore_file = ignore_file
        self._entries: dict[str, ContextEntry] | None = None
        self._children: dict[str, list[str]] = {}
        self._digests: dict[str, str] = {}
        #: File digests from an earlier build: path -> [*fingerprint, digest]. One is used
        #: only while the file's fingerprint is unchanged.
        self.known: dict[str, list[Any]] = {}
        self._learned: dict[str, list[Any]] = {}
        self._opened = time.time()

    @classmethod
    def open(cls, root: str | os.PathLike[str], dockerfile: str | None = None
             ) -> BuildContext:
        """The context at directory ``root``; ``dockerfile`` (a path) selects a
        ``<dockerfile>.dockerignore`` over ``<root>/.dockerignore``.

        Raises:
            BuildError: ``root`` is not a directory.
            DockerfileError: the ignore file has a malformed pattern.
        """
        path = os.path.realpath(os.fspath(root))
        if not os.path.isdir(path):
            raise BuildError(f"build context {os.fspath(root)!r} is not a directory")
        ignore_file = find_ignore_file(path, dockerfile)
        patterns: list[str] = []
        if ignore_file is not None:
            with open(ignore_file, encoding="utf-8", errors="surrogateescape") as f:
                patterns = read_patterns(f.read())
        return cls(path, Ignores(patterns), ignore_file)

    # -- the index ------------------------------------------------------------------------

    def _index(self) -> dict[str, ContextEntry]:
        if self._entries is None:
            entries: dict[str, ContextEntry] = {}
            st = os.lstat(self.root)
            entries["."] = ContextEntry(".", "dir", st.st_mode, 0, st.st_mtime_ns)
            self._children["."] = []
            self._walk(self.root, ".", entries, excluded_parent=False)
            self._entries = entries
        return self._entries

    def _walk(self, path: str, rel: str, entries: dict[str, ContextEntry],
              excluded_parent: bool) -> bool:
        """Index ``path``'s children; return whether anything below was kept."""
        ignores = self.ignores
        kept = False
        try:
            it = os.scandir(path)
        except OSError as exc:
            raise BuildError(f"cannot read the build context at {path}: {exc.strerror}"
                             ) from exc
        with it:
            children = sorted(it, key=lambda e: e.name)
        names = self._children.setdefault(rel, [])
        for child in children:
            crel = child.name if rel == "." else rel + "/" + child.name
            excluded = bool(ignores) and ignores.excluded(crel)
            st = child.stat(follow_symlinks=False)
            kind = _kind(st.st_mode)
            link = os.readlink(child.path) if kind == "symlink" else None
            entry = ContextEntry(crel, kind, st.st_mode, st.st_size if kind == "file" else 0,
                                 st.st_mtime_ns, link, st.st_ctime_ns, st.st_ino)
            if kind == "dir":
                if excluded and not ignores.has_exceptions:
                    continue
                entries[crel] = entry
                names.append(child.name)
                below = self._walk(child.path, crel, entries, excluded)
                if excluded and not below:
                    del entries[crel]
                    names.pop()
                    self._children.pop(crel, None)
                    continue
                kept = True
            elif not excluded:
                entries[crel] = entry
                names.append(child.name)
                kept = True
        return kept

    def entry(self, path: str) -> ContextEntry | None:
        """The entry at slash path ``path`` (not following symlinks), or None."""
        return self._index().get(_clean(path))

    def walk(self, path: str = ".") -> Iterator[ContextEntry]:
        """``path``'s entry and everything below it, each directory before its contents,
        names sorted."""
        index = self._index()
        top = index.get(_clean(path))
        if top is None:
            return
        yield top
        if top.kind == "dir":
            yield from self._below(top.path, index)

    def _below(self, path: str, index: dict[str, ContextEntry]) -> Iterator[ContextEntry]:
        for name in self._children.get(path, ()):
            crel = name if path == "." else path + "/" + name
            entry = index[crel]
            yield entry
            if entry.kind == "dir":
                yield from self._below(crel, index)

    def __len__(self) -> int:
        return len(self._index())

    # -- resolving sources ----------------------------------------------------------------

    def resolve(self, source: str, *, what: str = "COPY",
                location: SourceLocation | None = None) -> list[tuple[str, ContextEntry]]:
        """What a ``COPY``/``ADD`` source names, as (name, entry) pairs: one for a plain
        path, one per match of a wildcard (possibly none). ``name`` is the last component as
        written or matched; ``entry`` is what it resolves to, symlinks followed inside the
        context (``COPY link /d/`` makes ``/d/link`` with the target's content).

        Raises:
            BuildError: ``..`` leaves the context, a symlink points out of it, or a plain
                source does not exist (or is excluded by the ignore file).
            DockerfileError: a malformed wildcard.
        """
        rel = _relative(source, what, location)
        if not has_glob(rel):
            found = self.follow(rel, what=what, location=location)
            if found is None:
                raise BuildError(f"{what} failed: file not found in build context or excluded "
                                 f"by .dockerignore: {source}", location)
            return [(posixpath.basename(rel) if rel != "." else ".", found)]
        parts = [p for p in rel.split("/") if p]
        try:
            regexes = [glob_regex(p) if has_glob(p) else None for p in parts]
        except ValueError as exc:
            raise DockerfileError(f"{what}: {exc}", location) from None
        index = self._index()
        current = ["."]
        for part, regex in zip(parts, regexes, strict=True):
            nxt = []
            for base in current:
                if index[base].kind != "dir":
                    continue
                for name in self._children.get(base, ()):
                    if (regex.fullmatch(name) if regex is not None else name == part):
                        nxt.append(name if base == "." else base + "/" + name)
            current = nxt
        out = []
        for path in current:
            entry: ContextEntry | None = index[path]
            if entry is not None and entry.kind == "symlink":
                entry = self.follow(path, what=what, location=location)
            if entry is not None:
                out.append((posixpath.basename(path), entry))
        return out

    def follow(self, path: str, *, what: str = "COPY",
               location: SourceLocation | None = None) -> ContextEntry | None:
        """The entry at ``path`` with every symlink on the way (the last one too) resolved
        inside the context, or None if it does not exist.

        Raises:
            BuildError: a symlink points outside the context (an absolute target, or one
                that climbs above the root).
        """
        index = self._index()
        todo = [p for p in _clean(path).split("/") if p and p != "."]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if not done:
                    raise BuildError(f"{what}: {path!r} leads outside the build context",
                                     location)
                done.pop()
                continue
            cur = "/".join([*done, part])
            entry = index.get(cur)
            if entry is None:
                return None
            if entry.kind == "symlink":
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise BuildError(f"{what}: too many levels of symlinks in {path!r}",
                                     location)
                target = entry.link or ""
                if target.startswith("/"):
                    raise BuildError(f"{what}: {cur!r} is a symlink to {target!r}, outside "
                                     "the build context", location)
                todo = [p for p in target.split("/") if p and p != "."] + todo
                depth = len(done)
                for p in target.split("/"):
                    if p == "..":
                        depth -= 1
                        if depth < 0:
                            raise BuildError(f"{what}: {cur!r} is a symlink to {target!r}, "
                                             "outside the build context", location)
                    elif p and p != ".":
                        depth += 1
                continue
            if todo and entry.kind != "dir":
                return None
            done.append(part)
        return index.get("/".join(done) or ".")

    # -- digests --------------------------------------------------------------------------

    def digest(self, path: str) -> str:
        """A digest of what copying ``path`` copies: type, permission bits, content (a
        symlink's target; a directory's entries, recursively). Owners and times are left
        out, as in Docker's cache (COPY sets them itself).

        Raises:
            BuildError: ``path`` is not in the context, or a file cannot be read.
        """
        rel = _clean(path)
        known = self._digests.get(rel)
        if known is not None:
            return known
        index = self._index()
        top = index.get(rel)
        if top is None:
            raise BuildError(f"{rel!r} is not in the build context")
        entries = list(self.walk(rel))
        self._hash_files([e for e in entries if e.kind == "file"
                          and e.path not in self._digests])
        for entry in reversed(entries):  # children before their directory
            if entry.path in self._digests:
                continue
            self._digests[entry.path] = self._entry_digest(entry)
        return self._digests[rel]

    def _entry_digest(self, entry: ContextEntry) -> str:
        perm = stat.S_IMODE(entry.mode)
        if entry.kind == "dir":
            h = hashlib.sha256(f"dir\0{perm:o}\0".encode())
            for name in self._children.get(entry.path, ()):
                crel = name if entry.path == "." else entry.path + "/" + name
                h.update(os.fsencode(name) + b"\0" + self._digests[crel].encode() + b"\0")
            return h.hexdigest()
        if entry.kind == "symlink":
            return hashlib.sha256(f"symlink\0{entry.link}".encode(
                "utf-8", "surrogateescape")).hexdigest()
        if entry.kind == "file":
            raise AssertionError("file digests are computed first")
        return hashlib.sha256(f"other\0{entry.mode:o}".encode()).hexdigest()

    def _hash_files(self, files: list[ContextEntry]) -> None:
        """Hash ``files``, each directory opened once (beneath the root, no symlinks) and
        its files opened relative to it; directories are shared out to worker threads (the
        reads and the hashing of large buffers run without the GIL)."""
        if not files:
            return
        by_dir: dict[str, list[ContextEntry]] = {}
        for entry in files:
            known = self.known.get(entry.path)
            if known is not None and known[:-1] == entry.fingerprint():
                self._digests[entry.path] = known[-1]
                self._learned[entry.path] = known
                continue
            by_dir.setdefault(posixpath.dirname(entry.path) or ".", []).append(entry)
        groups = list(by_dir.items())
        workers = min(4, os.cpu_count() or 1, len(groups))
        results: list[dict[str, str]] = []
        if workers > 1 and len(files) > 64:
            from concurrent.futures import ThreadPoolExecutor  # (a rebuild rarely needs it)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(self._hash_dir, groups))
        else:
            results = [self._hash_dir(group) for group in groups]
        # A file changed within the last seconds may change again within the timestamp
        # granularity without its fingerprint changing ("racy" as git calls it): such digests
        # are used for this build but not remembered.
        settled = (self._opened - _RACY_SECONDS) * 1e9
        for (_parent, entries), result in zip(groups, results, strict=True):
            self._digests.update(result)
            for entry in entries:
                if max(entry.mtime_ns, entry.ctime_ns) < settled:
                    self._learned[entry.path] = [*entry.fingerprint(), result[entry.path]]

    def _hash_dir(self, group: tuple[str, list[ContextEntry]]) -> dict[str, str]:
        parent, entries = group
        try:
            dfd = open_beneath(self.root, parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise BuildError(f"cannot read {parent} in the build context: "
                             f"{exc.strerror or exc}") from exc
        try:
            return {e.path: self._file_digest(e, dfd) for e in entries}
        finally:
            os.close(dfd)

    def _file_digest(self, entry: ContextEntry, dir_fd: int) -> str:
        h = hashlib.sha256(f"file\0{stat.S_IMODE(entry.mode):o}\0".encode())
        try:
            fd = os.open(posixpath.basename(entry.path),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            raise BuildError(f"cannot read {entry.path} in the build context: "
                             f"{exc.strerror or exc}") from exc
        try:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
        finally:
            os.close(fd)
        return h.hexdigest()

    def remembered(self) -> dict[str, list[Any]]:
        """The file digests worth keeping for the next build of this context (see
        :attr:`known`): those of files this build hashed or reused."""
        return dict(self._learned)

    def open_file(self, path: str) -> int:
        """An fd of the regular file at ``path``, opened beneath the root without following
        symlinks (see :func:`open_beneath`).

        Raises:
            BuildError: it cannot be opened.
        """
        try:
            return open_beneath(self.root, path)
        except OSError as exc:
            raise BuildError(f"cannot read {path} in the build context: "
                             f"{exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def reading(self, path: str) -> Iterator[int]:
        """:meth:`open_file` as a context manager that closes the fd."""
        fd = self.open_file(path)
        try:
            yield fd
        finally:
            os.close(fd)


def _clean(path: str) -> str:
    out = posixpath.normpath("/" + path).lstrip("/")
    return out or "."


def _relative(source: str, what: str, location: SourceLocation | None) -> str:
    """A source as a context-relative path: a leading ``/`` means the context root (as in
    Docker); ``..`` that climbs above the root is refused."""
    parts: list[str] = []
    for part in source.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BuildError(f"{what}: source {source!r} is outside the build context",
                                 location)
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."
