"""A group whose creator was killed before deleting it is cleaned up by the next create."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import isolate
from isolate.cgroups import CGroup

pytestmark = pytest.mark.root

SRC = os.path.dirname(os.path.dirname(isolate.__file__))


def test_group_of_a_killed_creator_is_swept_by_the_next_create() -> None:
    code = textwrap.dedent("""
        import os
        from isolate.cgroups import CGroup
        cg = CGroup.create()
        print(cg.path, flush=True)
        os._exit(0)          # killed before delete: the group stays behind
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=SRC),
                         capture_output=True, text=True, check=True).stdout.strip()
    orphan = CGroup.open(out)
    assert orphan.exists()
    with CGroup.create() as mine:
        assert not orphan.exists(), "the orphan of a dead creator was not removed"
        assert mine.exists()


def test_group_of_a_live_creator_is_left_alone() -> None:
    with CGroup.create() as first, CGroup.create() as second:
        assert first.exists() and second.exists()
