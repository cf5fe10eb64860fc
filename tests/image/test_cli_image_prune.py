"""Listing and removing images as Docker does: intermediate images hidden unless ``-a``,
``rmi`` deleting untagged parents and going on past a failure, an image a container uses kept,
``image prune`` and the ``image`` command group."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from isolate.cli import main
from isolate.errors import ImageError, ImageInUseError
from isolate.image import Image, ImageConfig, Store


def cli(store: Path, *args: str, capsys: pytest.CaptureFixture[str],
        group: tuple[str, ...] = ()) -> tuple[int, str, str]:
    code = main([*group, args[0], "--store", str(store), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def _chain(store: Store, rootfs_tar: Path, tmp_path: Path, ref: str,
           config: ImageConfig | None = None) -> tuple[Image, Image, Image]:
    """base (untagged) <- middle (untagged) <- top (tagged ``ref``): a build's step images."""
    base = store.import_tarball(rootfs_tar, None, config=config)
    images = [base]
    for n in (1, 2):
        upper = tmp_path / f"upper-{ref.replace(':', '-').replace('/', '-')}-{n}"
        upper.mkdir()
        (upper / f"step{n}").write_text(f"{ref} {n}\n")
        images.append(store.commit(images[-1], upper, ref if n == 2 else None,
                                   created_by=f"RUN step {n} of {ref}"))
    return images[0], images[1], images[2]


def _ids(out: str) -> list[str]:
    return out.split()


def test_parents_follow_history_and_layers(store: Store, rootfs_tar: Path,
                                           tmp_path: Path) -> None:
    base, middle, top = _chain(store, rootfs_tar, tmp_path, "app:1")
    assert store.parents() == {middle.id: base.id, top.id: middle.id}
    assert store.intermediates() == {base.id, middle.id}
    # Another image whose history begins the same way but whose layers differ is no child.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    unrelated = store.import_tarball(rootfs_tar, "solo:1", config=ImageConfig(cmd=["x"]))
    assert unrelated.id not in store.parents()


def test_images_hides_intermediates_unless_all(store: Store, rootfs_tar: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base, middle, top = _chain(store, rootfs_tar, tmp_path, "app:1")
    root = Path(store.root)
    _, out, _ = cli(root, "images", "-q", capsys=capsys)
    assert _ids(out) == [top.short_id]
    _, out, _ = cli(root, "images", "-a", "-q", capsys=capsys)
    assert sorted(_ids(out)) == sorted([base.short_id, middle.short_id, top.short_id])
    _, out, _ = cli(root, "images", "-a", capsys=capsys)
    assert [line.split()[:2] for line in out.splitlines()[1:]].count(["<none>", "<none>"]) == 2
    # The group's 'ls' is the same listing, and --format is Docker's template.
    code, out, err = cli(root, "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                         capsys=capsys, group=("image",))
    assert code == 0, err
    assert out == f"app:1 {top.short_id}\n"
    _, out, _ = cli(root, "images", "--format", "json", capsys=capsys)
    row = json.loads(out)
    assert row["Repository"] == "app" and row["Tag"] == "1" and row["ID"] == top.short_id


def test_images_filters(store: Store, rootfs_tar: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    labelled = store.import_tarball(rootfs_tar, "web/app:2",
                                    config=ImageConfig(labels={"tier": "front"}))
    plain = store.import_tarball(rootfs_tar, "db:1", config=ImageConfig(cmd=["db"]))
    dangling = store.import_tarball(rootfs_tar, None, config=ImageConfig(cmd=["gone"]))
    root = Path(store.root)

    def ids(*flags: str) -> set[str]:
        code, out, err = cli(root, "images", "-q", *flags, capsys=capsys)
        assert code == 0, err
        return set(_ids(out))

    assert ids("-f", "label=tier=front") == {labelled.short_id}
    assert ids("-f", "label=tier") == {labelled.short_id}
    assert ids("-f", "reference=web/*") == {labelled.short_id}
    assert ids("-f", "reference=db:1") == {plain.short_id}
    assert ids("db") == {plain.short_id}
    assert ids("-f", "dangling=true") == {dangling.short_id}
    assert ids("-f", "dangling=false") == {labelled.short_id, plain.short_id}
    for bad in ("colour=red", "dangling=maybe", "before=not-here:1"):
        code, out, err = cli(root, "images", "-f", bad, capsys=capsys)
        assert code == 125 and out == "" and len(err.splitlines()) == 1, (bad, err)
        assert "invalid filter" in err


def test_rmi_deletes_untagged_parents_and_says_so(store: Store, rootfs_tar: Path,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, middle, top = _chain(store, rootfs_tar, tmp_path, "app:1")
    keep_base, keep_middle, keep_top = _chain(store, rootfs_tar, tmp_path, "kept:1",
                                              config=ImageConfig(cmd=["k"]))
    store.tag(middle, "pinned:1")  # a name keeps a parent (and what is above it goes)
    code, out, err = cli(Path(store.root), "rmi", "app:1", capsys=capsys)
    assert code == 0, err
    assert out.splitlines() == ["Untagged: docker.io/library/app:1", f"Deleted: {top.id}"]
    store.get(middle.id)
    store.get(base.id)
    code, out, _ = cli(Path(store.root), "rmi", "pinned:1", capsys=capsys)
    assert out.splitlines() == ["Untagged: docker.io/library/pinned:1",
                                f"Deleted: {middle.id}", f"Deleted: {base.id}"]
    with pytest.raises(ImageError):
        store.get(base.id)
    # --no-prune keeps the parents (they are then dangling and listed).
    code, out, _ = cli(Path(store.root), "rmi", "--no-prune", "kept:1", capsys=capsys)
    assert out.splitlines() == ["Untagged: docker.io/library/kept:1", f"Deleted: {keep_top.id}"]
    _, out, _ = cli(Path(store.root), "images", "-q", capsys=capsys)
    assert _ids(out) == [keep_middle.short_id]
    store.get(keep_base.id)


def test_rmi_goes_on_past_a_failure(store: Store, rootfs_tar: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store.import_tarball(rootfs_tar, "one:1")
    code, out, err = cli(Path(store.root), "rmi", "nothere:1", "one:1", "Bad Ref",
                         capsys=capsys)
    assert code == 125
    assert out.splitlines()[0] == "Untagged: docker.io/library/one:1"
    assert len(err.splitlines()) == 2 and all(line.startswith("isolate: ")
                                              for line in err.splitlines())
    assert store.images() == []


def test_the_last_name_of_an_image_in_use_needs_force(store: Store, rootfs_tar: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    img = store.import_tarball(rootfs_tar, "used:1")
    store.tag(img, "used:2")
    store.hold(img, "container-abc")
    try:
        assert store.remove("used:2").untagged == ("docker.io/library/used:2",)
        with pytest.raises(ImageInUseError, match="must force"):
            store.remove("used:1")
        code, out, err = cli(Path(store.root), "rmi", "used:1", capsys=capsys)
        assert code == 125 and out == "" and "container-abc" in err
        code, out, err = cli(Path(store.root), "rmi", "-f", "used:1", capsys=capsys)
        assert code == 0 and out == "Untagged: docker.io/library/used:1\n", err
        store.get(img.id)  # untagged, kept while it is used
    finally:
        store.release("container-abc")


def test_image_prune(store: Store, rootfs_tar: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    base, middle, top = _chain(store, rootfs_tar, tmp_path, "app:1")
    dangling = store.import_tarball(rootfs_tar, None, config=ImageConfig(cmd=["d"]))
    keep_me = store.import_tarball(rootfs_tar, None,
                                   config=ImageConfig(cmd=["k"], labels={"keep": "yes"}))
    used = store.import_tarball(rootfs_tar, "used:1", config=ImageConfig(cmd=["u"]))
    store.hold(used, "container-xyz")
    root = Path(store.root)
    try:
        # Without -f it asks, and anything but y keeps all.
        monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
        code, out, _ = cli(root, "prune", capsys=capsys, group=("image",))
        assert code == 0 and "Are you sure you want to continue? [y/N]" in out
        assert len(store.images()) == 6
        # A filter leaves the images it does not choose, dangling or not.
        code, out, err = cli(root, "prune", "-f", "--filter", "label!=keep", capsys=capsys,
                             group=("image",))
        assert code == 0, err
        assert f"deleted: {dangling.id}" in out.splitlines()
        assert out.splitlines()[-1].startswith("Total reclaimed space: ")
        left = {img.id for img in store.images()}
        assert dangling.id not in left and keep_me.id in left
        assert {top.id, middle.id, base.id, used.id} <= left  # tagged, and its parents
        # -a: every image no container uses.
        monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
        code, out, err = cli(root, "prune", "-a", capsys=capsys, group=("image",))
        assert code == 0, err
        assert "untagged: docker.io/library/app:1" in out.splitlines()
        assert {img.id for img in store.images()} == {used.id}
        assert store.df().reclaimable == 0
        code, out, _ = cli(root, "prune", "-f", capsys=capsys, group=("image",))
        assert out == "Total reclaimed space: 0B\n"
    finally:
        store.release("container-xyz")


def test_the_image_group_has_dockers_commands(store: Store, rootfs_tar: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    img = store.import_tarball(rootfs_tar, "grp:1", config=ImageConfig(cmd=["/bin/true"]))
    root = Path(store.root)
    code, out, err = cli(root, "inspect", "-f", "{{.Id}}", "grp:1", capsys=capsys,
                         group=("image",))
    assert (code, out) == (0, f"{img.id}\n"), err
    code, out, err = cli(root, "history", "grp:1", capsys=capsys, group=("image",))
    assert code == 0 and out.splitlines()[0].split()[:2] == ["IMAGE", "CREATED"], err
    assert cli(root, "tag", "grp:1", "grp:2", capsys=capsys, group=("image",))[0] == 0
    code, out, _ = cli(root, "rm", "grp:1", "grp:2", capsys=capsys, group=("image",))
    assert out.splitlines() == ["Untagged: docker.io/library/grp:1",
                                "Untagged: docker.io/library/grp:2", f"Deleted: {img.id}"]
    code, _, err = cli(root, "frobnicate", capsys=capsys, group=("image",))
    assert code == 125 and len(err.splitlines()) == 1
