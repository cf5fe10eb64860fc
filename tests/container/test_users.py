"""--user as Docker reads it: numbers, names from the image's own /etc/passwd and /etc/group
(never the host's), supplementary groups, HOME; and the lookup confined to the image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isolate.container import ContainerConfig, ContainerStore
from isolate.container.users import read_image_file, resolve_user
from isolate.errors import ConfigError
from isolate.image import Store

pytestmark = pytest.mark.root


def ids(cs: ContainerStore, image: str = "busybox", **options: object) -> list[str]:
    c = cs.create(ContainerConfig(image, ["sh", "-c", "id -u; id -g; id -G; echo $HOME; pwd"],
                                  **options))  # type: ignore[arg-type]
    c.start()
    assert c.wait(timeout=60).exit_code == 0
    lines = "".join(r.text for r in c.logs()).splitlines()
    primary, *supplementary = lines[2].split()
    # The kernel keeps supplementary groups sorted.
    lines[2] = " ".join([primary, *sorted(supplementary, key=int)])
    return lines


@pytest.mark.parametrize("user, expected", [
    (None, ["0", "0", "0", "/root"]),
    ("app", ["1000", "1000", "1000 29 50", "/home/app"]),
    ("www", ["33", "33", "33 50", "/var/www"]),
    ("1000", ["1000", "1000", "1000 29 50", "/home/app"]),
    ("4242", ["4242", "0", "0", "/"]),
    ("app:staff", ["1000", "50", "50", "/home/app"]),
    ("1000:29", ["1000", "29", "29", "/home/app"]),
])
def test_user_specs(containers: ContainerStore, user: str | None, expected: list[str]) -> None:
    assert ids(containers, user=user)[:4] == expected


def test_group_add_and_the_images_user_and_workdir(containers: ContainerStore) -> None:
    assert ids(containers, user="www", group_add=["audio", "7"])[2] == "33 7 29 50"
    lines = ids(containers, "busybox-user")
    assert lines == ["1000", "1000", "1000 29 50", "/home/app", "/home/app"]


def test_unknown_names_fail_at_create(containers: ContainerStore) -> None:
    with pytest.raises(ConfigError, match="unable to find user nobody-here"):
        containers.create(ContainerConfig("busybox", ["true"], user="nobody-here"))
    with pytest.raises(ConfigError, match="unable to find group nogroup"):
        containers.create(ContainerConfig("busybox", ["true"], user="app:nogroup"))
    with pytest.raises(ConfigError, match="Unable to find group nope"):
        containers.create(ContainerConfig("busybox", ["true"], group_add=["nope"]))


def test_lookup_never_leaves_the_image(tmp_path: Path) -> None:
    # A hostile image whose /etc/passwd is a symlink to the host's: read inside the layer,
    # it resolves to the layer's own /etc/shadow-like file or to nothing, never the host's.
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "passwd").symlink_to("/etc/shadow")
    (layer / "etc" / "group").symlink_to("../../../../../../etc/group")
    assert read_image_file([str(layer)], "/etc/passwd") is None
    assert read_image_file([str(layer)], "/etc/group") is None
    with pytest.raises(ConfigError):
        resolve_user("root", (), [str(layer)])


def test_layers_decide_top_down_with_whiteouts(tmp_path: Path, image_store: Store) -> None:
    low, high = tmp_path / "low", tmp_path / "high"
    for d in (low, high):
        (d / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_text("old:x:1:1::/old:/bin/sh\n")
    (low / "etc" / "group").write_text("g:x:5:\n")
    (high / "etc" / "passwd").write_text("new:x:2:2::/new:/bin/sh\n")
    os.mknod(high / "etc" / "group", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    assert resolve_user("new", (), [str(low), str(high)]).home == "/new"
    with pytest.raises(ConfigError):
        resolve_user("old", (), [str(low), str(high)])
    assert read_image_file([str(low), str(high)], "/etc/group") is None
