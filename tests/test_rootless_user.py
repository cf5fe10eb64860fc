"""Rootless as podman does it, on the real kernel: an ordinary user (uid 65534) with a
subordinate id range runs sandboxes and images whose owners and users are not root.

Each test runs its code through ``rootless.run_unprivileged``; ``subids=True`` grants the user
the range ``nobody:200000:65536`` for that run only (``/etc/subuid`` and ``/etc/subgid`` bound
in a private mount namespace: the machine's files are never changed). Inside the user
namespace 0 is the user and 1..65536 are 200000..265535 outside.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import isolate
from rootless import SUBID_COUNT, SUBID_START, run_unprivileged

pytestmark = pytest.mark.userns

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "id", "stat", "ls", "cat", "touch", "chown", "chmod", "su", "mkdir", "echo",
           "rm", "env", "sleep", "true")
USER = 65534  # nobody: the ordinary user of these tests


def _add(t: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
         mode: int = 0o644, uid: int = 0, gid: int = 0, link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.linkname = kind, mode, uid, gid, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _image_tar(path: Path, *, extra_owner: int | None = None) -> None:
    """A busybox root whose files belong to root, to ``app`` (1000:1000) and to ``other``
    (1234:5678); with ``extra_owner``, one more file owned by that uid."""
    with tarfile.open(path, "w") as t:
        for d in ("bin", "etc", "home", "srv", "tmp", "root"):
            _add(t, d, tarfile.DIRTYPE, mode=0o755)
        _add(t, "bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)
        for applet in APPLETS:
            _add(t, f"bin/{applet}", tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(t, "etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"
             b"app:x:1000:1000::/home/app:/bin/sh\nother:x:1234:5678::/srv:/bin/sh\n")
        _add(t, "etc/group", data=b"root:x:0:\napp:x:1000:\nothers:x:5678:\n")
        _add(t, "home/app", tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1000)
        _add(t, "home/app/secret", data=b"only app\n", mode=0o600, uid=1000, gid=1000)
        _add(t, "home/app/link", tarfile.SYMTYPE, link="secret", uid=1000, gid=1000)
        _add(t, "srv/data", data=b"d\n", uid=1234, gid=5678)
        if extra_owner is not None:
            _add(t, "srv/far", data=b"far\n", uid=extra_owner, gid=extra_owner)
    path.chmod(0o644)


@pytest.fixture(scope="module")
def images() -> Iterator[Path]:
    """A world-readable dir with ``owned.tar`` (the image above) and ``far.tar`` (one owner
    beyond the subordinate range)."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    d = Path(tempfile.mkdtemp(prefix="isolate-rootless-images-", dir="/var/tmp"))
    try:
        d.chmod(0o755)
        _image_tar(d / "owned.tar")
        _image_tar(d / "far.tar", extra_owner=SUBID_COUNT + 1)
        yield d
    finally:
        shutil.rmtree(d)


def prelude(images: Path) -> str:
    """Code that opens a store of the user's own (removed at exit, as the user: so nothing
    the mapped owners own may be left in it) and imports the image ``local/owned:1``."""
    return textwrap.dedent(f"""
        import atexit, json, os, shutil, tempfile
        from isolate import Sandbox
        from isolate.image import ImageConfig, Store
        from isolate.namespaces import rootless_maps
        work = tempfile.mkdtemp()
        def _remove_work():
            # As the user would: remove the images, gc, then the directory -- which fails
            # if anything of a mapped owner was left behind.
            try:
                if os.path.exists(work):
                    for image in store.images():
                        store.rmi(image.id, force=True)
                    store.gc()
                    shutil.rmtree(work)
            except OSError as exc:   # a file of a mapped owner was left: the test fails
                print("left behind:", exc, flush=True)
                os._exit(3)
        atexit.register(_remove_work)
        store = Store(os.path.join(work, "store"))
        img = store.import_tarball({str(images / "owned.tar")!r}, "local/owned:1",
                                   config=ImageConfig(user="app", cmd=["sh"]))
        def sh(sb, script, **kw):
            r = sb.run(["sh", "-c", script], capture_output=True, text=True, **kw)
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            return r.stdout
    """)


def lines(code: str, *, images: Path | None = None, subids: bool = False) -> list[str]:
    """The output lines of ``code`` run as the user (after :func:`prelude` with ``images``)."""
    full = (prelude(images) if images is not None else "") + textwrap.dedent(code)
    return run_unprivileged(full, subids=subids).stdout.splitlines()


# -- 1: subordinate ranges by default ------------------------------------------------------------

def test_a_rootless_sandbox_maps_0_to_the_user_and_1_on_to_its_subordinate_range() -> None:
    out = lines("""
        import ctypes
        from isolate import Sandbox
        from isolate.namespaces import rootless_maps
        maps = rootless_maps()
        print([m.line() for m in maps.uid_map], maps.fallback)
        with Sandbox(uid=1000, gid=1000) as sb:
            r = sb.run(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"],
                       capture_output=True, text=True, check=True)
            print(r.stdout.split())
        # A process that changed its uid ran in our memory (vfork): we are still dumpable,
        # so the next sandbox's helper child can be mapped and opened as before.
        print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))
        with Sandbox() as sb:
            print(sb.run(["id", "-u"], capture_output=True, text=True).stdout.strip())
    """, subids=True)
    expected_map = ["0", str(USER), "1", "1", str(SUBID_START), str(SUBID_COUNT)]
    assert out[0] == str([f"0 {USER} 1", f"1 {SUBID_START} {SUBID_COUNT}"]) + " None"
    assert out[1] == str(["1000", "1000", *expected_map, *expected_map])
    assert out[2:] == ["1", "0"]


def test_a_fork_child_is_dumpable_while_a_vfork_sibling_runs_with_another_uid() -> None:
    # A vfork child that changed its uid (here: waits on a FIFO before its exec) leaves our
    # memory non-dumpable for a while; a FORK child made meanwhile is a copy with our own
    # dumpability, so its parent step may still open its namespaces.
    out = lines("""
        import os, tempfile, threading
        from isolate import _plan, lowlevel
        from isolate._plan import Mode, Plan
        from isolate.namespaces import Namespace, rootless_maps
        maps = rootless_maps()
        fifo = os.path.join(tempfile.mkdtemp(), "fifo")
        os.chmod(os.path.dirname(fifo), 0o755)   # for uid 1000 inside, too
        os.mkfifo(fifo, 0o666)
        os.chmod(fifo, 0o666)
        with Namespace.create("user", uid_map=maps.uid_map, gid_map=maps.gid_map) as userns:
            held = Plan(0, Mode.VFORK).extend([
                _plan.setns(userns, _plan.CLONE_NEWUSER), _plan.setresuid(1000),
                _plan.open_(fifo), _plan.exec_("true", ["true"], {"PATH": "/bin"})])
            done = []
            t = threading.Thread(target=lambda: done.append(lowlevel.spawn(held).wait()))
            t.start()
            opened = []
            try:
                while os.stat("/proc/self/status").st_uid != 0:
                    assert t.is_alive()  # until its setresuid made our memory root's
                def step(pid):
                    opened.append(os.stat(f"/proc/{pid}/status").st_uid)
                    os.close(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
                p = Plan(0, Mode.FORK).extend([_plan.wait_parent(),
                                              _plan.exec_("true", ["true"], {"PATH": "/bin"})])
                with lowlevel.spawn(p, parent_step=step) as child:
                    child.wait()
            finally:
                os.close(os.open(fifo, os.O_WRONLY))  # let the vfork child go on to its exec
                t.join()
        os.unlink(fifo)
        os.rmdir(os.path.dirname(fifo))
        print(opened, done, os.stat("/proc/self/status").st_uid)
    """, subids=True)
    assert out == [f"[{USER}] [0] {USER}"]


def test_a_uid_beyond_the_range_is_refused_saying_what_is_mapped() -> None:
    out = lines("""
        from isolate import Sandbox
        from isolate.errors import UnsupportedError
        try:
            Sandbox(uid=70000).__enter__()
        except UnsupportedError as exc:
            print(exc)
    """, subids=True)
    assert out[0].startswith(f"the sandbox's process runs as uid 70000, which this rootless "
                             f"user namespace does not map (it maps uids 0-{SUBID_COUNT})")
    assert "larger range in /etc/subuid" in out[0]


def test_an_image_user_is_refused_without_a_range_saying_how_to_get_one(images: Path) -> None:
    out = lines("""
        from isolate.errors import UnsupportedError
        try:
            Sandbox(image=img, store=store).__enter__()
        except UnsupportedError as exc:
            print(exc)
        # As uid 0 it runs; one id is mapped, so every owner became the user (root inside).
        with Sandbox(image=img, store=store, uid=0) as sb:
            print(sh(sb, "stat -c %u:%g /home/app /srv/data").split())
    """, images=images)
    assert out[0].startswith("image ") and "(User 'app') runs as uid 1000" in out[0]
    assert "/etc/subuid grants user nobody no subordinate ids" in out[0]
    assert "usermod --add-subuids" in out[0] and "--user 0" in out[0]
    assert out[1] == "['0:0', '0:0']"


# -- 2: image owners kept, and the layer cache per mapping ---------------------------------------

def test_an_image_keeps_its_owners_and_runs_as_its_user(images: Path) -> None:
    out = lines("""
        with Sandbox(image=img, store=store) as sb:
            print(sh(sb, "id -un; stat -c '%n %u:%g %a' /home/app /home/app/secret "
                         "/home/app/link /srv/data /bin/busybox; cat /home/app/secret"))
        # Outside, the layer's files belong to the subordinate ids the owners map to.
        (mapped,) = store.layer_dirs(img, maps=rootless_maps())
        print(os.lstat(os.path.join(mapped, "home", "app")).st_uid,
              os.lstat(os.path.join(mapped, "srv", "data")).st_gid,
              os.lstat(os.path.join(mapped, "bin", "busybox")).st_uid)
        print(mapped == store.layer_path(img.diff_ids[0], maps=rootless_maps()))
    """, images=images, subids=True)
    assert out[:7] == ["app", "/home/app 1000:1000 700", "/home/app/secret 1000:1000 600",
                       "/home/app/link 1000:1000 777", "/srv/data 1234:5678 644",
                       "/bin/busybox 0:0 755", "only app"]
    assert out[8] == f"{SUBID_START + 999} {SUBID_START + 5677} {USER}"
    assert out[9] == "True"


def test_layers_extracted_for_one_map_are_never_used_for_another(images: Path) -> None:
    out = lines("""
        from isolate.namespaces import IdMap, IdMaps
        own = IdMaps([IdMap.self_map("uid")], [IdMap.self_map("gid")])
        (plain,) = store.layer_dirs(img, maps=own)       # as the user: owners flattened
        (mapped,) = store.layer_dirs(img)                # the default: the user's own maps
        print(plain != mapped, os.path.relpath(plain, store.root).split(os.sep)[0],
              os.path.relpath(mapped, store.root).split(os.sep)[:2] == [
                  "idmapped", rootless_maps().key])
        print(os.lstat(os.path.join(plain, "home", "app")).st_uid,
              os.lstat(os.path.join(mapped, "home", "app")).st_uid)
        # A sandbox takes the one of its maps, never the flattened copy.
        with Sandbox(image=img, store=store) as sb:
            print(sh(sb, "stat -c %u /home/app").strip())
    """, images=images, subids=True)
    assert out == ["True layers True", f"{USER} {SUBID_START + 999}", "1000"]


def test_an_owner_outside_the_range_is_refused_naming_it_and_nothing_is_left(
        images: Path) -> None:
    out = lines(f"""
        from isolate.errors import IsolateOSError
        far = store.import_tarball({str(images / "far.tar")!r}, "local/far:1")
        try:
            store.layer_dirs(far)
        except IsolateOSError as exc:
            print(exc.errno, exc)
        key = rootless_maps().key
        print(os.listdir(os.path.join(store.root, "idmapped", key, "layers")),
              os.listdir(os.path.join(store.root, "idmapped", key, "tmp")))
    """, images=images, subids=True)
    far = SUBID_COUNT + 1
    assert out[0].startswith(f"22 cannot give layer entry 'srv/far' its owner {far}:{far}, "
                             f"which this user namespace does not map (it maps uids "
                             f"0-{SUBID_COUNT} and gids 0-{SUBID_COUNT})")
    assert out[1] == "[] []"


def test_leftovers_of_a_killed_helper_are_removed_by_the_next_extraction(
        images: Path) -> None:
    out = lines("""
        from isolate.image._disk import TempSpace
        from isolate._mapped import MappedWorker
        maps = rootless_maps()
        base = store._mapped_root(maps)
        # What a helper killed mid-extraction leaves: a temp dir of a pid that is gone (one
        # above pid_max never lived), holding files of the mapped owners (made here by a
        # helper, under that name).
        dead = int(open("/proc/sys/kernel/pid_max").read()) + 1
        space = TempSpace(os.path.join(base, "tmp"))
        stale = space.name("layer").replace(f"{os.getpid()}-", f"{dead}-", 1)
        with MappedWorker(maps) as worker:
            worker.unpack(store.blob_path(img.layers[0].digest), space.name("layer"), stale,
                          img.diff_ids[0], img.layers[0].digest)
        print(os.lstat(os.path.join(stale, "home", "app")).st_uid, space.leftovers() == [stale])
        store.layer_dirs(img)
        print(os.listdir(os.path.join(base, "tmp")))
    """, images=images, subids=True)
    assert out == [f"{SUBID_START + 999} True", "[]"]


def test_a_mount_below_an_image_users_private_home_keeps_its_owner(images: Path) -> None:
    # The mount-point layer lies above the image's: its copy of /home/app must be app's 0700
    # directory still, though only a helper in the namespace may give it that owner.
    out = lines("""
        with Sandbox(image=img, store=store, readonly=False, tmpfs=["/home/app/scratch"]) as sb:
            print(sh(sb, "stat -c '%a %u:%g' /home/app; touch /home/app/new && echo wrote"),
                  end="")
    """, images=images, subids=True)
    assert out == ["700 1000:1000", "wrote"]


# -- what the mapped owners write: commit, close, gc ---------------------------------------------

def test_commit_records_owners_as_the_sandbox_saw_them(images: Path) -> None:
    out = lines("""
        import tarfile
        with Sandbox(image=img, store=store, readonly=False) as sb:
            r = sb.run(["sh", "-c", "umask 077; echo mine > /home/app/made"], check=True)
            new = store.commit(img, r.upper_dir, "local/owned:2")
        with Sandbox(image=img, store=store, readonly=False, uid=0) as sb:
            r = sb.run(["sh", "-c", "echo root > /rootfile"], check=True)
            top = store.commit(new, r.upper_dir, "local/owned:3")
        for layer in top.layers[1:]:
            with tarfile.open(store.blob_path(layer.digest)) as t:
                print(sorted(f"{m.name} {m.uid}:{m.gid} {m.mode:o}" for m in t
                             if m.name in ("home/app/made", "rootfile")))
        with Sandbox(image=top, store=store) as sb:
            print(sh(sb, "stat -c '%n %u:%g' /home/app/made /rootfile; cat /home/app/made"))
        # A directory of the user's own is recorded as root's, as the namespace sees it.
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "etc"))
        open(os.path.join(tree, "etc", "hello"), "w").close()
        mine = store.from_directory(tree, "local/mine:1")
        with tarfile.open(store.blob_path(mine.layers[0].digest)) as t:
            print(sorted(f"{m.name} {m.uid}:{m.gid}" for m in t))
    """, images=images, subids=True)
    assert out[0] == "['home/app/made 1000:1000 600']"
    assert out[1] == "['rootfile 0:0 644']"
    assert out[2:5] == ["/home/app/made 1000:1000", "/rootfile 0:0", "mine"]
    assert out[6] == "['etc 0:0', 'etc/hello 0:0']"


def test_close_and_gc_remove_what_the_mapped_owners_own(images: Path) -> None:
    out = lines("""
        with Sandbox(image=img, store=store, readonly=False) as sb:
            sh(sb, "mkdir -m 700 /home/app/d && touch /home/app/d/x && chmod 500 /home/app/d")
        print(os.listdir(os.path.join(store.root, "tmp")))      # the scratch dir is gone
        store.rmi("local/owned:1")
        print(store.gc().layers)
        key = rootless_maps().key
        print(os.listdir(os.path.join(store.root, "idmapped", key, "layers")))
        shutil.rmtree(work)              # as the user: nothing of a mapped owner is left
        print("removed")
    """, images=images, subids=True)
    assert out == ["[]", "1", "[]", "removed"]


def test_a_rootless_container_runs_as_its_image_user_and_is_removed_with_its_files(
        images: Path) -> None:
    # A container takes its maps where a sandbox does; what its user makes in its upper dir
    # belongs to a subordinate id, and removing the container removes that too.
    out = lines("""
        from isolate.container import ContainerConfig, ContainerStore
        cs = ContainerStore(store)
        c = cs.create(ContainerConfig("local/owned:1", ["sh", "-c",
            "id -un; stat -c %u:%g /home/app/secret; mkdir -m 700 /home/app/d && "
            "touch /home/app/d/x && stat -c %u /home/app/d/x"]))
        c.start()
        c.wait(timeout=120)
        print("".join(r.text for r in c.logs()), end="")
        c.remove()
        print(cs.list(all=True))
    """, images=images, subids=True)
    assert out == ["app", "1000:1000", "1000", "[]"]


# -- -u 1000, chown, su --------------------------------------------------------------------------

def test_isolate_run_u_1000_and_an_image_user_work_rootless(images: Path) -> None:
    # 'isolate run IMAGE' is docker run: a container, kept unless --rm; 'isolate rm' then
    # removes what its user made (an overlay work dir the user may not list, for one).
    out = lines("""
        import subprocess, sys
        def isolate(*args):
            r = subprocess.run([sys.executable, "-m", "isolate", *args], capture_output=True,
                               text=True, env=dict(os.environ, ISOLATE_STORE=store.root))
            return f"{r.returncode} {r.stdout.split()} {r.stderr}"
        for args in (["--rm", "-u", "1000"], ["--rm", "-u", "1234:5678"], ["--name", "kept"]):
            print(isolate("run", *args, "local/owned:1", "sh", "-c", "id -u; id -g; id -un"))
        print(isolate("rm", "kept"))
        print(isolate("ps", "-aq"))
    """, images=images, subids=True)
    assert out == ["0 ['1000', '1000', 'app'] ", "0 ['1234', '5678', 'other'] ",
                   "0 ['1000', '1000', 'app'] ", "0 ['kept'] ", "0 [] "]


def test_chown_and_su_to_an_image_user_work_rootless(images: Path) -> None:
    out = lines("""
        caps = ["CHOWN", "SETUID", "SETGID"]
        with Sandbox(image=img, store=store, uid=0, readonly=False, capabilities=caps) as sb:
            print(sh(sb, "touch /f && chown 1234:5678 /f && stat -c %u:%g /f; "
                         "su app -c 'id -u; cat /home/app/secret'"))
    """, images=images, subids=True)
    assert out[:3] == ["1234:5678", "1000", "only app"]


# -- 3: new top-level mount targets, the README's tour -------------------------------------------

@pytest.mark.parametrize("subids", [False, True], ids=["one-id", "subids"])
def test_binds_and_tmpfs_on_new_top_level_targets_work_rootless(subids: bool) -> None:
    out = lines("""
        import os, sys
        from isolate.cli import main
        home = os.environ["HOME"]
        sys.exit(main(["run", "--bind", "/usr/share:/data", "--bind", f"{home}:/newtop",
                       "--tmpfs", "/newtmp", "--", "sh", "-c",
                       "ls -d /data/doc /newtop/isolate; touch /newtmp/x && echo written; "
                       "touch /newtop/y 2>/dev/null || echo read-only; "
                       "echo $$ $(cat /proc/1/comm)"]))
    """, subids=subids)
    # /proc is the process's own (its pid namespace), over the host's bound there for it.
    assert out == ["/data/doc", "/newtop/isolate", "written", "read-only", "1 sh"]


def tour() -> str:
    """The README's tour (the first python block after '## A tour')."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text.split("## A tour", 1)[1], re.S | re.M)[0]


@pytest.mark.parametrize("who", ["root", "user", "user-subids"])
def test_the_readme_tour_runs_as_root_and_as_an_ordinary_user(who: str) -> None:
    if who == "root":
        if os.geteuid() != 0:
            pytest.skip("the tour as root needs root")
        env = dict(os.environ, PYTHONPATH=str(Path(isolate.__file__).resolve().parent.parent))
        proc = subprocess.run([sys.executable, "-c", tour()], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.splitlines()
    else:
        out = lines(tour(), subids=who == "user-subids")
    assert out == ["1 box", "0", "", "6", "b'hi'"]


# -- 4: --init hides the caller's command line ---------------------------------------------------

def test_init_hides_the_command_line_rootless_inside_and_on_the_host() -> None:
    out = lines(r"""
        import os, subprocess, sys
        from isolate import Sandbox
        r = subprocess.run([sys.executable, "-m", "isolate", "run", "--init", "--", "sh", "-c",
                            "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm"],
                           capture_output=True, text=True)
        print(r.returncode, r.stdout.split(), r.stderr)
        with Sandbox(init=True, uid=1000) as sb:
            with sb.popen(["sleep", "60"]) as p:   # p.pid is the init's, seen from the host
                print(open(f"/proc/{p.pid}/cmdline", "rb").read().rstrip(b"\0"))
                p.kill()
    """, subids=True)
    assert out == ["0 ['isolate-init', 'isolate-init'] ", "b'isolate-init'"]


def test_init_of_a_rootless_container_is_isolate_init(images: Path) -> None:
    # 'isolate run --init IMAGE' is a container (docker run --init): its pid 1 too.
    out = lines(r"""
        import subprocess, sys
        r = subprocess.run([sys.executable, "-m", "isolate", "run", "--rm", "--init",
                            "local/owned:1", "sh", "-c",
                            "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm; echo $$"],
                           capture_output=True, text=True,
                           env=dict(os.environ, ISOLATE_STORE=store.root))
        print(r.returncode, r.stdout.split(), r.stderr)
    """, images=images, subids=True)
    assert out == ["0 ['isolate-init', 'isolate-init', '2'] "]


@pytest.mark.parametrize("uid", [0, 1000])
def test_the_fork_based_init_hides_the_command_line_rootless(uid: int) -> None:
    # Where isolate-shim could not be linked statically, init_binary() is None and the C
    # core's init, a fork of the caller, is pid 1: its copy of the caller's argument area is
    # overwritten, though rootless and non-dumpable it may not open its own /proc/self/mem.
    out = lines(rf"""
        import os
        from isolate import Sandbox, _shim
        _shim.init_binary = lambda: None        # the path of a build without libc.a
        with Sandbox(init=True, uid={uid}) as sb:
            r = sb.run(["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm"],
                       capture_output=True, text=True, check=True)
            print(r.stdout.split())
            with sb.popen(["sleep", "60"]) as p:
                try:   # the host sees no command line of ours either
                    print(open(f"/proc/{{p.pid}}/cmdline", "rb").read().rstrip(b"\0"))
                finally:
                    p.kill()
    """, subids=True)
    assert out == ["['isolate-init', 'isolate-init']", "b'isolate-init'"]


def test_a_fork_based_init_that_cannot_hide_the_command_line_fails() -> None:
    # Without a /proc the caller cannot learn where its argument area lies: the init is
    # refused, never started showing the caller's command line.
    if os.geteuid() != 0:
        pytest.skip("unmounting /proc in a private mount namespace needs root")
    code = textwrap.dedent("""
        from isolate import _plan, lowlevel
        from isolate._plan import Mode, Plan
        from isolate.errors import SpawnError
        p = Plan(0, Mode.FORK).extend([_plan.init(),
                                       _plan.exec_("true", ["true"], {"PATH": "/bin"})])
        try:
            lowlevel.spawn(p).wait()
        except SpawnError as exc:
            print(exc.step, exc)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(isolate.__file__).resolve().parent.parent))
    # An empty tmpfs over /proc: unmounting could uncover another proc below (CI's run in a
    # pid namespace of its own mounts one over the host's).
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs -o size=4k none /proc && exec "$@"', "sh",
                           sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "init start the init (pid 1), hide the caller's command line and fork the command: "
        "ENOENT (No such file or directory)"]


# -- 7: the docs' examples that claim rootless support -------------------------------------------

ROOTLESS_PAGES = ["README.md", "docs/sandbox.md", "docs/images.md", "docs/namespaces.md",
                  "docs/layers.md"]
# A block that needs root says so on the line before it.
_BLOCK = re.compile(r"(?:^<!-- (root only[^>]*) -->\n)?^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", ROOTLESS_PAGES)
def test_the_docs_examples_run_as_an_ordinary_user_with_subordinate_ids(page: str) -> None:
    blocks = [code for marker, code in _BLOCK.findall((ROOT / page).read_text()) if not marker]
    assert blocks, f"{page} has no example an ordinary user runs"
    # The examples run in, and make their tempfile.mkdtemp() dirs in, a dir the user may
    # write that the test removes (as root: a user namespace's files may be a subuid's).
    work = tempfile.mkdtemp(prefix="isolate-rootless-docs-")
    try:
        os.chown(work, 65534, 65534)
        code = f"import os\nos.chdir({work!r})\n" + "\n".join(blocks)
        proc = run_unprivileged(code, subids=True, check=False, extra_env={"TMPDIR": work})
    finally:
        shutil.rmtree(work)
    assert proc.returncode == 0, f"{page}:\n{proc.stdout}\n{proc.stderr}"


def test_every_page_with_examples_says_which_need_root() -> None:
    # The pages above run rootless; any other page whose examples claim rootless support
    # must join them.
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rel = str(page.relative_to(ROOT))
        if rel in ROOTLESS_PAGES:
            continue
        for _, code in _BLOCK.findall(page.read_text()):
            assert "rootless" not in code.lower(), f"{rel} has a rootless example: list it"


def test_the_subordinate_id_files_are_the_runs_own() -> None:
    # The range is bound over the machine's files in the run's mount namespace only.
    before = [Path(f"/etc/sub{w}").read_bytes() if Path(f"/etc/sub{w}").exists() else None
              for w in ("uid", "gid")]
    out = lines("""
        print(open("/etc/subuid").read().strip(), open("/etc/subgid").read().strip())
    """, subids=True)
    assert out == [f"nobody:{SUBID_START}:{SUBID_COUNT} nobody:{SUBID_START}:{SUBID_COUNT}"]
    after = [Path(f"/etc/sub{w}").read_bytes() if Path(f"/etc/sub{w}").exists() else None
             for w in ("uid", "gid")]
    assert before == after
