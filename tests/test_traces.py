"""The leave-no-trace check itself (tests/traces.py) sees what it is meant to: here, the
temporary directories a test leaves in /tmp, /var/tmp and /dev/shm."""

from __future__ import annotations

import os
import tempfile

import pytest

from traces import snapshot


@pytest.mark.parametrize("top", ["/tmp", "/var/tmp", "/dev/shm"])
def test_a_temporary_directory_left_behind_is_a_trace_and_a_removed_one_is_not(
        top: str) -> None:
    if not os.path.isdir(top) or not os.access(top, os.W_OK):
        pytest.skip(f"{top} is not a writable directory here")
    before = snapshot()
    for made in (tempfile.mkdtemp(dir=top), tempfile.mkdtemp(prefix="isolate-x-", dir=top)):
        try:
            assert f"temp: {made}" in snapshot().left_since(before)
        finally:
            os.rmdir(made)
    assert not [t for t in snapshot().left_since(before) if t.startswith("temp: ")]
