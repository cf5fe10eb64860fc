"""Containers as an ordinary user: the store under $XDG_DATA_HOME, a user namespace (our own
ids, or subordinate ranges through newuidmap), no cgroup where none is delegated -- and the
limits, pause and stats that need one refused with the reason."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

import rootless

pytestmark = [pytest.mark.root, pytest.mark.userns]

_SETUP = """
import json, os, shutil, subprocess, tempfile
base = os.environ["XDG_DATA_HOME"]
tree = os.path.join(base, "tree")
for d in ("bin", "etc", "tmp", "data", "srv"):
    os.makedirs(os.path.join(tree, d))
os.chmod(os.path.join(tree, "tmp"), 0o1777)
shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
    if not os.path.lexists(os.path.join(tree, "bin", a)):
        os.symlink("busybox", os.path.join(tree, "bin", a))
with open(os.path.join(tree, "etc", "passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/srv:/bin/sh\\n")
with open(os.path.join(tree, "data", "seed"), "w") as f:
    f.write("seeded\\n")
from isolate.image import Store, ImageConfig
from isolate.container import ContainerStore, ContainerConfig
store = Store()
store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
cs = ContainerStore()
def out(c):
    return "".join(r.text for r in c.logs())
"""


def _run(tmp_path: Path, body: str, **kw: object) -> dict[str, object]:
    return rootless.run_in_user_store(tmp_path, _SETUP + textwrap.dedent(body), **kw)


def test_a_rootless_container_runs_execs_and_is_removed(tmp_path: Path) -> None:
    r = _run(tmp_path, """
        c = cs.create(ContainerConfig("busybox", ["sh", "-c",
            "id -u; cat /proc/self/uid_map | tr -s ' '; hostname; cat /data/seed; "
            "echo w > /tmp/w && cat /tmp/w; exec sleep 100000"], mounts=["rlvol:/data"]))
        c.start()
        import time
        for _ in range(2000):
            if "w\\n" in out(c) or not c.status.running:
                break
            time.sleep(0.01)
        code, exec_out, _ = c.exec_run(["sh", "-c", "id -u; ls /tmp"])
        info = c.inspect()
        root = store.root
        c.stop(timeout=0)
        st = c.state
        # A stopped container's files, through a view in a user namespace of our own.
        import io, tarfile
        buf = io.BytesIO()
        c.get_archive("/tmp/w", buf)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            copied = tar.extractfile("w").read().decode()
        changes = [str(x) for x in c.diff()]
        c.remove(volumes=True)
        print(json.dumps({"log": out(c) if False else None, "first": st.exit_code,
                          "exec": [code, exec_out.decode()], "note": info["Isolate"]["Note"],
                          "cgroup": info["Isolate"]["Cgroup"], "root": root,
                          "left": os.listdir(os.path.join(root, "containers")),
                          "status": str(st.status.value), "copied": copied,
                          "supervisor": st.supervisor,
                          "changes": changes}))
    """)
    assert r["root"] == str(tmp_path / "xdg" / "isolate")
    assert r["exec"] == [0, "0\nw\n"] and r["first"] == 137 and r["status"] == "exited"
    assert r["cgroup"] is None and "not delegated" in str(r["note"])
    assert sorted(r["left"]) == ["names", "names.lock"]  # type: ignore[arg-type]
    assert r["copied"] == "w\n" and "A /tmp/w" in r["changes"]  # type: ignore[operator]
    from isolate import _shim
    from isolate.errors import UnsupportedError

    try:
        _shim.binary()
        expected = "shim"
    except UnsupportedError:
        expected = "inprocess"
    assert r["supervisor"] == expected


def test_rootless_output_and_what_needs_a_cgroup(tmp_path: Path) -> None:
    r = _run(tmp_path, """
        from isolate.cgroups import Limits
        from isolate.errors import UnsupportedError
        c = cs.create(ContainerConfig("busybox", ["sh", "-c",
            "id -u; cat /proc/self/uid_map | tr -s ' '; cat /data/seed"],
            mounts=["rlvol:/data"]))
        c.start()
        c.wait(timeout=60)
        log = out(c)
        limited = cs.create(ContainerConfig("busybox", ["true"], limits=Limits(pids_max=5)))
        try:
            limited.start()
            limits = "started"
        except UnsupportedError as exc:
            limits = str(exc)
        s = cs.create(ContainerConfig("busybox", ["sleep", "100000"]))
        s.start()
        try:
            s.pause()
            paused = "paused"
        except UnsupportedError as exc:
            paused = str(exc)
        s.remove(force=True)
        for x in cs.list(all=True):
            x.remove(volumes=True)
        print(json.dumps({"log": log, "limits": limits, "paused": paused}))
    """)
    lines = str(r["log"]).splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", "65534", "1"]
    assert lines[2] == "seeded"
    assert "cannot limit this container's resources" in str(r["limits"])
    assert "no cgroup" in str(r["paused"])


@pytest.mark.skipif(shutil.which("newuidmap") is None, reason="newuidmap (uidmap) missing")
def test_subordinate_ranges_map_the_images_other_users(tmp_path: Path) -> None:
    sub, subgid = tmp_path / "subuid", tmp_path / "subgid"
    for f in (sub, subgid):
        f.write_text("nobody:300000:65536\n")
        f.chmod(0o644)
    r = _run(tmp_path, """
        c = cs.create(ContainerConfig("busybox", ["sh", "-c",
            "cat /proc/self/uid_map | tr -s ' '; id -u; touch /tmp/f; stat -c %u /tmp/f"],
            user="app"))
        c.start()
        c.wait(timeout=60)
        log = out(c)
        c.remove()
        print(json.dumps({"log": log}))
    """, binds={str(sub): "/etc/subuid", str(subgid): "/etc/subgid"},
        keep_bounding_set=True)
    lines = str(r["log"]).splitlines()
    assert lines[0].split() == ["0", "65534", "1"] and lines[1].split() == ["1", "300000",
                                                                             "65536"]
    assert lines[2] == "1000" and lines[3] == "1000"
