"""Pull and push against a real docker-registry on 127.0.0.1 (images built and pushed here)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from isolate.errors import DigestMismatch, ImageError
from isolate.image import (
    ImageConfig,
    ImageNotFound,
    Progress,
    RegistryUnreachable,
    Store,
    Unauthorized,
)
from isolate.image.registry import RegistryClient

from .conftest import Registry, docker_config, free_port, python_child, skopeo, unique_tar

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def seeded(registry: Registry, rootfs_tar: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, str]:
    """Push test images with skopeo: a single-platform one and a two-platform index."""
    work = tmp_path_factory.mktemp("seed")
    store = Store(str(work / "store"))
    amd = store.import_tarball(rootfs_tar, "seed/amd:1", config=ImageConfig(cmd=["amd64"]))
    arm = store.import_tarball(rootfs_tar, "seed/arm:1", config=ImageConfig(cmd=["arm64"]),
                               platform="linux/arm64/v8")
    store.save("seed/amd:1", work / "single", format="oci")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{work / 'single'}:docker.io/seed/amd:1",
           f"docker://{registry.host}/test/busybox:1")
    store.save(["seed/amd:1", "seed/arm:1"], work / "multi", format="oci")
    # Our layout holds two manifests; make them one index for skopeo copy --all.
    index = json.loads((work / "multi" / "index.json").read_text())
    sub = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": [{k: v for k, v in m.items() if k != "annotations"}
                                    for m in index["manifests"]]}).encode()
    import hashlib
    digest = "sha256:" + hashlib.sha256(sub).hexdigest()
    (work / "multi" / "blobs" / "sha256" / digest[7:]).write_bytes(sub)
    (work / "multi" / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
            "size": len(sub), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{work / 'multi'}:multi",
           f"docker://{registry.host}/test/multi:1")
    return {"amd_id": amd.id, "arm_id": arm.id}


def test_pull_by_tag_fetches_verifies_and_tags(registry: Registry, seeded: dict[str, str],
                                               store: Store) -> None:
    events: list[Progress] = []
    img = store.pull(f"{registry.host}/test/busybox:1", progress=events.append)
    assert img.config.cmd == ("amd64",)
    assert f"{registry.host}/test/busybox:1" in img.tags
    assert f"{registry.host}/test/busybox@{img.manifest_digest}" in img.tags
    assert {e.kind for e in events} == {"manifest", "config", "layer"}
    assert any(e.state == "done" and e.kind == "layer" for e in events)
    store.verify(img)
    assert Path(store.layer_dirs(img)[0], "etc", "marker").exists()
    # A second pull fetches nothing.
    events.clear()
    store.pull(f"{registry.host}/test/busybox:1", progress=events.append)
    assert {e.state for e in events if e.kind != "manifest"} == {"exists"}


def test_pull_selects_platform_from_index(registry: Registry, seeded: dict[str, str],
                                          store: Store) -> None:
    amd = store.pull(f"{registry.host}/test/multi:1")
    arm = store.pull(f"{registry.host}/test/multi:1", platform="linux/arm64")
    assert amd.config.cmd == ("amd64",)
    assert arm.config.cmd == ("arm64",)
    assert str(arm.platform) == "linux/arm64/v8"
    with pytest.raises(ImageError, match="no manifest for platform linux/s390x"):
        store.pull(f"{registry.host}/test/multi:1", platform="linux/s390x")


def test_pull_by_digest(registry: Registry, seeded: dict[str, str], store: Store) -> None:
    img = store.pull(f"{registry.host}/test/busybox:1")
    again = Store(os.path.join(store.root, "..", "other"))
    pinned = again.pull(f"{registry.host}/test/busybox@{img.manifest_digest}")
    assert pinned.id == img.id


def test_unknown_image_is_image_not_found(registry: Registry, store: Store) -> None:
    with pytest.raises(ImageNotFound, match="unknown image"):
        store.pull(f"{registry.host}/test/nothere:1")


def test_closed_port_is_registry_unreachable(store: Store) -> None:
    with pytest.raises(RegistryUnreachable, match="unreachable"):
        store.pull(f"127.0.0.1:{free_port()}/test/x:1")


def test_plain_http_only_for_loopback_or_named_insecure() -> None:
    assert RegistryClient("127.0.0.1:5000").allow_http
    assert RegistryClient("localhost:5000").allow_http
    assert RegistryClient("[::1]:5000").allow_http
    assert not RegistryClient("registry.example:5000").allow_http
    assert RegistryClient("registry.example:5000",
                          insecure=("registry.example:5000",)).allow_http


def test_corrupted_registry_blob_is_digest_mismatch(registry: Registry, rootfs_tar: Path,
                                                    store: Store, tmp_path: Path) -> None:
    src = Store(str(tmp_path / "src"))
    img = src.import_tarball(unique_tar(tmp_path), "c/c:1")
    src.push(img, f"{registry.host}/test/corrupt:1")
    data = registry.blob_data_path(img.layers[0].digest)
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(DigestMismatch) as info:
        store.pull(f"{registry.host}/test/corrupt:1")
    assert info.value.expected == img.layers[0].digest
    assert not store.has_blob(img.layers[0].digest)
    assert os.listdir(os.path.join(store.root, "partial")) == []


def test_push_then_skopeo_sees_same_manifest(registry: Registry, rootfs_tar: Path,
                                             store: Store) -> None:
    img = store.import_tarball(rootfs_tar, "p/p:1", config=ImageConfig(cmd=["pushed"]))
    digest = store.push(img, f"{registry.host}/test/pushed:1")
    assert digest == img.manifest_digest
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/test/pushed:1").stdout)
    assert info["Digest"] == digest
    # Pushing again uploads nothing new.
    events: list[Progress] = []
    store.push(img, f"{registry.host}/test/pushed:1", progress=events.append)
    assert {e.state for e in events if e.kind != "manifest"} == {"exists"}


PULL_AND_DIE = """
import os, signal, sys
from isolate.image import Store
store = Store(sys.argv[1])
def progress(ev):
    if ev.kind == "layer" and ev.state == "downloading" and 0 < ev.done < ev.total:
        os.kill(os.getpid(), signal.SIGKILL)
store.pull(sys.argv[2], progress=progress, max_workers=1)
"""


def test_pull_killed_half_way_resumes_and_verifies(registry: Registry, rootfs_tar: Path,
                                                   tmp_path: Path) -> None:
    src = Store(str(tmp_path / "src"))
    img = src.import_tarball(unique_tar(tmp_path), "r/r:1")
    ref = f"{registry.host}/test/resume:1"
    src.push(img, ref)
    store_dir = str(tmp_path / "dst")
    child = python_child(PULL_AND_DIE, store_dir, ref)
    _out, err = child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    store = Store(store_dir)
    partial = os.listdir(os.path.join(store_dir, "partial"))
    assert partial == [img.layers[0].digest[7:]]
    assert not store.has_blob(img.layers[0].digest)  # nothing half-written is visible
    events: list[Progress] = []
    pulled = store.pull(ref, progress=events.append)
    resumed = [e for e in events if e.state == "resumed"]
    assert resumed and resumed[0].done > 0
    store.verify(pulled)
    assert pulled.id == img.id


CONCURRENT_PULL = """
import sys
from isolate.image import Store
img = Store(sys.argv[1]).pull(sys.argv[2])
print(img.id)
"""


def test_two_processes_pull_one_image_into_one_store(registry: Registry, seeded: dict[str, str],
                                                     tmp_path: Path) -> None:
    store_dir = str(tmp_path / "shared")
    ref = f"{registry.host}/test/busybox:1"
    children = [python_child(CONCURRENT_PULL, store_dir, ref) for _ in range(2)]
    results = [c.communicate() for c in children]
    for child, (_out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err.decode()
    ids = {out.decode().strip() for out, _ in results}
    assert ids == {seeded["amd_id"]}
    store = Store(store_dir)
    store.verify(store.get(ref))
    assert store.df().blobs == 3  # one config, one layer, one manifest: shared, not doubled


def test_basic_auth_needs_credentials(auth_registry: Registry, rootfs_tar: Path,
                                      tmp_path: Path) -> None:
    assert auth_registry.user is not None and auth_registry.password is not None
    store = Store(str(tmp_path / "s"))
    img = store.import_tarball(rootfs_tar, "a/a:1", config=ImageConfig(cmd=["auth"]))
    ref = f"{auth_registry.host}/test/private:1"
    nobody = str(tmp_path / "missing-config.json")
    with pytest.raises(Unauthorized, match="needs a user name"):
        store.push(img, ref, auth_file=nobody)
    (tmp_path / "w").mkdir()
    wrong = docker_config(tmp_path / "w", auth_registry.host, "tester", "wrong")
    with pytest.raises(Unauthorized, match="refused"):
        store.push(img, ref, auth_file=wrong)
    good = docker_config(tmp_path, auth_registry.host, auth_registry.user,
                         auth_registry.password)
    store.push(img, ref, auth_file=good)
    other = Store(str(tmp_path / "other"))
    with pytest.raises(Unauthorized):
        other.pull(ref, auth_file=nobody)
    assert other.pull(ref, auth_file=good).id == img.id


# ---- zstd layers with a default install (issue 8, item 12)


@pytest.fixture(scope="module")
def zstd_image(registry: Registry, rootfs: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> str:
    """A one-layer image whose layer is zstd-compressed, pushed to the registry."""
    src = Store(tmp_path_factory.mktemp("zstdsrc") / "store")
    img = src.commit(None, rootfs, "local/zstd:1", compression="zstd")
    assert img.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    target = f"{registry.host}/test/zstd:{os.urandom(3).hex()}"
    src.push(img, target)
    return target


def test_a_default_install_pulls_and_unpacks_zstd_layers(zstd_image: str, store: Store) -> None:
    import importlib.metadata

    # Installed without extras, the distribution brings zstandard where Python lacks zstd.
    requires = importlib.metadata.requires("isolate-linux") or []
    assert any(r.startswith("zstandard") and "python_version" in r and "3.14" in r
               for r in requires), requires
    img = store.pull(zstd_image)
    [layer] = store.layer_dirs(img)
    assert Path(layer, "etc", "marker").read_text() == "isolate test image\n"


def test_without_zstd_support_a_zstd_pull_fails_at_pull_not_at_run(zstd_image: str,
                                                                 tmp_path: Path) -> None:
    code = """
import os, sys
sys.modules["zstandard"] = None  # as if neither were installed
sys.modules["compression.zstd"] = None
from isolate.errors import UnsupportedError
from isolate.image import Store
store = Store(sys.argv[1])
try:
    store.pull(sys.argv[2])
except UnsupportedError as exc:
    print("refused:", exc)
print("images:", len(store.images()), "blobs:", len(os.listdir(sys.argv[1] + "/blobs/sha256")))
"""
    child = python_child(code, str(tmp_path / "store"), zstd_image)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("refused:") and "zstd" in lines[0]
    assert lines[1] == "images: 0 blobs: 0"  # nothing fetched: no layer, not even the config
