"""Export and import against skopeo and umoci: what we write they read, and vice versa."""

from __future__ import annotations

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
    assert ls == ["1"]
    bundle = tmp_path / "bundle"
    try:
        subprocess.run([umoci, "unpack", "--image", f"{layout}:1", str(bundle)], check=True,
                       capture_output=True)
        assert (bundle / "rootfs" / "etc" / "marker").read_text() == "isolate test image\n"
        runtime = json.loads((bundle / "config.json").read_text())
        assert runtime["process"]["args"] == ["/bin/sh", "-c", "true"]
    finally:
        subprocess.run(["rm", "-rf", str(bundle)], check=False)


def test_umoci_built_image_imports(tmp_path: Path, rootfs: Path) -> None:
    umoci = need("umoci")
    layout = tmp_path / "layout"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:base"], check=True)
    subprocess.run([umoci, "insert", "--image", f"{layout}:base", str(rootfs / "etc"),
                    "/etc"], check=True, capture_output=True)
    subprocess.run([umoci, "config", "--image", f"{layout}:base", "--config.cmd", "/bin/sh",
                    "--config.workingdir", "/etc"], check=True, capture_output=True)
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
