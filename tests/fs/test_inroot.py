"""isolate.fs.inroot: reading inside a root as the root shows it, never outside it.

Resolution in one directory is checked against the kernel's own answer (openat2 with
RESOLVE_IN_ROOT) on random trees of hostile symlinks; resolution over overlay lower dirs
against a real overlay mount of those dirs.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isolate
from isolate import lowlevel
from isolate.errors import IsolateOSError
from isolate.fs import inroot

RESOLVE_IN_ROOT = 0x10
SITE = os.path.dirname(os.path.dirname(isolate.__file__))
HERE = os.path.dirname(os.path.abspath(__file__))


def _kernel_read(root: Path, path: str) -> bytes | str:
    """What openat2(RESOLVE_IN_ROOT) finds: the file's bytes, or the errno name."""
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = lowlevel.openat2(rfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC,
                              resolve=RESOLVE_IN_ROOT)
    except IsolateOSError as exc:
        return "missing" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else \
            errno.errorcode[exc.errno or 0]
    finally:
        os.close(rfd)
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return "EISDIR"
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _ours(root: Path | list[Path], path: str) -> bytes | str:
    try:
        data = inroot.read_file(root if isinstance(root, Path) else [str(r) for r in root],
                                path)
    except IsolateOSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "missing" if data is None else data


NAMES = ("a", "b", "etc")
TARGETS = ("/", "..", "../..", "../../..", "/etc", "etc", "a/b", "../etc/passwd",
           "/a/../etc", "b", "./a", "a/..", "/nonexistent/x", "passwd", "../../etc/passwd")


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Entries (path, kind, content): dirs, files and symlinks among a few names."""
    entries = [("etc", "dir", ""), ("etc/passwd", "file", "passwd inside\n")]
    for _ in range(draw(st.integers(0, 8))):
        parent = draw(st.sampled_from(["", "etc", "a", "b", "a/b"]))
        name = draw(st.sampled_from((*NAMES, "passwd")))
        path = f"{parent}/{name}".lstrip("/")
        kind = draw(st.sampled_from(["dir", "file", "link"]))
        content = draw(st.sampled_from(TARGETS)) if kind == "link" else f"{path}\n"
        entries.append((path, kind, content))
    return entries


def _build(root: Path, entries: list[tuple[str, str, str]]) -> None:
    for path, kind, content in entries:
        target = root / path
        if not target.parent.is_dir() or target.parent.is_symlink() or os.path.lexists(target):
            continue
        if kind == "dir":
            target.mkdir()
        elif kind == "file":
            target.write_text(content)
        else:
            target.symlink_to(content)


@settings(max_examples=150)
@given(entries=trees(), path=st.sampled_from((*TARGETS, "etc/passwd", "a/passwd", "a/b/passwd",
                                              "b/etc/passwd")))
def test_one_root_resolves_as_the_kernel_does_in_root(tmp_path_factory: pytest.TempPathFactory,
                                                      entries: list[tuple[str, str, str]],
                                                      path: str) -> None:
    base = tmp_path_factory.mktemp("tree")
    (base / "passwd").write_text("outside the root\n")  # what an escape would read
    root = base / "root"
    root.mkdir()
    _build(root, entries)
    assert _ours(root, path) == _kernel_read(root, path)


def test_symlinks_to_the_host_stay_inside(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("host:x:4242:4343::/:/bin/sh\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to(host)  # an absolute host path: taken relative to the root
    assert inroot.read_file(str(root), "/etc/passwd") is None
    (root / "up").symlink_to("../../../../../../" + str(host).lstrip("/"))
    assert inroot.read_file(str(root), "/up/passwd") is None
    (root / "loop").symlink_to("loop")
    with pytest.raises(IsolateOSError) as info:
        inroot.read_file(str(root), "/loop")
    assert info.value.errno == errno.ELOOP
    found = inroot.lookup(str(root), "/etc", follow=False)
    assert found is not None and stat.S_ISLNK(found.mode)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    done: list[object] = []
    # A hang would be the bug; the thread only keeps a failure from hanging the suite.
    t = threading.Thread(target=lambda: done.append(_ours(tmp_path, "/fifo")), daemon=True)
    t.start()
    t.join(60)
    assert done == ["EINVAL"]
    if os.geteuid() == 0:
        os.mknod(tmp_path / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
        with pytest.raises(IsolateOSError, match="character device"):
            inroot.read_file(str(tmp_path), "/zero")


def test_size_is_capped(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 1001)
    assert inroot.read_file(str(tmp_path), "/big", limit=1001) == b"x" * 1001
    with pytest.raises(IsolateOSError) as info:
        inroot.read_file(str(tmp_path), "/big", limit=1000)
    assert info.value.errno == errno.EFBIG


@pytest.fixture
def lowers(tmp_path: Path) -> list[Path]:
    """Three overlay lower dirs (lowest first) with whiteouts, an opaque dir, a symlinked
    directory and files replaced by directories and back."""
    if os.geteuid() != 0:
        pytest.skip("whiteouts (0/0 devices) and trusted.overlay xattrs need root")
    low, mid, top = (tmp_path / n for n in ("low", "mid", "top"))
    for d in (low, mid, top):
        d.mkdir()
    for p in ("etc", "data/dir", "usr/lib", "srv"):
        (low / p).mkdir(parents=True)
    (low / "etc" / "passwd").write_text("low passwd\n")
    (low / "etc" / "group").write_text("low group\n")
    (low / "etc" / "hosts").write_text("low hosts\n")
    (low / "data" / "dir" / "a").write_text("a\n")
    (low / "usr" / "lib" / "os-release").write_text("low os\n")
    (low / "srv" / "file").write_text("srv file\n")
    (mid / "etc").mkdir()
    os.mknod(mid / "etc" / "group", stat.S_IFCHR, 0)  # deleted in mid
    (mid / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    (mid / "data" / "dir").mkdir(parents=True)
    os.setxattr(mid / "data" / "dir", "trusted.overlay.opaque", b"y")  # replaced in mid
    (mid / "data" / "dir" / "c").write_text("c\n")
    (mid / "srv").write_text("srv is a file now\n")
    (top / "etc").mkdir()
    (top / "etc" / "passwd").write_text("top passwd\n")
    (top / "data").mkdir()
    (top / "data" / "link").symlink_to("/data/dir")
    (top / "srv").mkdir()
    (top / "srv" / "new").write_text("srv dir again\n")
    return [low, mid, top]


OVERLAY_PATHS = ("/etc/passwd", "/etc/group", "/etc/hosts", "/etc/os-release", "/data/dir/a",
                 "/data/dir/c", "/data/link/c", "/data/link/a", "/srv/file", "/srv/new",
                 "/srv", "/etc", "/nothing", "/etc/passwd/x")


def test_layers_resolve_as_the_merged_overlay_shows_them(lowers: list[Path],
                                                         tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    merged.mkdir()
    option = "lowerdir=" + ":".join(str(d) for d in reversed(lowers))
    # The overlay lives in a throwaway mount namespace, where the kernel resolves each path
    # in it (RESOLVE_IN_ROOT, so absolute symlinks mean the overlay's root).
    code = (f"import json, sys; sys.path[:0] = [{SITE!r}, {HERE!r}]; "
            "from test_inroot import _kernel_read; from pathlib import Path; "
            "print(json.dumps([x.decode() if isinstance(x, bytes) else x "
            "for x in (_kernel_read(Path(sys.argv[1]), p) for p in sys.argv[2:])]))")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          'mount -t overlay overlay -o "$1" "$2" && shift 2 && exec "$@"', "sh",
                          option, str(merged), sys.executable, "-c", code, str(merged),
                          *OVERLAY_PATHS], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kernel = [k.strip() for k in json.loads(out.stdout)]
    ours = []
    for p in OVERLAY_PATHS:
        got = _ours(lowers, p)
        ours.append(got.decode().strip() if isinstance(got, bytes) else got)
    assert ours == kernel
    assert ours[:3] == ["top passwd", "missing", "low hosts"]  # not a vacuous comparison
    found = inroot.lookup([str(d) for d in lowers], "/data/link/c")
    assert found is not None and found.path == "/data/dir/c" and found.source == str(lowers[1])
