"""The store on real files: records, tags, gc, df, crash leftovers, corruption."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import isolate
from isolate.errors import ConfigError, DigestMismatch, ImageError
from isolate.image import ImageConfig, Store

from .conftest import unique_tar


def test_root_must_be_absolute() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        Store("relative/store")


def test_default_root_for_root_is_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    from isolate.image.store import default_root

    if os.geteuid() == 0:
        assert default_root() == "/var/lib/isolate"
    else:
        monkeypatch.setenv("XDG_DATA_HOME", "/x")
        assert default_root() == "/x/isolate"


def test_import_tarball_records_config_and_layer_chain(store: Store, rootfs_tar: Path) -> None:
    cfg = ImageConfig(env=["PATH=/bin"], cmd=["/bin/sh"], working_dir="/etc",
                      exposed_ports=["80/tcp"], labels={"a": "b"})
    img = store.import_tarball(rootfs_tar, "local/busybox:1", config=cfg)
    assert img.tags == ("docker.io/local/busybox:1",)
    assert img.config == cfg
    assert len(img.layers) == len(img.diff_ids) == 1
    assert img.layers[0].media_type.endswith("+gzip")
    assert store.get("local/busybox:1") == img
    assert store.get(img.id) == img
    assert store.get(img.short_id) == img
    store.verify(img)


def test_get_unknown_image_says_which(store: Store) -> None:
    with pytest.raises(ImageError, match="nothere"):
        store.get("nothere:1")


def test_tag_and_rmi_keep_image_until_last_name(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "a:1")
    store.tag(img, "b:2")
    assert set(store.get("a:1").tags) == {"docker.io/library/a:1", "docker.io/library/b:2"}
    assert store.rmi("a:1") == ["docker.io/library/a:1"]
    assert store.get(img.id).tags == ("docker.io/library/b:2",)
    store.rmi("b:2")
    with pytest.raises(ImageError):
        store.get(img.id)
    assert store.images() == []


def test_gc_keeps_referenced_and_removes_the_rest(store: Store, rootfs_tar: Path,
                                                  tmp_path: Path) -> None:
    kept = store.import_tarball(rootfs_tar, "kept:1", config=ImageConfig(cmd=["a"]))
    other_tar = tmp_path / "other.tar"
    subprocess.run(["tar", "-cf", str(other_tar), "-C", str(tmp_path), "store/images"],
                   check=True)
    gone = store.import_tarball(other_tar, "gone:1")
    held = store.import_tarball(rootfs_tar, "held:1", config=ImageConfig(cmd=["b"]))
    store.hold(held, "container-1")
    store.rmi("gone:1")
    store.rmi("held:1")
    before = store.df()
    assert before.reclaimable > 0
    report = store.gc()
    assert report.blobs >= 3  # gone's layer, config and manifest
    assert report.bytes_freed > 0
    store.verify(kept)
    store.verify(store.get(held.id))
    assert not store.has_blob(gone.layers[0].digest)
    assert not store.has_blob(gone.id)
    assert store.df().reclaimable == 0
    store.release("container-1")
    store.gc()
    with pytest.raises(ImageError):
        store.get(held.id)
    store.verify(kept)  # shares its layer blob with held: still there


def test_rmi_by_id_refuses_held_image(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "x:1")
    store.hold(img, "c1")
    with pytest.raises(ImageError, match="in use by c1"):
        store.rmi(img.id)
    store.release("c1")
    assert store.rmi(img.id) == ["docker.io/library/x:1"]


_PROCESS_HOLDER = """
import sys, time
from isolate.image import Store
Store(sys.argv[1]).hold(sys.argv[2], "sandbox-owner", for_process=True)
print("held", flush=True)
time.sleep(60)
"""


def test_a_process_hold_ends_with_its_process(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "x:1")
    env = dict(os.environ, PYTHONPATH=str(Path(isolate.__file__).resolve().parents[1]))
    owner = subprocess.Popen([sys.executable, "-c", _PROCESS_HOLDER, store.root, img.id],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "held\n"
        with pytest.raises(ImageError, match="in use by sandbox-owner"):
            store.rmi(img.id)
        assert store.gc().images == 0
        store.verify(img)
    finally:
        owner.kill()  # SIGKILL: it cannot release anything
        owner.wait()
        owner.stdout.close()  # type: ignore[union-attr]
    assert store.rmi(img.id) == ["docker.io/library/x:1"]
    assert os.listdir(os.path.join(store.root, "holds")) == []
    assert store.gc().blobs >= 3  # its layer, config and manifest


def test_a_process_hold_is_released_like_any_other(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "x:1")
    store.hold(img, "mine", for_process=True)
    with pytest.raises(ImageError, match="in use by mine"):
        store.rmi(img.id)  # our own hold, seen from this process: alive
    store.release("mine")
    assert store.rmi(img.id) == ["docker.io/library/x:1"]


def test_hold_rejects_path_like_holder(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "x:1")
    with pytest.raises(ConfigError, match="holder"):
        store.hold(img, "../escape")


def test_open_cleans_temp_leftovers_of_dead_writers_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = Path(store.tmp.path) / f"{dead.pid}.abcd.blob"
    leftover.write_bytes(b"half a blob")
    half_dir = Path(store.tmp.path) / f"{dead.pid}.ef01.layer"
    (half_dir / "ro").mkdir(parents=True)
    (half_dir / "ro" / "f").write_text("x")
    (half_dir / "ro").chmod(0o500)
    mine = Path(store.tmp.name("blob"))
    mine.write_bytes(b"live writer")
    Store(tmp_path / "s")
    assert not leftover.exists()
    assert not half_dir.exists()
    assert mine.exists()


_FOREIGN_WRITER = """
import sys, time
from isolate.image import Store
path = Store(sys.argv[1]).tmp.name("blob")
open(path, "wb").write(b"being written")
print(path, flush=True)
time.sleep(60)
"""


def test_a_writer_in_another_pid_namespace_keeps_its_temp_entries(tmp_path: Path) -> None:
    # Its pid (1 there) means nothing here: its entry must survive our open, while it lives
    # and for a long time after; only an old one goes.
    if os.geteuid() != 0:
        pytest.skip("needs root for a pid namespace made by unshare(1)")
    store = Store(tmp_path / "s")
    env = dict(os.environ, PYTHONPATH=str(Path(isolate.__file__).resolve().parents[1]))
    writer = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable,
                               "-c", _FOREIGN_WRITER, store.root],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert writer.stdout is not None
        path = Path(writer.stdout.readline().strip())
        assert path.name.startswith("1-")  # pid 1 of its own namespace
        assert store.tmp.clean() == 0
        assert path.exists()
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()  # type: ignore[union-attr]
    assert store.tmp.clean() == 0 and path.exists()
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(path, (week_ago, week_ago))
    assert store.tmp.clean() == 1 and not path.exists()


def test_corrupted_blob_is_digest_mismatch(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "c:1")
    path = store.blob_path(img.layers[0].digest)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\0corrupt\0")
    with pytest.raises(DigestMismatch) as info:
        store.verify(img)
    assert info.value.expected == img.layers[0].digest


def test_corrupted_config_blob_is_digest_mismatch_on_get(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "c:1")
    with open(store.blob_path(img.id), "ab") as f:
        f.write(b" ")
    with pytest.raises(DigestMismatch):
        store.get("c:1")


def test_an_image_is_parsed_once_while_its_files_stay_the_same(store: Store,
                                                                 rootfs_tar: Path) -> None:
    """A lookup reuses the parse of the image's record and config while both files are
    unchanged; its names are read each time; a record replaced (renamed over) is read anew."""
    img = store.import_tarball(rootfs_tar, "p:1")
    first = store.get("p:1")
    assert first == img and store._parsed[img.id][1]["config"] is first.config
    store.tag("p:1", "p:2")
    again = store.get("p:1")
    assert again.tags == ("docker.io/library/p:1", "docker.io/library/p:2")
    assert again.config is first.config  # not parsed again
    record = store._record_path(img.id)
    tmp = record + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"manifest": "sha256:' + "0" * 64 + '"}')
    os.rename(tmp, record)
    with pytest.raises(ImageError):
        store.get("p:1")  # the new record names a manifest the store lacks


def test_names_are_read_once_while_tags_json_stays_the_same(
        store: Store, rootfs_tar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup reuses the names last read while ``tags.json`` is the same file (and was not
    written just now); another process's tag (a new file renamed over it) is seen at once."""
    img = store.import_tarball(rootfs_tar, "n:1")
    path = store._p("tags.json")
    old = time.time_ns() - 1_000_000_000  # (as if written a second ago)
    os.utime(path, ns=(old, old))
    assert store.get("n:1") == img
    reads: list[str] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if file == path:
            reads.append(path)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    assert store.get("n:1") == img and store.get("n:1").tags == ("docker.io/library/n:1",)
    assert reads == []
    Store(store.root).tag("n:1", "n:2")  # another Store, as another process's
    reads.clear()
    assert store.get("n:2").id == img.id and reads == [path]
    store._tags()["changed:by-a-caller"] = img.id  # a copy: the next lookup is unchanged
    assert "changed:by-a-caller" not in store._tags()


def test_a_whole_image_id_is_found_without_listing_the_store(
        store: Store, rootfs_tar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = store.import_tarball(rootfs_tar, "w:1")

    def no_listing() -> list[str]:
        raise AssertionError("listed the store's images for a whole id")

    monkeypatch.setattr(store, "_record_ids", no_listing)
    assert store.get(img.id) == img
    assert store.get(img.id.removeprefix("sha256:")) == img
    with pytest.raises(ImageError, match="no image with id"):
        Store(store.root).get("sha256:" + "0" * 64)


def test_import_tarball_of_missing_file_is_image_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        store.import_tarball(tmp_path / "nope.tar", "x:1")


def test_layer_dirs_extracts_lowest_first(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "l:1")
    try:
        dirs = store.layer_dirs(img)
    except NotImplementedError:
        pytest.skip("isolate.fs.layers.extract is not implemented yet")
    assert dirs == [store.layer_path(img.diff_ids[0])]
    assert Path(dirs[0], "etc", "marker").read_text() == "isolate test image\n"
    assert store.layer_dirs(img) == dirs  # second call reuses the extraction
    assert os.listdir(store.tmp.path) == []


def test_df_counts_blobs(store: Store, rootfs_tar: Path) -> None:
    img = store.import_tarball(rootfs_tar, "d:1")
    usage = store.df()
    assert usage.images == 1
    assert usage.blobs == 3
    assert usage.blob_bytes >= img.layers[0].size
    assert usage.total >= usage.blob_bytes


def test_from_directory_makes_one_layer_image_that_extracts_back(store: Store, rootfs: Path
                                                                 ) -> None:
    img = store.from_directory(rootfs, "dir/img:1", config=ImageConfig(cmd=["/bin/sh"]))
    assert img.config.cmd == ("/bin/sh",)
    assert len(img.diff_ids) == 1
    [layer] = store.layer_dirs(img)
    assert Path(layer, "etc", "marker").read_text() == "isolate test image\n"
    assert os.readlink(Path(layer, "bin", "sh")) == "busybox"


def test_from_directory_of_a_file_is_config_error(store: Store, rootfs_tar: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        store.from_directory(rootfs_tar, "x:1")


def test_layer_dirs_rejects_layer_not_matching_diff_id(store: Store, rootfs_tar: Path,
                                                       tmp_path: Path) -> None:
    img = store.import_tarball(rootfs_tar, "l:1")
    other = store.import_tarball(unique_tar(tmp_path), "o:1")
    # Swap in another valid blob under the layer's name: extraction must refuse it.
    os.replace(store.blob_path(other.layers[0].digest), store.blob_path(img.layers[0].digest))
    with pytest.raises(DigestMismatch):
        store.layer_dirs(img)
    assert not os.path.exists(store.layer_path(img.diff_ids[0]))
    assert os.listdir(store.tmp.path) == []
