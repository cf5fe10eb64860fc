"""An image's merged filesystem, read from its extracted layers without mounting anything.

Owns overlay semantics in user space: a path is looked up from the top layer down, a 0/0
character device (whiteout) hides what lies below, an ``overlay.opaque`` directory hides the
lower directories' contents. Symlinks are resolved inside the image (an absolute target means
the image's root, ``..`` stops at it), so reading ``/etc/passwd`` of an image never reads a
host file. Used for ``COPY --from``, ``--chown`` names, ``USER`` and destination paths.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence

from isolate import _record

__all__ = ["ImageTree", "TreeEntry"]

_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_MAX_SYMLINKS = 40


@_record.record
class TreeEntry:
    """One entry of the merged tree: its image ``path`` (absolute, symlinks in its parents
    resolved), the ``host`` path of the topmost layer's copy, and that copy's lstat."""

    path: str
    host: str
    st: os.stat_result = _record.field(eq=False)

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory."""
        return stat.S_ISDIR(self.st.st_mode)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


class ImageTree:
    """The merged view of layer directories ``lowers`` (lowest first), as overlayfs would
    show them. Nothing here writes."""

    def __init__(self, lowers: Sequence[str]) -> None:
        self.lowers = list(lowers)
        # image dir path -> host dirs holding it, topmost first (None: not a directory)
        self._dirs: dict[str, list[str] | None] = {"/": list(reversed(self.lowers))}
        for host in self.lowers:
            if _is_opaque(host):
                top = self.lowers.index(host)
                self._dirs["/"] = list(reversed(self.lowers[top:]))
                break

    def _layers_of(self, path: str) -> list[str] | None:
        """The host directories that make up the merged directory ``path`` (resolved)."""
        known = self._dirs.get(path)
        if known is not None or path in self._dirs:
            return known
        parent = self._layers_of(posixpath.dirname(path))
        name = posixpath.basename(path)
        out: list[str] | None = None
        if parent is not None:
            collected: list[str] = []
            for host_dir in parent:
                p = os.path.join(host_dir, name)
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                    break
                collected.append(p)
                if _is_opaque(p):
                    break
            out = collected or None
        self._dirs[path] = out
        return out

    def _child(self, parent: str, name: str) -> TreeEntry | None:
        layers = self._layers_of(parent)
        if not layers:
            return None
        for host_dir in layers:
            p = os.path.join(host_dir, name)
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if _is_whiteout(st):
                return None
            return TreeEntry(posixpath.join(parent, name), p, st)
        return None

    def lookup(self, path: str, *, follow: bool = True) -> TreeEntry | None:
        """The entry at ``path`` (absolute or relative to ``/``), symlinks in its parents
        resolved inside the image, and the last one too when ``follow``; None if missing
        (or a symlink loop)."""
        resolved = self.resolve(path, follow=follow)
        if resolved is None:
            return None
        if resolved == "/":
            top = self._layers_of("/")
            if not top:
                return None
            return TreeEntry("/", top[0], os.lstat(top[0]))
        return self._child(posixpath.dirname(resolved), posixpath.basename(resolved))

    def resolve(self, path: str, *, follow: bool = True) -> str | None:
        """``path`` with every symlink resolved inside the image (the last component only
        when ``follow``). Missing components are kept as written, so the answer names where a
        new file would go. None: a loop, or a non-directory in the middle."""
        todo = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/" + "/".join(done)
            entry = self._child(cur, part)
            if entry is not None and stat.S_ISLNK(entry.st.st_mode) and (todo or follow):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    return None
                target = os.readlink(entry.host)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p and p != "."] + todo
                continue
            if entry is not None and todo and not entry.is_dir:
                return None
            done.append(part)
            if entry is None:
                done.extend(p for p in todo if p not in ("", "."))
                return "/" + posixpath.normpath("/".join(done)).lstrip("/")
        return "/" + "/".join(done)

    def children(self, path: str) -> dict[str, TreeEntry]:
        """The merged contents of directory ``path`` (resolved), by name."""
        resolved = self.resolve(path)
        layers = self._layers_of(resolved) if resolved is not None else None
        out: dict[str, TreeEntry] = {}
        seen: set[str] = set()
        for host_dir in layers or ():
            try:
                names = os.listdir(host_dir)
            except OSError:
                continue
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                p = os.path.join(host_dir, name)
                st = os.lstat(p)
                if not _is_whiteout(st):
                    out[name] = TreeEntry(posixpath.join(resolved or "/", name), p, st)
        return out

    def walk(self, path: str) -> Iterator[tuple[str, TreeEntry]]:
        """(path relative to ``path``, entry) of everything below directory ``path``, each
        directory before its contents, names sorted."""
        for name, entry in sorted(self.children(path).items()):
            yield name, entry
            if entry.is_dir:
                for rel, sub in self.walk(entry.path):
                    yield name + "/" + rel, sub

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """The content of the regular file at ``path`` (symlinks resolved inside the image),
        at most ``limit`` bytes; None if it is missing or not a regular file."""
        entry = self.lookup(path)
        if entry is None or not stat.S_ISREG(entry.st.st_mode):
            return None
        try:
            fd = os.open(entry.host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read(limit)
