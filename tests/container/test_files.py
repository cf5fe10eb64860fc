"""A container's files from outside: cp both ways, running or stopped, never following a
symlink of the container out of its root; export; diff; commit (and run what it made)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore
from isolate.container.commit import apply_changes
from isolate.errors import ConfigError, NotFoundError
from isolate.image import ImageConfig, Store

pytestmark = pytest.mark.root


def ran(cs: ContainerStore, script: str, **options: object) -> Container:
    c = cs.create(ContainerConfig("busybox", ["sh", "-c", script],
                                  **options))  # type: ignore[arg-type]
    c.start()
    assert c.wait(timeout=60).exit_code == 0, "".join(r.text for r in c.logs())
    return c


def archive_of(c: Container, path: str) -> dict[str, tarfile.TarInfo | bytes]:
    buf = io.BytesIO()
    c.get_archive(path, buf)
    buf.seek(0)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=buf) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f is not None else m
    return out


def tar_of(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_cp_out_of_a_stopped_and_a_running_container(containers: ContainerStore) -> None:
    c = ran(containers, "mkdir -p /srv/out/sub; echo one > /srv/out/a; echo two > "
            "/srv/out/sub/b; ln -s a /srv/out/link")
    got = archive_of(c, "/srv/out")
    assert got["out/a"] == b"one\n" and got["out/sub/b"] == b"two\n"
    link = got["out/link"]
    assert isinstance(link, tarfile.TarInfo) and link.issym() and link.linkname == "a"
    assert archive_of(c, "/etc/marker") == {"marker": b"isolate test image\n"}
    with pytest.raises(NotFoundError, match="Could not find the file /nope"):
        archive_of(c, "/nope")
    r = containers.create(ContainerConfig("busybox", ["sleep", "100000"]))
    r.start()
    r.exec_run(["sh", "-c", "echo live > /tmp/live"])
    assert archive_of(r, "/tmp/live") == {"live": b"live\n"}
    r.stop(timeout=0)


def test_cp_into_running_and_stopped_containers(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["sleep", "100000"]))
    c.put_archive("/srv", tar_of({"before/x": b"put while stopped\n"}))
    c.start()
    c.put_archive("/tmp", tar_of({"y": b"put while running\n"}))
    _code, out, _ = c.exec_run(["cat", "/srv/before/x", "/tmp/y"])
    assert out == b"put while stopped\nput while running\n"
    with pytest.raises(ConfigError, match="not a directory"):
        c.put_archive("/etc/marker", tar_of({"z": b""}))
    c.stop(timeout=0)


def test_a_symlink_in_the_container_never_leads_out(containers: ContainerStore,
                                                    tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    c = ran(containers, f"ln -s {secret} /srv/evil-file; ln -s {outside} /srv/evil-dir; "
            "ln -s ../../../../../.. /srv/up")
    # Reading through the link: the link itself comes out, never the host file.
    got = archive_of(c, "/srv/evil-file")
    assert isinstance(got["evil-file"], tarfile.TarInfo) and got["evil-file"].issym()
    with pytest.raises(NotFoundError):
        archive_of(c, f"/srv/up{secret}")  # resolved inside the root: no such file there
    # Writing through a link to a directory: into the container's own path, never the host's.
    with pytest.raises((NotFoundError, OSError)):
        c.put_archive("/srv/evil-dir", tar_of({"planted": b"x"}))
    c.put_archive("/srv/up/tmp", tar_of({"landed": b"inside\n"}))
    assert os.listdir(outside) == []
    assert archive_of(c, "/tmp/landed") == {"landed": b"inside\n"}


def test_export_is_the_flattened_root(containers: ContainerStore) -> None:
    c = ran(containers, "echo changed > /etc/marker; rm /data/seed.txt; echo n > /new")
    buf = io.BytesIO()
    c.export(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
        marker = tar.extractfile("etc/marker")
        assert marker is not None and marker.read() == b"changed\n"
    assert "new" in names and "bin/busybox" in names and "data/seed.txt" not in names
    assert not any(".wh." in n for n in names)


def test_diff_lists_added_changed_and_deleted(containers: ContainerStore) -> None:
    c = ran(containers, "echo changed > /etc/marker; rm /data/seed.txt; mkdir /newdir; "
            "echo n > /newdir/f")
    lines = [str(ch) for ch in c.diff()]
    assert "C /etc" in lines and "C /etc/marker" in lines
    assert "D /data/seed.txt" in lines and "C /data" in lines
    assert "A /newdir" in lines and "A /newdir/f" in lines
    assert lines == sorted(lines, key=lambda s: s[2:])


def test_commit_makes_an_image_that_runs_with_the_change(containers: ContainerStore,
                                                         image_store: Store) -> None:
    c = ran(containers, "echo baked > /baked; rm /etc/marker", env={"FROM_RUN": "1"})
    img = c.commit("committed:v1", author="Ada <ada@example.org>", message="baked in",
                   changes=["ENV COMMITTED=yes", "CMD [\"cat\", \"/baked\"]",
                            "LABEL stage=test", "WORKDIR /srv"])
    try:
        base = image_store.get("busybox")
        assert img.diff_ids[:-1] == base.diff_ids and len(img.diff_ids) == len(base.diff_ids) + 1
        assert img.config.cmd == ("cat", "/baked") and img.config.working_dir == "/srv"
        env = img.config.env_dict
        assert env["COMMITTED"] == "yes" and env["FROM_RUN"] == "1"
        assert img.config.labels["stage"] == "test"
        history = json.loads(image_store.read_blob(img.id))["history"]
        base_history = json.loads(image_store.read_blob(base.id))["history"]
        assert history[:-1] == base_history
        assert history[-1]["author"] == "Ada <ada@example.org>"
        assert history[-1]["comment"] == "baked in"
        assert "echo baked > /baked" in history[-1]["created_by"]
        d = containers.create(ContainerConfig("committed:v1"))
        d.start()
        assert d.wait(timeout=60).exit_code == 0
        assert "".join(r.text for r in d.logs()) == "baked\n"
        e = containers.create(ContainerConfig("committed:v1",
                                              ["sh", "-c", "test ! -e /etc/marker && pwd"]))
        e.start()
        e.wait(timeout=60)
        assert "".join(r.text for r in e.logs()) == "/srv\n"
    finally:
        for x in containers.list(all=True):
            if x.image_id == img.id:
                x.remove(force=True)
        image_store.rmi("committed:v1")


def test_change_lines_are_dockers() -> None:
    base = ImageConfig(env=["A=1"], cmd=["sh"])
    cfg = apply_changes(base, ["ENV B=2 C=3", "ENV D four", "EXPOSE 80 53/udp",
                               "ENTRYPOINT /bin/run --flag", "USER app:staff",
                               "VOLUME /v1 /v2", "STOPSIGNAL SIGINT"])
    assert cfg.env_dict == {"A": "1", "B": "2", "C": "3", "D": "four"}
    assert cfg.exposed_ports == ("80/tcp", "53/udp")
    assert cfg.entrypoint == ("/bin/sh", "-c", "/bin/run --flag") and cfg.cmd is None
    assert cfg.user == "app:staff" and cfg.volumes == ("/v1", "/v2")
    assert cfg.stop_signal == "SIGINT"
    for bad in ("RUN echo", "WORKDIR relative", "STOPSIGNAL NOPE"):
        with pytest.raises(ConfigError):
            apply_changes(base, [bad])


def test_cp_path_rules_are_dockers(containers: ContainerStore, tmp_path: Path) -> None:
    c = ran(containers, "mkdir -p /srv/d/sub; echo f > /srv/d/f; echo s > /srv/d/sub/s; "
            "echo one > /srv/one")
    out = tmp_path / "out"
    out.mkdir()
    c.copy_from("/srv/one", str(out))                       # into an existing dir
    c.copy_from("/srv/one", str(out / "renamed"))           # to a new name
    c.copy_from("/srv/d", str(out / "newdir"))              # a dir to a new name
    c.copy_from("/srv/d", str(out))                         # a dir into an existing dir
    (out / "contents").mkdir()
    c.copy_from("/srv/d/.", str(out / "contents"))          # a dir's contents
    assert (out / "one").read_text() == "one\n" and (out / "renamed").read_text() == "one\n"
    assert (out / "newdir" / "sub" / "s").read_text() == "s\n"
    assert (out / "d" / "f").read_text() == "f\n"
    assert sorted(os.listdir(out / "contents")) == ["f", "sub"]
    with pytest.raises(ConfigError, match="cannot copy a directory to a file"):
        c.copy_from("/srv/d", str(out / "one"))
    with pytest.raises(ConfigError, match="must exist"):
        c.copy_from("/srv/one", str(out / "missing") + "/")
    # And into it, stopped here, the same rules.
    host = tmp_path / "host"
    (host / "tree").mkdir(parents=True)
    (host / "tree" / "x").write_text("x\n")
    (host / "file").write_text("file\n")
    c.copy_to(str(host / "file"), "/srv")
    c.copy_to(str(host / "file"), "/srv/file2")
    c.copy_to(str(host / "tree"), "/srv/copied-tree")
    c.copy_to(str(host / "tree") + "/.", "/srv/d")
    got = archive_of(c, "/srv")
    assert got["srv/file"] == b"file\n" and got["srv/file2"] == b"file\n"
    assert got["srv/copied-tree/x"] == b"x\n" and got["srv/d/x"] == b"x\n"
    with pytest.raises(NotFoundError):
        c.copy_to(str(host / "file"), "/no/such/dir/file")


def test_an_image_without_tmp_shows_no_change_after_a_start(containers: ContainerStore,
                                                             tmp_path: Path) -> None:
    import shutil

    from isolate.image import ImageConfig

    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "bin" / "true").symlink_to("busybox")
    images = containers.images
    images.from_directory(tree, "no-tmp:latest", config=ImageConfig(env=["PATH=/bin"]))
    try:
        c = containers.create(ContainerConfig("no-tmp", ["true"]))
        c.start()
        assert c.wait(timeout=60).exit_code == 0
        # Docker shows nothing: the mount points are not the container's changes.
        assert [str(ch) for ch in c.diff()] == []
        c.remove()
    finally:
        images.remove("no-tmp:latest", force=True)
