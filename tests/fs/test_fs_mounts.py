"""isolate.fs.mounts: mount records parsed from the strings the CLI and Sandbox take."""

from __future__ import annotations

import pytest

from isolate.errors import ConfigError
from isolate.fs.mounts import Bind


def test_bind_parse_is_read_only_by_default_and_says_that_is_not_dockers_default() -> None:
    assert Bind.parse("/etc:/x").readonly and not Bind.parse("/etc:/x:rw").readonly
    assert Bind.parse("/etc:/x:ro,dev").dev
    # The syntax is docker run -v's; the default is the sandbox's own, and the docstring
    # must not claim Docker's is read-only (Docker's -v is read-write unless :ro).
    doc = " ".join((Bind.parse.__doc__ or "").split())
    assert "Docker's ``-v`` is read-write unless ``ro``" in doc
    for bad in ("/etc", "/etc:/x:ro,rw", "/etc:/x:rx"):
        with pytest.raises(ConfigError):
            Bind.parse(bad)
