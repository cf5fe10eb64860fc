"""Escapes, one class per way out that an attack on the sandbox found (issue 7).

Each class is tried the way an adversary would: from a chroot, with hostile image content
(device nodes, symlinks to host directories, FIFOs), with forged names, and by killing the
caller of a command that runs as another uid. Each test failed before its fix. They run as
root and, where the path exists without root, rootless (``tests/rootless.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.rootless import run_unprivileged, staged_pythonpath

import isolate
from isolate import Sandbox
from isolate.errors import ConfigError, DigestMismatch, ImageError
from isolate.image import Image, ImageConfig, Reference, Store
from sandbox_helpers import marker, need_root, pids_with_argv

pytestmark = pytest.mark.root

BUSYBOX = "/bin/busybox"
SITE = os.path.dirname(os.path.dirname(isolate.__file__))
APPLETS = ("sh", "cat", "ls", "id", "head", "touch", "sleep", "echo", "stat", "dd", "true")


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def _busybox_tree(root: Path) -> Path:
    """A small root filesystem: static busybox, its applets, /etc/passwd and /etc/group."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    for d in ("bin", "etc", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    return root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _wait_gone(*argv: str, timeout: float = 30.0) -> list[int]:
    """Wait (generously: the machine may be busy) until no process runs ``argv``; return the
    pids still running it then."""
    deadline = time.monotonic() + timeout
    while pids_with_argv(*argv) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids_with_argv(*argv)


def _start_owner(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process that will be SIGKILLed. Its output goes to ``log``, not to pipes: a
    process it leaves behind would hold a pipe open and hang whoever reads it."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=dict(os.environ, PYTHONPATH=SITE))


def _wait_running(*argv: str, owner: subprocess.Popen[bytes], log: Path,
                  timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pids_with_argv(*argv):
        assert owner.poll() is None, f"the owner exited early: {log.read_text()}"
        assert time.monotonic() < deadline, f"{argv} did not start: {log.read_text()}"
        time.sleep(0.02)


def _kill_everything(*argv: str) -> None:
    for pid in pids_with_argv(*argv):  # ours: started by this test with a unique marker
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- non-root parent death ---------------------------------------------------------------------
# The kernel clears PR_SET_PDEATHSIG on any change of credentials, so a command that runs as
# another uid than 0 outlived a SIGKILLed caller: the signal is now set after the ids change.

_OWNER = """
import sys, time, isolate
from isolate.image import Store
options = {options!r}
if "store" in options:
    options["store"] = Store(options["store"])
box = isolate.Sandbox(**options).__enter__()
box.popen(["sleep", "{mark}"])
print("ready", flush=True)
time.sleep(300)
"""


def _owner_killed(argv: list[str], mark: str, log: Path) -> list[int]:
    """Start ``argv`` (a process that runs ``sleep MARK`` in a sandbox), SIGKILL it once the
    sleep runs, and return the pids of that sleep still alive after a generous wait."""
    owner = _start_owner(argv, log)
    try:
        _wait_running("sleep", mark, owner=owner, log=log)
    finally:
        owner.kill()
        owner.wait()
    left = _wait_gone("sleep", mark)
    _kill_everything("sleep", mark)
    return left


@pytest.fixture
def uid_image(store: Store, tmp_path: Path) -> str:
    """An image whose User is 1000 (by name)."""
    store.from_directory(_busybox_tree(tmp_path / "tree"), "local/uid:1",
                         config=ImageConfig(user="app", cmd=["sh"]))
    return "local/uid:1"


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
@pytest.mark.parametrize("how", ["uid-option", "image-user", "image-and-uid"])
def test_a_non_root_command_dies_with_its_killed_caller(how: str, init: bool, store: Store,
                                                        uid_image: str, tmp_path: Path) -> None:
    mark = marker()
    options: dict[str, object] = {"init": init}
    if how != "image-user":
        options["uid"] = 1000
    if how != "uid-option":
        options.update(image=uid_image, store=store.root)
    code = _OWNER.format(options=options, mark=mark)
    assert _owner_killed([sys.executable, "-c", code], mark, tmp_path / "owner.log") == []


@pytest.mark.parametrize("image", [False, True], ids=["host-root", "image"])
def test_isolate_run_as_uid_1000_dies_with_its_killed_caller(image: bool, store: Store,
                                                             uid_image: str,
                                                             tmp_path: Path) -> None:
    mark = marker()
    argv = [sys.executable, "-m", "isolate", "run", "--store", store.root]
    # --image: the image as a sandbox's root ('run IMAGE' makes a container, which outlives
    # its caller by design).
    argv += ["--user", "1000", "--image", uid_image] if image else ["--user", "1000", "--"]
    assert _owner_killed([*argv, "sleep", mark], mark, tmp_path / "owner.log") == []


_CONTAINER_OWNER = """
import os, time
from isolate import lowlevel
from isolate.runtime import Process, Root, RuntimeConfig, User, container_plan, standard_mounts
cfg = RuntimeConfig(process=Process(args=("sleep", "{mark}"), env={{"PATH": "/bin:/usr/bin"}},
                                    user=User(1000, 1000)),
                    root=Root(), mounts=standard_mounts(own_network=True),
                    namespaces=["mnt", "pid", "uts", "ipc", "net"])
supervisor = os.pidfd_open(os.getpid())
child = lowlevel.spawn(container_plan(cfg, parent_pidfd=supervisor).plan)
print("ready", flush=True)
time.sleep(300)
"""


def test_a_container_running_as_uid_1000_dies_with_its_killed_supervisor(tmp_path: Path
                                                                          ) -> None:
    # The container's plan comes from the same compiler: its parent-death signal is also set
    # again once the credentials are final.
    mark = marker()
    code = _CONTAINER_OWNER.format(mark=mark)
    assert _owner_killed([sys.executable, "-c", code], mark, tmp_path / "owner.log") == []


def test_the_caller_stays_dumpable_after_running_a_command_as_another_uid() -> None:
    # The child that sets the uid shares the caller's memory until it execs, and the kernel
    # makes that memory non-dumpable on the change of credentials: the caller's own flag is
    # given back once the child has exec'd. (Checked in a fresh process: it starts dumpable.)
    code = textwrap.dedent("""
        import ctypes, isolate
        prctl = ctypes.CDLL(None).prctl
        with isolate.Sandbox(uid=1000) as sb:
            assert sb.run(["true"]).returncode == 0
        print(prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=SITE), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


@pytest.mark.userns
def test_a_rootless_command_dies_with_its_killed_caller() -> None:
    mark = marker()
    owner = _OWNER.format(options={"user_namespace": True}, mark=mark)
    code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        python = "/usr/bin/python3"  # sys.executable may live where this uid cannot go
        owner = subprocess.Popen([python, "-c", {owner!r}], stdout=subprocess.PIPE, text=True)
        assert owner.stdout.readline() == "ready\\n"
        owner.stdout.close()  # a sleep left behind holds the pipe: never read it again
        owner.kill()
        owner.wait()
        def running():
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                        if f.read().split(b"\\0")[:2] == [b"sleep", b"{mark}"]:
                            found.append(int(pid))
                except OSError:
                    pass
            return found
        deadline = time.monotonic() + 30
        while running() and time.monotonic() < deadline:
            time.sleep(0.02)
        left = running()
        for pid in left:
            os.kill(pid, 9)
        print(left)
    """)
    assert run_unprivileged(code).stdout.strip() == "[]"


def _fuse_pids(marker_path: str) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(args[0]) == b"fuse-overlayfs" and marker_path.encode() in b" ".join(
                args):
            found.append(int(name))
    return found


def test_fuse_overlayfs_ends_with_a_killed_isolate_run(store: Store, uid_image: str,
                                                       tmp_path: Path) -> None:
    if shutil.which("fuse-overlayfs") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("fuse-overlayfs or /dev/fuse is missing")
    mark = marker()
    argv = [sys.executable, "-m", "isolate", "run", "--store", store.root, "--overlay", "fuse",
            "--image", uid_image, "sleep", mark]
    log = tmp_path / "owner.log"
    owner = _start_owner(argv, log)
    try:
        _wait_running("sleep", mark, owner=owner, log=log)
        assert _fuse_pids(store.root), "the image root should be served by fuse-overlayfs"
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while _fuse_pids(store.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _fuse_pids(store.root)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    _wait_gone("sleep", mark)
    _kill_everything("sleep", mark)
    assert left == []


# -- forged digest references ------------------------------------------------------------------
# A digest is a content address. It used to be a name like any other: `tag IMG name@sha256:X`
# made `run name@sha256:X` run IMG, whose manifest is not X.

FORGED = "sha256:" + "ab" * 32


@pytest.fixture
def esc(store: Store, tmp_path: Path) -> Image:
    return store.from_directory(_busybox_tree(tmp_path / "esc"), "local/esc:1",
                                config=ImageConfig(cmd=["sh"]))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolate", *args], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=SITE), timeout=120)


def _refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 125, result
    assert len(result.stderr.splitlines()) == 1 and "digest" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_tag_refuses_a_name_with_a_digest(store: Store, esc: Image) -> None:
    for digest in (FORGED, esc.manifest_digest):  # even its own: digests are never given
        with pytest.raises(ConfigError, match="digest"):
            store.tag(esc, f"busybox@{digest}")
    assert store.get("local/esc:1").tags == ("docker.io/local/esc:1",)
    _refused(_cli("tag", "--store", store.root, "local/esc:1", f"busybox@{FORGED}"))
    with pytest.raises(ImageError):
        store.get(f"busybox@{FORGED}")


def test_import_and_load_refuse_a_name_with_a_digest(store: Store, esc: Image,
                                                     tmp_path: Path) -> None:
    tarball = tmp_path / "root.tar"
    subprocess.run(["tar", "-C", str(tmp_path / "esc"), "-cf", str(tarball), "."], check=True)
    archive = tmp_path / "esc.tar"
    store.save("local/esc:1", archive)
    before = {img.id for img in store.images()}
    with pytest.raises(ConfigError, match="digest"):
        store.import_tarball(tarball, f"x@{FORGED}")
    with pytest.raises(ConfigError, match="digest"):
        store.load(archive, f"x@{FORGED}")
    _refused(_cli("import", "--store", store.root, str(tarball), f"x@{FORGED}"))
    _refused(_cli("load", "--store", store.root, "-i", str(archive), f"x@{FORGED}"))
    assert {img.id for img in store.images()} == before
    assert all("@" not in t for img in store.images() for t in img.tags)


def test_a_digest_an_archive_claims_for_its_image_must_be_its_own(store: Store, esc: Image,
                                                                  tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    archive = tmp_path / "esc.tar"
    store.save("local/esc:1", archive)
    unpacked.mkdir()
    subprocess.run(["tar", "-C", str(unpacked), "-xf", str(archive)], check=True)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    manifest[0]["RepoTags"] = [f"busybox@{FORGED}"]
    (unpacked / "manifest.json").write_text(json.dumps(manifest))
    other = Store(tmp_path / "other")
    with pytest.raises(ConfigError, match="digest"):
        other.load(unpacked)
    with pytest.raises(ImageError):
        other.get(f"busybox@{FORGED}")


def test_a_digest_resolves_only_to_the_manifest_with_that_digest(store: Store, esc: Image
                                                                 ) -> None:
    # A store whose names claim a digest for other content (as `tag` used to write them):
    # the name is never followed.
    forged = "127.0.0.1:9/busybox@" + FORGED
    tags_file = Path(store.root, "tags.json")
    tags = json.loads(tags_file.read_text())
    tags[str(Reference.parse(forged))] = esc.id
    tags_file.write_text(json.dumps(tags))
    with pytest.raises(ImageError, match="no image"):
        store.get(forged)
    # Not in the store, so it is pulled (and would be checked): here no registry answers.
    with pytest.raises(ImageError), Sandbox(image=forged, store=store) as sb:
        sb.run(["true"])
    # The true content address finds the image, whatever name goes with it...
    assert store.get(f"elsewhere/name@{esc.manifest_digest}").id == esc.id
    # ... and only while the stored manifest still hashes to it.
    blob = Path(store.blob_path(esc.manifest_digest))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b" ")
    with pytest.raises(DigestMismatch):
        store.get(f"local/esc@{esc.manifest_digest}")


# -- symlinked config files in an image --------------------------------------------------------
# The runtime read an image's /etc/passwd through the host's filesystem, following the image's
# symlinks out of it, and blocked on a FIFO there.

def _user_image(store: Store, tree: Path, how: str) -> str:
    """An image whose User is "app" and whose /etc is hostile: a symlink to ``tree``'s sibling
    host dir (absolute or climbing out with ..), or a FIFO at /etc/passwd."""
    _busybox_tree(tree)
    host = tree.parent / "host-etc"
    host.mkdir()
    (host / "passwd").write_text("app:x:4242:4343::/:/bin/sh\n")
    (host / "group").write_text("app:x:4343:\n")
    shutil.rmtree(tree / "etc")
    if how == "absolute":
        (tree / "etc").symlink_to(host)
    elif how == "dotdot":
        (tree / "etc").symlink_to("../" * 30 + str(host).lstrip("/"))
    else:
        (tree / "etc").mkdir()
        os.mkfifo(tree / "etc" / "passwd")
    store.from_directory(tree, f"local/hostile:{how}", config=ImageConfig(user="app",
                                                                          cmd=["id"]))
    return f"local/hostile:{how}"


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_an_image_user_is_never_looked_up_through_a_symlink_to_the_host(
        store: Store, tmp_path: Path, how: str) -> None:
    image = _user_image(store, tmp_path / "tree", how)
    with pytest.raises(ImageError, match="'app' is not in the image's /etc/passwd"), \
            Sandbox(image=image, store=store):
        pass
    refused = _cli("run", "--store", store.root, image)
    assert refused.returncode == 125 and "4242" not in refused.stdout


def test_a_fifo_at_the_images_passwd_is_an_error_not_a_hang(store: Store, tmp_path: Path
                                                            ) -> None:
    image = _user_image(store, tmp_path / "tree", "fifo")
    # A hang is the bug: the timeout only keeps it from hanging the suite.
    result = subprocess.run([sys.executable, "-m", "isolate", "run", "--store", store.root,
                             "--image", image], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=SITE))
    assert result.returncode == 125
    assert "/etc/passwd is a FIFO, not a regular file" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.fixture
def unprivileged_dir() -> Iterator[Path]:
    """A directory that uid 65534 owns and can reach (the test's tmp_path is root's only)."""
    work = Path(tempfile.mkdtemp(prefix="isolate-escape-"))
    try:
        work.chmod(0o755)
        os.chown(work, 65534, 65534)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.userns
def test_rootless_image_users_are_looked_up_inside_the_image(unprivileged_dir: Path) -> None:
    work = unprivileged_dir
    _busybox_tree(work / "tree")
    os.chown(work, 65534, 65534)
    for dirpath, dirs, files in os.walk(work):
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), 65534, 65534)
    code = textwrap.dedent(f"""
        import os, shutil, sys
        from isolate import Sandbox
        from isolate.errors import ImageError
        from isolate.image import ImageConfig, Store
        work = {str(work)!r}
        store = Store(work + "/store")
        host = work + "/host-etc"
        os.mkdir(host)
        with open(host + "/passwd", "w") as f:
            f.write("app:x:0:0::/:/bin/sh\\n")  # uid 0: a rootless sandbox would run it
        tree = work + "/tree"
        shutil.rmtree(tree + "/etc")
        os.symlink(host, tree + "/etc")
        store.from_directory(tree, "local/l:1", config=ImageConfig(user="app", cmd=["id"]))
        os.remove(tree + "/etc")
        os.mkdir(tree + "/etc")
        os.mkfifo(tree + "/etc/passwd")
        store.from_directory(tree, "local/f:1", config=ImageConfig(user="app", cmd=["id"]))
        for image in ("local/l:1", "local/f:1"):
            try:
                with Sandbox(image=image, store=store):
                    print(image, "ran")
            except ImageError as exc:
                print(image, "refused:", exc)
    """)
    out = run_unprivileged(code).stdout.splitlines()
    assert out[0].startswith("local/l:1 refused:") and "not in the image's" in out[0]
    assert out[1].startswith("local/f:1 refused:") and "FIFO" in out[1]


# -- chroot callers ----------------------------------------------------------------------------
# A caller chrooted into a mount point that is not its namespace's root handed its commands the
# machine's real root, writable: the sandbox's processes join the mount namespace built for
# them, and setns(2) lands on that namespace's root, above the chroot.

_CHROOT = r"""
set -e
R=$1; P=$2; shift 2
if [ "$P" = mount ]; then mount -t tmpfs -o mode=755 chroot "$R"; fi
mkdir -p "$R/tmp" "$R/store"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
for d in $BINDS; do
    [ -e "$d" ] || continue
    mkdir -p "$R$d"
    mount --rbind "$d" "$R$d"
done
echo inside > "$R/chroot-marker"
exec chroot "$R" "$@"
"""


def _in_chroot(tmp_path: Path, code: str, *, mount_point: bool = True,
               uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this Python, chrooted into a new tmpfs (``mount_point``) or a plain
    directory that holds binds of what Python needs, /proc, /dev and /sys, as ``uid`` if
    given (with a world-readable copy of what it imports). It all lives in a throwaway mount
    namespace of a helper process, gone when this returns."""
    root = tmp_path / "chroot"
    root.mkdir()
    python = os.path.realpath(sys.executable)
    needed = {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev", "/sys",
              sys.prefix, sys.base_prefix, SITE, os.path.dirname(python)}
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CHROOT, "sh",
            str(root), "mount" if mount_point else "plain", *drop, python, "-c",
            textwrap.dedent(code)]
    with contextlib.ExitStack() as stack:
        path = SITE
        if uid:
            # This interpreter's packages may live where that uid cannot read them.
            path = stack.enter_context(staged_pythonpath())
            needed.add(path)
        env = dict(os.environ, PYTHONPATH=path, BINDS=" ".join(sorted(needed)), HOME="/tmp")
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


_CHROOT_PROBE = """
import json, os, shutil, sys
import isolate
from isolate.image import ImageConfig, Store

case = {case!r}
inside = sorted(os.listdir("/"))
options = {{}}
if case == "spliced":
    options["tmpfs"] = ["/newtop"]
elif case == "bind":
    options["binds"] = ["/usr/share:/data"]
elif case == "writable":
    options["readonly"] = False
elif case == "rootfs":
    os.makedirs("/store/rootfs/bin")
    shutil.copy("/bin/busybox", "/store/rootfs/bin/busybox")
    for applet in ("sh", "ls", "cat", "touch"):
        os.symlink("busybox", "/store/rootfs/bin/" + applet)
    open("/store/rootfs/chroot-marker", "w").write("rootfs\\n")
    options["rootfs"] = "/store/rootfs"
    inside = sorted(os.listdir("/store/rootfs"))
elif case in ("image", "fuse"):
    tree = "/store/tree"
    os.makedirs(tree + "/bin")
    shutil.copy("/bin/busybox", tree + "/bin/busybox")
    for applet in ("sh", "ls", "cat", "touch"):
        os.symlink("busybox", tree + "/bin/" + applet)
    open(tree + "/chroot-marker", "w").write("image\\n")
    store = Store("/store/images")
    image = store.from_directory(tree, "local/c:1", config=ImageConfig(cmd=["sh"]))
    options.update(image=image, store=store, readonly=True)
    if case == "fuse":
        options["overlay"] = "fuse"
    inside = sorted(os.listdir(tree))
with isolate.Sandbox(**options) as sb:
    seen = []
    for _ in range(2):  # the first and a later process: both join the root built at enter
        r = sb.run(["sh", "-c", "ls -a / && cat /chroot-marker && touch /{name}"],
                   capture_output=True, text=True)
        seen.append(r.stdout.split())
    print(json.dumps({{"inside": inside, "seen": seen, "stderr": r.stderr,
                      "written": os.path.exists("/{name}")}}))
"""

_CHROOT_CASES = ["host-root", "spliced", "bind", "writable", "rootfs", "image", "fuse"]


@pytest.mark.parametrize("case", _CHROOT_CASES)
def test_a_chrooted_caller_gives_its_commands_its_own_root(tmp_path: Path, case: str) -> None:
    if case == "fuse" and (shutil.which("fuse-overlayfs") is None
                           or not os.path.exists("/dev/fuse")):
        pytest.skip("fuse-overlayfs or /dev/fuse is missing")
    with _host_file_watch() as name:
        out = _in_chroot(tmp_path, _CHROOT_PROBE.format(case=case, name=name))
        escaped = os.path.exists("/" + name)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # Exactly the chroot's top level (or its rootfs's, its image's), with the mount points a
    # sandbox adds: nothing of the host's, whose top level differs (``home``, ``var`` ...).
    expected = set(result["inside"]) | {"proc", "dev", "sys", "tmp"}
    expected |= {"spliced": {"newtop"}, "bind": {"data"}}.get(case, set())
    assert expected != set(os.listdir("/")) | {"newtop", "data"}
    for listing in result["seen"]:
        assert set(listing[:-1]) - {".", "..", name} == expected
        assert listing[-1] in ("inside", "rootfs", "image")  # the marker's content
    if case == "writable":
        assert result["written"]  # written in the chroot's own root...
    else:
        assert "Read-only file system" in result["stderr"]
    assert not escaped  # ... never in the host's


@contextlib.contextmanager
def _host_file_watch() -> Iterator[str]:
    """A name for a file that a sandboxed command tries to write at the top of its root: if
    it escapes, the file lands at the top of the host's, and is removed again."""
    name = f"isolate-escape-{marker()}"
    try:
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("/" + name)


def test_isolate_run_from_a_chroot_sees_the_chroots_root(tmp_path: Path) -> None:
    with _host_file_watch() as name:
        code = f"""
            import json, os, subprocess, sys
            r = subprocess.run([sys.executable, "-m", "isolate", "run", "--", "sh", "-c",
                                "ls /; touch /{name}"], capture_output=True, text=True)
            print(json.dumps([os.listdir("/"), r.stdout.split(), r.stderr]))
        """
        out = _in_chroot(tmp_path, code)
        assert out.returncode == 0, out.stderr
        inside, listing, stderr = json.loads(out.stdout)
        assert set(listing) == set(inside) and set(listing) != set(os.listdir("/"))
        assert "Read-only file system" in stderr
        assert not os.path.exists("/" + name)


def test_a_chroot_that_is_not_a_mount_point_is_refused_saying_why(tmp_path: Path) -> None:
    code = """
        import subprocess, sys
        import isolate
        from isolate.errors import MountError
        try:
            with isolate.Sandbox() as sb:
                sb.run(["true"])
        except MountError as exc:
            print("refused:", exc)
        r = subprocess.run([sys.executable, "-m", "isolate", "run", "--", "true"],
                           capture_output=True, text=True)
        print(r.returncode, len(r.stderr.splitlines()), r.stderr.strip())
    """
    out = _in_chroot(tmp_path, code, mount_point=False)
    assert out.returncode == 0, out.stderr
    api, cli = out.stdout.splitlines()
    assert api.startswith("refused:") and "root directory is not a mount point" in api
    assert cli.startswith("125 1 isolate:") and "not a mount point" in cli


@pytest.mark.userns
def test_a_rootless_caller_in_a_chroot_is_refused_saying_why(tmp_path: Path) -> None:
    # The kernel gives no user namespace to a chrooted process, so a rootless sandbox cannot
    # be made there at all: that must be a clear error, not a way around the chroot.
    code = """
        import isolate
        from isolate.errors import IsolateError
        try:
            with isolate.Sandbox() as sb:
                print("ran", sb.run(["ls", "/"], capture_output=True, text=True).stdout.split())
        except IsolateError as exc:
            print("refused:", type(exc).__name__, exc)
    """
    out = _in_chroot(tmp_path, code, uid=65534)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:"), out.stdout
    assert "chroot" in out.stdout


# -- device nodes in an image, on the host, in binds -------------------------------------------
# A node outside the sandbox's own /dev was usable: an image's /dev/kvm (KVM_CREATE_VM as uid 0
# with no capabilities), a node anywhere on the host disks through the host root or a bind.
# Every root and bind is nodev now, and a sandbox with a cgroup has Docker's device list.

HOSTILE_NODES = {  # name: (type, major, minor)
    "kvm": ("c", 10, 232), "fuse": ("c", 10, 229), "tun": ("c", 10, 200),
    "hwrng": ("c", 10, 183), "console": ("c", 5, 1), "zero": ("c", 1, 5), "loop0": ("b", 7, 0),
}
# Tries to open each node for reading and for writing: "name:r:ok" or "name:r:<error>".
NODE_PROBE = ("for n in {paths}; do for how in r w; do "
              "if [ $how = r ]; then (exec 3<$n) 2>/tmp/e; else (exec 3>$n) 2>/tmp/e; fi "
              "&& echo ${{n##*/}}:$how:ok || echo ${{n##*/}}:$how:$(sed 's/.*: //' /tmp/e); "
              "done; done")


def _make_nodes(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (kind, major, minor) in HOSTILE_NODES.items():
        mode = (0o20000 if kind == "c" else 0o60000) | 0o666
        os.mknod(directory / name, mode, os.makedev(major, minor))
        os.chmod(directory / name, 0o666)  # so file permissions refuse nothing
    return sorted(HOSTILE_NODES)


def _probe(box: Sandbox, where: str) -> dict[str, str]:
    paths = " ".join(f"{where}/{n}" for n in sorted(HOSTILE_NODES))
    r = box.run(["sh", "-c", NODE_PROBE.format(paths=paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dict(line.rsplit(":", 1) for line in r.stdout.splitlines())


def _all_refused(answers: dict[str, str]) -> None:
    assert len(answers) == 2 * len(HOSTILE_NODES), answers
    bad = {k: v for k, v in answers.items()
           if v not in ("Permission denied", "Operation not permitted")}
    assert not bad, f"usable or reached a driver: {bad}"


@pytest.fixture
def node_image(store: Store, tmp_path: Path) -> Image:
    tree = _busybox_tree(tmp_path / "nodes-tree")
    (tree / "bin" / "sed").symlink_to("busybox")
    _make_nodes(tree / "nodes")
    return store.from_directory(tree, "local/nodes:1", config=ImageConfig(cmd=["sh"]))


@pytest.mark.parametrize("limits", [False, True], ids=["no-cgroup", "cgroup"])
@pytest.mark.parametrize("readonly", [True, False], ids=["ro", "rw"])
@pytest.mark.parametrize("uid", [0, 1000])
def test_device_nodes_in_an_image_are_unusable(store: Store, node_image: Image, uid: int,
                                               readonly: bool, limits: bool) -> None:
    extra = {"limits": isolate.Limits(pids_max=64)} if limits else {}
    with Sandbox(image=node_image, store=store, uid=uid, readonly=readonly, **extra) as sb:
        _all_refused(_probe(sb, "/nodes"))


@pytest.fixture
def host_nodes() -> Iterator[Path]:
    """Nodes on the host, in a directory of the test's own outside /tmp (which a sandbox
    replaces with its own), so the host root shows them."""
    base = Path(tempfile.mkdtemp(prefix="isolate-nodes-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        _make_nodes(base / "n")
        yield base / "n"
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("limits", [False, True], ids=["no-cgroup", "cgroup"])
@pytest.mark.parametrize("uid", [0, 1000])
def test_host_device_nodes_are_unusable_through_the_host_root_and_binds(
        host_nodes: Path, uid: int, limits: bool) -> None:
    extra = {"limits": isolate.Limits(pids_max=64)} if limits else {}
    with Sandbox(uid=uid, binds=[f"{host_nodes}:/h:ro", f"{host_nodes}:/hw:rw"],
                 **extra) as sb:
        _all_refused(_probe(sb, str(host_nodes)))
        _all_refused(_probe(sb, "/h"))
        _all_refused(_probe(sb, "/hw"))

@pytest.mark.parametrize("readonly", [True, False], ids=["ro", "rw"])
def test_device_nodes_in_a_rootfs_are_unusable(tmp_path: Path, readonly: bool) -> None:
    root = _busybox_tree(tmp_path / "rootfs")
    (root / "bin" / "sed").symlink_to("busybox")
    _make_nodes(root / "nodes")
    with Sandbox(rootfs=str(root), readonly=readonly, uid=1000) as sb:
        _all_refused(_probe(sb, "/nodes"))


def test_a_bind_with_dev_and_a_device_option_give_exactly_what_was_asked(
        host_nodes: Path) -> None:
    # Without a cgroup, the bind's dev option alone makes its nodes usable...
    with Sandbox(binds=[f"{host_nodes}:/h:ro,dev"]) as sb:
        answers = _probe(sb, "/h")
        assert answers["zero:r"] == "ok", answers
    # ... and with one, only what the device list allows (zero, console) gets past it.
    with Sandbox(binds=[f"{host_nodes}:/h:ro,dev"], limits=isolate.Limits(pids_max=64)) as sb:
        answers = _probe(sb, "/h")
        assert answers["zero:r"] == "ok" and answers["kvm:r"] == "Operation not permitted"
        assert answers["loop0:r"] == answers["fuse:r"] == "Operation not permitted"
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")
    probe = ["sh", "-c", "(exec 3</dev/fuse) && echo opened"]
    for extra in ({}, {"limits": isolate.Limits(pids_max=64)}):
        with Sandbox(devices=["/dev/fuse"], **extra) as sb:
            r = sb.run(probe, capture_output=True, text=True)
            assert r.stdout == "opened\n", r.stderr
    with Sandbox(devices=["/dev/fuse:r"]) as sb:  # narrowed: a cgroup enforces it
        assert sb.cgroup is not None
        assert sb.run(probe, capture_output=True, text=True).stdout == "opened\n"
        w = sb.run(["sh", "-c", "(exec 3>/dev/fuse)"], capture_output=True, text=True)
        assert "Operation not permitted" in w.stderr
    out = _cli("run", "--memory", "64M", "--device", "/dev/fuse", "--", *probe)
    assert out.stdout == "opened\n", out.stderr
    out = _cli("run", "--memory", "64M", "--bind", "/dev/fuse:/dev/fuse:rw,dev", "--", *probe)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr


@pytest.mark.userns
def test_host_device_nodes_are_unusable_from_a_rootless_sandbox(host_nodes: Path) -> None:
    code = textwrap.dedent(f"""
        from isolate import Sandbox
        with Sandbox(binds=["{host_nodes}:/h"]) as sb:
            for where in ("{host_nodes}", "/h"):
                r = sb.run(["sh", "-c", "head -c1 " + where + "/zero >/dev/null && echo ok"],
                           capture_output=True, text=True)
                print(where, r.stdout.strip() or r.stderr.strip())
    """)
    for line in run_unprivileged(code).stdout.splitlines():
        assert line.endswith("Permission denied"), line
