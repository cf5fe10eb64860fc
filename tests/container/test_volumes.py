"""Volumes: created on first use and seeded from the image as Docker does, shared, kept after
the container, removed with it when anonymous and asked, pruned, and refused removal while in
use. Binds and tmpfs as Docker parses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isolate.container import (
    BindMount,
    ContainerConfig,
    ContainerStore,
    Volume,
    VolumeMount,
    parse_volume,
)
from isolate.errors import ConfigError, ConflictError, NotFoundError

pytestmark = pytest.mark.root


def run(cs: ContainerStore, script: str, image: str = "busybox", **options: object) -> str:
    c = cs.create(ContainerConfig(image, ["sh", "-c", script],
                                  **options))  # type: ignore[arg-type]
    c.start()
    assert c.wait(timeout=60).exit_code == 0, "".join(r.text for r in c.logs())
    return "".join(r.text for r in c.logs())


def test_a_named_volume_is_made_seeded_shared_and_kept(containers: ContainerStore) -> None:
    out = run(containers, "cat /data/seed.txt /data/sub/deep.txt; echo new > /data/new",
              mounts=["shared-vol:/data"])
    assert out == "from the image\ndeep\n"
    vol = containers.volumes.get("shared-vol")
    assert not vol.anonymous and sorted(os.listdir(vol.mountpoint)) == ["new", "seed.txt", "sub"]
    # A second container sees the first one's writes (and is not seeded again).
    assert run(containers, "cat /data/new; ls /data", mounts=["shared-vol:/data"]) == \
        "new\nnew\nseed.txt\nsub\n"
    for c in containers.list(all=True):
        c.remove()
    assert Volume.get("shared-vol", store=containers.images).name == "shared-vol"


def test_nocopy_and_read_only_volumes(containers: ContainerStore) -> None:
    out = run(containers, "ls /data | wc -l; touch /data/x 2>/dev/null || echo ro",
              mounts=[VolumeMount("empty-vol", "/data", readonly=True, nocopy=True)])
    assert out.split() == ["0", "ro"]


def test_the_images_volumes_are_anonymous_and_go_with_rm_v(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox-vol", ["sh", "-c", "cat /data/seed.txt"]))
    c.start()
    c.wait(timeout=60)
    name = c.volumes["/data"]
    vol = containers.volumes.get(name)
    assert vol.anonymous and len(name) == 64
    assert "".join(r.text for r in c.logs()) == "from the image\n"
    assert vol.users() == [c.id]
    with pytest.raises(ConflictError, match=f"remove {name}: volume is in use"):
        vol.remove()
    c.remove(volumes=True)
    with pytest.raises(NotFoundError):
        containers.volumes.get(name)


def test_rm_without_v_keeps_them_for_prune(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox-vol", ["true"]))
    name = c.volumes["/data"]
    Volume.create("kept-named", store=containers.images)
    c.remove()
    assert containers.volumes.get(name).users() == []
    removed = Volume.prune(store=containers.images)
    assert name in removed and "kept-named" not in removed
    assert "kept-named" in Volume.prune(all=True, store=containers.images)


def test_force_removes_a_volume_in_use(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["true"], mounts=["forced-vol:/v"]))
    with pytest.raises(ConflictError):
        containers.volumes.remove("forced-vol")
    containers.volumes.remove("forced-vol", force=True)
    c.remove()


def test_bind_mounts_read_only_and_read_write(containers: ContainerStore,
                                              tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("host file\n")
    out = run(containers, "cat /ro/in.txt; touch /ro/x 2>/dev/null || echo ro; "
              "echo written > /rw/out.txt",
              mounts=[f"{host}:/ro:ro", BindMount(str(host), "/rw")])
    assert out == "host file\nro\n"
    assert (host / "out.txt").read_text() == "written\n"
    made = tmp_path / "made-by-v"
    run(containers, "touch /m/x", mounts=[f"{made}:/m"])  # -v makes a missing host dir
    assert (made / "x").exists()
    with pytest.raises(ConfigError, match="bind source path does not exist"):
        containers.create(ContainerConfig("busybox", ["true"], mounts=[
            BindMount(str(tmp_path / "missing"), "/m")]))


def test_docker_volume_specs_parse() -> None:
    assert parse_volume("/ctr") == VolumeMount(None, "/ctr")
    assert parse_volume("data:/ctr:ro,nocopy") == VolumeMount("data", "/ctr", True, True)
    bind = parse_volume("/host:/ctr:ro")
    assert isinstance(bind, BindMount) and bind.readonly and bind.create
    for bad in ("", "a:b:c:d", "data:relative", "bad name!:/x", "/h:/c:xx"):
        with pytest.raises(ConfigError):
            parse_volume(bad)
    with pytest.raises(ConfigError, match="Duplicate mount point"):
        ContainerConfig("busybox", mounts=["/x", "vol:/x"])
