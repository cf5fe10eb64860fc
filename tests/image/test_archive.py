"""Export and import against skopeo and umoci: what we write they read, and vice versa."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from isolate.errors import ImageError
from isolate.image import ImageConfig, Store

from .conftest import need, skopeo

CFG = ImageConfig(env=["PATH=/bin"], entrypoint=["/bin/sh"], cmd=["-c", "true"],
                  labels={"org.example": "yes"}, exposed_ports=["8080/tcp"])


@pytest.fixture
def image(store: Store, rootfs_tar: Path):  # type: ignore[no-untyped-def]
    return store.import_tarball(rootfs_tar, "test/busybox:1", config=CFG)


def test_docker_archive_is_read_by_skopeo_and_loads_back(store: Store, image, tmp_path: Path
                                                         ) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "img.tar"
    store.save("test/busybox:1", out)
    info = json.loads(skopeo("inspect", f"docker-archive:{out}").stdout)
    assert info["Labels"] == {"org.example": "yes"}
    assert info["Layers"]  # skopeo lists the (uncompressed) layer digests
    # skopeo converts it to an OCI layout; we import that.
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path / 'oci'}:v1")
    other = Store(str(tmp_path / "store2"))
    [loaded] = other.load(tmp_path / "oci", "test/again:v1")
    # skopeo re-encodes the config JSON (so the id differs); its content survives.
    assert loaded.config == CFG
    assert loaded.diff_ids == image.diff_ids


def test_oci_layout_is_unpacked_by_umoci(store: Store, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    umoci = need("umoci")
    layout = tmp_path / "layout"
    store.save("test/busybox:1", layout, format="oci")
    ls = subprocess.run([umoci, "ls", "--layout", str(layout)], check=True,
                        capture_output=True, text=True).stdout.split()
    assert ls == ["docker.io/test/busybox:1"]  # the full reference names it
    bundle = tmp_path / "bundle"
    try:
        subprocess.run([umoci, "unpack", "--image", f"{layout}:docker.io/test/busybox:1",
                        str(bundle)], check=True, capture_output=True)
        assert (bundle / "rootfs" / "etc" / "marker").read_text() == "isolate test image\n"
        runtime = json.loads((bundle / "config.json").read_text())
        assert runtime["process"]["args"] == ["/bin/sh", "-c", "true"]
    finally:
        subprocess.run(["rm", "-rf", str(bundle)], check=False)


def umoci_image(layout: Path, tag: str, inserts: list[tuple[Path, str]],
                config: list[str] | None = None, *, history: bool = True) -> str:
    """Build an image with umoci: ``umoci insert`` each (source, target), then ``umoci config``
    with ``config`` (if given). Returns the umoci binary."""
    umoci = need("umoci")
    image = f"{layout}:{tag}"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", image], check=True)
    for source, target in inserts:
        subprocess.run([umoci, "insert", *([] if history else ["--no-history"]), "--image",
                        image, str(source), target], check=True, capture_output=True)
    if config is not None:
        subprocess.run([umoci, "config", "--image", image, *config], check=True,
                       capture_output=True)
    return umoci


def test_umoci_built_image_imports(tmp_path: Path, rootfs: Path) -> None:
    layout = tmp_path / "layout"
    umoci_image(layout, "base", [(rootfs / "etc", "/etc")],
                ["--config.cmd", "/bin/sh", "--config.workingdir", "/etc"])
    store = Store(tmp_path / "store")
    [img] = store.load(layout, "umoci/made:base")
    assert img.config.cmd == ("/bin/sh",)
    assert img.config.working_dir == "/etc"
    assert img.tags == ("docker.io/umoci/made:base",)
    store.verify(img)


def test_oci_archive_round_trip_through_skopeo(store: Store, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "img.oci.tar"
    store.save(image, out, format="oci-archive")
    skopeo("copy", f"oci-archive:{out}", f"docker-archive:{tmp_path / 'd.tar'}:x/y:z")
    other = Store(str(tmp_path / "store2"))
    [loaded] = other.load(tmp_path / "d.tar")
    assert loaded.tags == ("docker.io/x/y:z",)
    assert loaded.config == CFG


def test_oci_layout_without_ref_loads_with_annotation_name(store: Store, image,
                                                           tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "layout"
    store.save("test/busybox:1", layout, format="oci")
    other = Store(str(tmp_path / "store2"))
    [loaded] = other.load(layout)
    assert loaded.tags == ("docker.io/test/busybox:1",)


def test_load_of_unknown_format_says_so(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="not an OCI image layout"):
        store.load(tmp_path / "empty")


def test_save_refuses_non_empty_directory(store: Store, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ImageError, match="not an empty directory"):
        store.save("test/busybox:1", tmp_path / "full", format="oci")


# ---- images for several platforms in one layout (issue 8, item 10)


def _multi_platform_layout(store: Store, rootfs_tar: Path, tmp_path: Path, *,
                           nested: bool) -> Path:
    """A layout holding one image for linux/amd64 and linux/arm64/v8 (its Cmd says which):
    as a nested index, as ``skopeo copy --all`` writes it, or as two top-level entries with
    one name."""
    store.import_tarball(rootfs_tar, "seed/amd:1", config=ImageConfig(cmd=["amd64"]),
                         platform="linux/amd64")
    store.import_tarball(rootfs_tar, "seed/arm:1", config=ImageConfig(cmd=["arm64"]),
                         platform="linux/arm64/v8")
    layout = tmp_path / "multi"
    store.save(["seed/amd:1", "seed/arm:1"], layout, format="oci")
    index = json.loads((layout / "index.json").read_text())
    variants = [{k: v for k, v in m.items() if k != "annotations"} for m in index["manifests"]]
    names = {"org.opencontainers.image.ref.name": "multi"}
    if nested:
        sub = json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": variants}).encode()
        digest = "sha256:" + hashlib.sha256(sub).hexdigest()
        (layout / "blobs" / "sha256" / digest[7:]).write_bytes(sub)
        entries = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                    "size": len(sub), "annotations": names}]
    else:
        entries = [dict(v, annotations=names) for v in variants]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return layout


@pytest.mark.parametrize("nested", [True, False])
def test_load_of_a_multi_platform_image_takes_the_hosts_platform(
        store: Store, rootfs_tar: Path, tmp_path: Path, nested: bool) -> None:
    from isolate.image.reference import host_platform

    if host_platform().architecture not in ("amd64", "arm64"):
        pytest.skip("the layout offers amd64 and arm64 only")
    layout = _multi_platform_layout(store, rootfs_tar, tmp_path, nested=nested)
    other = Store(tmp_path / "other")
    [img] = other.load(layout, "x/multi:1")
    assert img.config.cmd == (host_platform().architecture,)
    assert img.tags == ("docker.io/x/multi:1",)
    assert other.get("x/multi:1").id == img.id  # the name is on the host's variant
    assert len(other.images()) == 1  # the other platform was not loaded at all

    [arm] = other.load(layout, "x/multi:arm", platform="linux/arm64")
    assert arm.config.cmd == ("arm64",) and arm.platform.architecture == "arm64"
    with pytest.raises(ImageError, match=r"no manifest for platform linux/s390x.*offers"):
        other.load(layout, "x/multi:2", platform="linux/s390x")


def test_running_an_image_for_another_platform_is_a_clear_error(
        store: Store, rootfs_tar: Path, tmp_path: Path) -> None:
    from isolate.image._binfmt import handler_for
    from isolate.image.reference import host_platform

    from .test_cli_images import isolate_cmd

    foreign = next((a for a in ("s390x", "riscv64", "ppc64le", "arm64", "amd64")
                    if a != host_platform().architecture and handler_for(a) is None), None)
    if foreign is None:
        pytest.skip("this host has binfmt_misc handlers for every architecture tried")
    store.import_tarball(rootfs_tar, "local/foreign:1", platform=f"linux/{foreign}",
                         config=ImageConfig(cmd=["/bin/true"]))
    r = isolate_cmd("run", "--store", store.root, "local/foreign:1")
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert f"linux/{foreign}" in r.stderr and "binfmt_misc" in r.stderr


def _binfmt_tree(root: Path, *, flags: str, status: str = "enabled") -> Path:
    root.mkdir()
    (root / "status").write_text(status + "\n")
    (root / "register").write_text("")
    # What qemu-user-static registers for aarch64 ELF programs.
    (root / "qemu-aarch64").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
        f"flags: {flags}\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n"
        "mask ffffffffffffff00fffffffffffffffffeffffff\n")
    (root / "python3.11").write_text("enabled\ninterpreter /usr/bin/python3.11\nflags: \n"
                                     "offset 0\nmagic a70d0d0a\n")
    return root


def test_a_binfmt_handler_with_the_fix_flag_lets_a_foreign_image_run(tmp_path: Path) -> None:
    from isolate.errors import UnsupportedError
    from isolate.image import Platform
    from isolate.image._binfmt import check_runnable, handler_for

    amd = Platform("linux", "amd64")
    arm = Platform("linux", "arm64", "v8")
    tree = _binfmt_tree(tmp_path / "fixed", flags="POCF")
    assert handler_for("arm64", str(tree)) == ("qemu-aarch64",
                                               "/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
    check_runnable(arm, host=amd, binfmt_dir=str(tree))
    assert handler_for("riscv64", str(tree)) is None
    with pytest.raises(UnsupportedError, match=r"riscv64.*binfmt_misc"):
        check_runnable(Platform("linux", "riscv64"), host=amd, binfmt_dir=str(tree))
    # Without F the interpreter is looked up inside the container's root: refused, saying so.
    with pytest.raises(UnsupportedError, match="lacks the F flag"):
        check_runnable(arm, host=amd, binfmt_dir=str(_binfmt_tree(tmp_path / "nofix",
                                                                   flags="POC")))
    off = _binfmt_tree(tmp_path / "off", flags="F", status="disabled")
    with pytest.raises(UnsupportedError, match="no binfmt_misc handler"):
        check_runnable(arm, host=amd, binfmt_dir=str(off))
    # The host's own architecture and 32-bit x86 on x86-64 need nothing.
    check_runnable(amd, host=amd, binfmt_dir=str(tmp_path / "absent"))
    check_runnable(Platform("linux", "386"), host=amd, binfmt_dir=str(tmp_path / "absent"))
    with pytest.raises(UnsupportedError, match="only linux"):
        check_runnable(Platform("windows", "amd64"), host=amd)


# ---- names (issue 8, item 13)


def test_two_images_with_one_tag_are_two_names_to_umoci(store: Store, rootfs_tar: Path,
                                                        tmp_path: Path) -> None:
    umoci = need("umoci")
    store.import_tarball(rootfs_tar, "one/app:1", config=ImageConfig(cmd=["one"]))
    store.import_tarball(rootfs_tar, "two/app:1", config=ImageConfig(cmd=["two"]))
    layout = tmp_path / "layout"
    store.save(["one/app:1", "two/app:1"], layout, format="oci")
    listed = subprocess.run([umoci, "ls", "--layout", str(layout)], check=True,
                            capture_output=True, text=True).stdout.split()
    assert sorted(listed) == ["docker.io/one/app:1", "docker.io/two/app:1"]
    for who in ("one", "two"):
        bundle = tmp_path / f"bundle-{who}"
        try:
            subprocess.run([umoci, "unpack", "--rootless", "--image",
                            f"{layout}:docker.io/{who}/app:1", str(bundle)], check=True,
                           capture_output=True)
            spec = json.loads((bundle / "config.json").read_text())
            assert spec["process"]["args"] == [who]
        finally:
            subprocess.run(["rm", "-rf", str(bundle)], check=False)
    # And they load back as two names.
    other = Store(tmp_path / "other")
    loaded = other.load(layout)
    assert sorted(t for i in loaded for t in i.tags) == ["docker.io/one/app:1",
                                                         "docker.io/two/app:1"]


def test_load_reports_the_archives_names_not_every_name_the_image_had(
        store: Store, rootfs_tar: Path, tmp_path: Path) -> None:
    img = store.import_tarball(rootfs_tar, "mine/app:1")
    store.tag(img, "mine/app:other")
    archive = tmp_path / "app.tar"
    store.save("mine/app:1", archive)
    [loaded] = store.load(archive)  # into the same store, where it has two names
    assert loaded.tags == ("docker.io/mine/app:1",)
    assert store.get("mine/app:other").id == img.id  # still there, just not reported


def test_a_tagged_name_for_a_layout_of_several_images_is_refused_not_dropped(
        store: Store, rootfs_tar: Path, tmp_path: Path) -> None:
    from isolate.errors import ConfigError

    store.import_tarball(rootfs_tar, "src/a:1", config=ImageConfig(cmd=["a"]))
    store.import_tarball(rootfs_tar, "src/b:2", config=ImageConfig(cmd=["b"]))
    layout = tmp_path / "two"
    store.save(["src/a:1", "src/b:2"], layout, format="oci")
    other = Store(tmp_path / "other")
    with pytest.raises(ConfigError, match="holds 2 images"):
        other.load(layout, "x/y:z")
    assert other.images() == []
    # A repository without a tag: each image keeps its own tag under it.
    loaded = other.load(layout, "x/y")
    assert sorted(t for i in loaded for t in i.tags) == ["docker.io/x/y:1", "docker.io/x/y:2"]
    assert other.get("x/y:2").config.cmd == ("b",)


# ---- commit keeps the base's history (issue 8, item 11)


def _umoci_stat(umoci: str, store: Store, ref: str, tmp_path: Path) -> list[dict[str, object]]:
    layout = tmp_path / f"stat-{ref.replace('/', '_').replace(':', '_')}"
    store.save(ref, layout, format="oci")
    out = subprocess.run([umoci, "stat", "--json", "--image",
                          f"{layout}:{store.get(ref).tags[0]}"],
                         check=True, capture_output=True, text=True).stdout
    history: list[dict[str, object]] = json.loads(out)["history"]
    return history


def test_commit_keeps_the_base_history_and_adds_one_entry(tmp_path: Path, rootfs: Path) -> None:
    # A base made by umoci: two layers (umoci insert), an empty-layer entry (umoci config).
    layout = tmp_path / "base"
    umoci = umoci_image(layout, "base", [(rootfs / "etc", "/etc"), (rootfs / "bin", "/bin")],
                        ["--config.cmd", "/bin/sh"])
    store = Store(tmp_path / "store")
    [base] = store.load(layout, "made/base:1")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "added").write_text("new\n")
    img = store.commit(base, upper, "made/top:1", author="Ada <ada@example.org>",
                       message="add a file", created_by="isolate commit test",
                       changes={"cmd": ["/bin/echo", "hi"], "env": ["A=1"]})
    assert len(img.layers) == 3
    assert img.config.cmd == ("/bin/echo", "hi") and img.config.env == ("A=1",)
    assert store.get("made/base:1").config.cmd == ("/bin/sh",)  # the base is untouched

    config = json.loads(store.read_blob(img.id))
    base_history = json.loads(store.read_blob(base.id))["history"]
    assert config["history"][:3] == base_history  # the whole history, empty entry included
    assert config["history"][3]["created_by"] == "isolate commit test"
    assert config["history"][3]["author"] == "Ada <ada@example.org>"
    assert config["history"][3]["comment"] == "add a file"
    assert config["author"] == "Ada <ada@example.org>"

    # umoci pairs each non-empty history entry with a layer, in order: all line up.
    stat = _umoci_stat(umoci, store, "made/top:1", tmp_path)
    assert [h["created_by"] for h in stat] == ["umoci insert", "umoci insert", "umoci config",
                                                "isolate commit test"]
    assert [h["diff_id"] for h in stat if not h.get("empty_layer")] == list(img.diff_ids)
    # A commit on the commit adds one more.
    again = store.commit(img, upper, "made/again:1")
    history = json.loads(store.read_blob(again.id))["history"]
    assert len(history) == 5 and history[-1]["created_by"] == "isolate commit"


def test_commit_of_a_base_without_history_gets_entries_for_its_layers(
        store: Store, rootfs: Path, tmp_path: Path) -> None:
    from isolate.errors import ConfigError

    # skopeo and others may drop history: a base whose config has none.
    layout = tmp_path / "nohistory"
    umoci = umoci_image(layout, "b", [(rootfs / "etc", "/etc")], history=False)
    [base] = store.load(layout, "nohist/base:1")
    assert "history" not in json.loads(store.read_blob(base.id)) or not json.loads(
        store.read_blob(base.id))["history"]
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("x")
    img = store.commit(base, upper, "nohist/top:1")
    stat = _umoci_stat(umoci, store, "nohist/top:1", tmp_path)
    assert [h["diff_id"] for h in stat if not h.get("empty_layer")] == list(img.diff_ids)
    with pytest.raises(ConfigError, match="no field"):
        store.commit(base, upper, None, changes={"command": ["x"]})
