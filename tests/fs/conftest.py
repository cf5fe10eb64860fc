"""Fixtures for layer tests: throwaway trees with a watched "outside", tar builders, overlays."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs_layer_helpers import Arena


@pytest.fixture
def work() -> Iterator[Path]:
    """A temporary directory removed when the test ends, also on failure."""
    path = Path(tempfile.mkdtemp(prefix="isolate-fs-test-"))
    try:
        yield path
    finally:
        _make_writable(path)
        shutil.rmtree(path)


def _make_writable(path: Path) -> None:
    # Tests extract read-only directories; rmtree needs to enter and empty them.
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)


@pytest.fixture
def arena(work: Path) -> Arena:
    return Arena(work)


@pytest.fixture
def overlay_mounts() -> Iterator[list[str]]:
    """Collects overlay mount points; each is unmounted when the test ends."""
    if os.geteuid() != 0:
        pytest.skip("mounting overlayfs needs root")
    mounted: list[str] = []
    try:
        yield mounted
    finally:
        # Keep unmounting after a failure; report the failures together.
        failed = [t for t in reversed(mounted) if subprocess.run(["umount", t]).returncode]
        assert not failed, f"could not unmount {failed}"
