"""Mount points an image root adds keep the image's directory metadata: the mount-point layer
lies above the image's layers, so overlayfs shows its directories' mode and owner, and a
write below one copies that metadata up into the container's changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from isolate import Sandbox
from isolate.image import Store

pytestmark = pytest.mark.root


def test_a_mount_below_a_private_directory_leaves_its_mode(tmp_path: Path) -> None:
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "bin" / "stat").symlink_to("busybox")
    (root / "bin" / "touch").symlink_to("busybox")
    (root / "secret").mkdir()
    os.chmod(root / "secret", 0o700)
    os.chown(root / "secret", 123, 456)
    store = Store(tmp_path / "store")
    store.from_directory(root, "local/private:1")
    with Sandbox(image="local/private:1", store=store, readonly=False,
                 tmpfs=["/secret/scratch"], capabilities=["DAC_OVERRIDE"]) as sb:
        r = sb.run(["sh", "-c", "stat -c '%a %u %g' /secret; touch /secret/new"],
                   capture_output=True, text=True, check=True)
        upper = r.upper_dir
        assert upper is not None
        st = os.stat(os.path.join(upper, "secret"))
    assert r.stdout == "700 123 456\n"
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o700, 123, 456)
