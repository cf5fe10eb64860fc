"""Trees of an image store as the caller sees them, or as root of a user namespace with an
id map sees them: layers unpacked and packed, directory metadata copied, trees removed.

Owns the one way a layer becomes an extracted directory (extract into a temp dir, check its
diff id, fsync, rename into place; remove the temp dir on failure), and the helper process that
does that, and the rest, inside a fresh user namespace with given maps (subordinate ranges
written with newuidmap/newgidmap), where owners the maps cover are kept -- what rootless
podman's storage does under ``podman unshare``. The calling process never changes its own
namespaces: the helper is a fresh interpreter, exec'd, that takes one job per line of JSON.
Knows nothing of the store's layout (the store passes paths), and imports only the building
blocks, so that the helper starts without the image package.
"""

from __future__ import annotations

import os
import stat
import sys
from _collections_abc import Callable, Sequence

from isolate import _ctx as contextlib
from isolate import _json as json
from isolate import _record
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.errors import (
    ConfigError,
    DigestMismatch,
    ImageError,
    IsolateError,
    IsolateOSError,
    UnsupportedError,
)
from isolate.fs import _tree

if TYPE_CHECKING:
    from typing import IO, Any

    from isolate import lowlevel
    from isolate.fs.layers import Layer
    from isolate.namespaces import IdMaps

__all__ = ["MappedWorker", "copy_metadata", "pack_layer", "remove_tree", "unpack_layer"]


def unpack_layer(blob: str, tmp: str, final: str, diff_id: str, digest: str) -> None:
    """Extract the layer blob ``blob`` (named ``digest``) into the new directory ``tmp``,
    check that it unpacks to ``diff_id``, fsync it and rename it to ``final``. On failure
    ``tmp`` is removed and ``final`` untouched.

    Raises:
        DigestMismatch: the layer does not unpack to ``diff_id``.
        UnsafeArchive, CorruptLayer, IsolateOSError: from :func:`isolate.fs.layers.extract`.
    """
    from isolate.fs import layers as fslayers

    os.mkdir(tmp, 0o755)
    try:
        stats = fslayers.extract(blob, tmp)
        if stats.diff_id != diff_id:
            raise DigestMismatch(
                f"layer {digest} unpacks to {stats.diff_id}, but the image config says "
                f"{diff_id}", expected=diff_id, actual=stats.diff_id)
        _tree.fsync_tree(tmp)
        os.rename(tmp, final)
        _tree.fsync_dir(os.path.dirname(final))
    except BaseException:
        _remove_tree(tmp)
        raise


def pack_layer(src: str, out: str, *, diff: bool, compression: str | None) -> Layer:
    """Write the layer blob of the tree ``src`` to the new file ``out`` and fsync it: the
    changes of an overlay upper dir (``diff``, as :func:`isolate.fs.layers.diff_layer`
    writes them) or the whole tree (:func:`isolate.fs.layers.pack`). A failure removes
    ``out``.

    Raises what those functions raise (IsolateOSError, ConfigError, UnsupportedError).
    """
    from isolate.fs import layers as fslayers

    try:
        with open(out, "xb") as f:
            if diff:
                layer = fslayers.diff_layer(src, f, compression=compression)  # type: ignore[arg-type]
            else:
                layer = fslayers.pack(src, f, compression=compression)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        raise
    return layer


def _remove_tree(path: str) -> None:
    try:
        _tree.remove_tree(path)
    except OSError as exc:
        raise ImageError(f"cannot remove {path}: {exc.strerror or exc}") from exc


def copy_metadata(pairs: Sequence[tuple[str, str]]) -> None:
    """Give each ``made`` of ``(made, source)`` the owner, mode and times of ``source``."""
    for made, source in pairs:
        st = os.lstat(source)
        os.chown(made, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(made, stat.S_IMODE(st.st_mode))
        os.utime(made, ns=(st.st_atime_ns, st.st_mtime_ns))


def _remove(paths: Sequence[str]) -> None:
    errors = []
    for path in paths:
        if not os.path.lexists(path):
            continue
        try:
            _remove_tree(path)
        except ImageError as exc:
            errors.append(str(exc))
    if errors:
        raise ImageError("; ".join(errors))


def remove_tree(path: str, maps: IdMaps | None = None) -> None:
    """Remove the file or tree at ``path`` (absent is fine); with subordinate ``maps``, what
    only the mapped owners may remove (what uid 1000 made in a rootless sandbox's or
    container's upper dir) is removed by a helper in a user namespace with those maps.

    Raises:
        ImageError: something could not be removed, or the helper died.
        NamespaceError, UnsupportedError: the helper could not be started.
    """
    try:
        _remove_tree(path)
    except ImageError:
        if maps is None or not maps.subordinate:
            raise
        with MappedWorker(maps) as worker:
            worker.remove([path])


# -- the helper's side ----------------------------------------------------------------------------

def _describe(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON that :func:`_rebuild` turns back into the same kind of error."""
    from isolate.fs._tar import UnsafeArchive

    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, UnsafeArchive):
        out.update(type="UnsafeArchive", entry=exc.entry, reason=exc.reason)
    elif isinstance(exc, DigestMismatch):
        out.update(type="DigestMismatch", expected=exc.expected, actual=exc.actual)
    elif isinstance(exc, IsolateOSError):
        out.update(type="IsolateOSError", errno=exc.errno, message=exc.message,
                   filename=exc.filename, step=exc.step)
    elif isinstance(exc, OSError):
        out.update(type="IsolateOSError", errno=exc.errno, message=exc.strerror or str(exc),
                   filename=exc.filename, step="extract")
    elif isinstance(exc, UnsupportedError):
        out.update(missing=exc.missing)
    return out


def serve() -> None:
    """The helper's main loop (run by the helper interpreter, never by the library's caller):
    one JSON job per line on stdin, one JSON answer per line on stdout, until EOF."""
    def unpack(job: dict[str, Any]) -> None:
        unpack_layer(job["blob"], job["tmp"], job["final"], job["diff_id"], job["digest"])

    def pack(job: dict[str, Any]) -> dict[str, Any]:
        return _record.asdict(pack_layer(job["src"], job["out"], diff=job["diff"],
                                         compression=job["compression"]))

    def remove(job: dict[str, Any]) -> None:
        _remove(job["paths"])

    def metadata(job: dict[str, Any]) -> None:
        copy_metadata([(made, source) for made, source in job["pairs"]])

    jobs: dict[str, Callable[[dict[str, Any]], Any]] = {
        "unpack": unpack, "pack": pack, "remove": remove, "metadata": metadata}
    out = sys.stdout
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if job.get("stale"):
                _remove(job["stale"])
            answer: dict[str, Any] = {"ok": jobs[job["job"]](job)}
        except Exception as exc:  # every failure goes back to the caller, typed
            answer = {"error": _describe(exc)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# -- the caller's side -----------------------------------------------------------------------------

def _rebuild(err: dict[str, Any]) -> IsolateError:
    from isolate.fs._tar import CorruptLayer, UnsafeArchive

    kind, message = err.get("type"), str(err.get("message"))
    if kind == "UnsafeArchive":
        return UnsafeArchive(str(err["entry"]), str(err["reason"]))
    if kind == "DigestMismatch":
        return DigestMismatch(message, expected=err.get("expected"), actual=err.get("actual"))
    if kind == "IsolateOSError":
        return IsolateOSError(int(err.get("errno") or 5), message, err.get("filename"),
                              step=err.get("step"))
    if kind == "UnsupportedError":
        return UnsupportedError(message, missing=err.get("missing"))
    if kind == "CorruptLayer":
        return CorruptLayer(message)
    if kind == "ConfigError":
        return ConfigError(message)
    return ImageError(message if kind == "ImageError" else f"{kind}: {message}")


# Run by the helper: the caller's sys.path, then the loop. -I -S: nothing from the environment
# or site-packages but what the caller itself imports from.
_HELPER = ("import json, sys\n"
           "sys.path[:] = json.loads(sys.argv[1])\n"
           "from isolate._mapped import serve\n"
           "serve()\n")


class MappedWorker:
    """A helper process that is root of a fresh user namespace with ``maps``, started on first
    use: it unpacks layers and removes trees there, so owners the maps cover are kept (and the
    trees they own can be removed again). Use it as a context manager, or :meth:`close` it.

    Starting it writes the maps (``newuidmap``/``newgidmap`` for ids besides the caller's own)
    and execs this interpreter (through ``/proc/self/exe``, which needs no path walk); it dies
    with the caller.
    """

    def __init__(self, maps: IdMaps) -> None:
        self.maps = maps
        self._child: lowlevel.Child | None = None
        self._to: IO[str] | None = None
        self._from: IO[str] | None = None
        self._err: IO[bytes] | None = None

    def _start(self) -> None:
        # The spawning machinery is imported here: unpacking as the caller needs none of it.
        import tempfile  # here too: it loads shutil (bz2, lzma), which a run of an image skips

        from isolate import _plan, lowlevel
        from isolate._plan import Mode, Plan
        from isolate.namespaces import write_id_maps

        to_r, to_w = os.pipe2(os.O_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        err = tempfile.TemporaryFile()  # noqa: SIM115 - kept until close()
        p = Plan(_plan.CLONE_NEWUSER, Mode.FORK)
        p.add(_plan.wait_parent(note="wait for the user namespace's maps"))
        if self.maps.subordinate:  # with our own ids alone, setgroups is denied before the maps
            p.add(_plan.setgroups([], note="drop supplementary groups"))
        p.add(_plan.setresgid(0, note="become gid 0 of the user namespace"))
        p.add(_plan.setresuid(0, note="become uid 0 of the user namespace"))
        p.add(_plan.pdeathsig(signal.SIGKILL, note="die with the caller"))
        p.add(_plan.fds([(to_r, 0, False), (from_w, 1, False), (err.fileno(), 2, False)]))
        p.add(_plan.exec_("/proc/self/exe",
                          [sys.executable or "python3", "-I", "-S", "-c", _HELPER,
                           json.dumps(sys.path)],
                          {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
                          search_path=False, note="exec the id-mapped helper"))
        maps = self.maps

        def write_maps(pid: int) -> None:
            write_id_maps(pid, maps.uid_map, maps.gid_map)

        try:
            self._child = lowlevel.spawn(p, parent_step=write_maps)
        except BaseException:
            for fd in (to_w, from_r):
                os.close(fd)
            err.close()
            raise
        finally:
            os.close(to_r)
            os.close(from_w)
        self._to = os.fdopen(to_w, "w", encoding="utf-8")
        self._from = os.fdopen(from_r, "r", encoding="utf-8")
        self._err = err

    def _call(self, job: dict[str, Any]) -> Any:
        if self._child is None:
            self._start()
        assert self._to is not None and self._from is not None
        try:
            self._to.write(json.dumps(job) + "\n")
            self._to.flush()
            line = self._from.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise ImageError(f"the helper for the id-mapped store died: {self._stderr()}")
        answer = json.loads(line)
        if "error" in answer:
            raise _rebuild(answer["error"])
        return answer["ok"]

    def _stderr(self) -> str:
        if self._err is None:
            return "(no output)"
        self._err.seek(0)
        text = self._err.read()[-2000:].decode("utf-8", "replace").strip()
        return text.replace("\n", "; ") or "(no output)"

    def unpack(self, blob: str, tmp: str, final: str, diff_id: str, digest: str, *,
               stale: Sequence[str] = ()) -> None:
        """:func:`unpack_layer` in the user namespace, after removing ``stale`` (leftover
        temp dirs of earlier helpers that died).

        Raises what :func:`unpack_layer` raises; ImageError when the helper died;
        NamespaceError, UnsupportedError when it could not be started (the maps refused,
        newuidmap missing).
        """
        self._call({"job": "unpack", "blob": blob, "tmp": tmp, "final": final,
                    "diff_id": diff_id, "digest": digest, "stale": list(stale)})

    def pack(self, src: str, out: str, *, diff: bool, compression: str | None) -> Layer:
        """:func:`pack_layer` in the user namespace: owners are written as the namespace
        sees them (the caller's own files as root's, a mapped owner's as its id inside), and
        files only their owner may read are read too.

        Raises what :func:`pack_layer` raises; ImageError when the helper died;
        NamespaceError, UnsupportedError when it could not be started.
        """
        from isolate.fs.layers import Layer

        return Layer(**self._call({"job": "pack", "src": src, "out": out, "diff": diff,
                                   "compression": compression}))

    def copy_metadata(self, pairs: Sequence[tuple[str, str]]) -> None:
        """:func:`copy_metadata` in the user namespace, where a mapped owner may be given.

        Raises:
            IsolateOSError: a chown, chmod or utime failed.
            ImageError: the helper died.
            NamespaceError, UnsupportedError: the helper could not be started.
        """
        if pairs:
            self._call({"job": "metadata", "pairs": [list(p) for p in pairs]})

    def remove(self, paths: Sequence[str]) -> None:
        """Remove each tree of ``paths`` (missing ones are fine) in the user namespace.

        Raises:
            ImageError: a tree could not be removed, or the helper died.
            NamespaceError, UnsupportedError: the helper could not be started.
        """
        if paths:
            self._call({"job": "remove", "paths": list(paths)})

    def close(self) -> None:
        """End the helper (it exits at EOF on its stdin) and wait for it."""
        child, self._child = self._child, None
        for stream in (self._to, self._from, self._err):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._to = self._from = self._err = None
        if child is not None:
            child.wait()
            child.close()

    def __enter__(self) -> MappedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
