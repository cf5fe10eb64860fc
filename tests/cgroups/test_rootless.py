"""Rootless use: without delegation a clear UnsupportedError; on v2 with a delegated cgroup
(one the user owns) the same calls work as for root."""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
import pytest

from isolate.cgroups import BackendKind, CGroup, Layout, host_layout
from isolate.cgroups.cgroup import BASE_NAME

NOBODY = 65534


def run_as_nobody(fn: Callable[[], str], join: str | None = None) -> str:
    """Run ``fn`` in a forked child that drops to uid/gid 65534 (after joining the cgroup
    whose procs file is ``join``, as root); return what it returned or the error it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            if join is not None:
                with open(join, "w") as f:
                    f.write("0")
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            result = fn()
        except BaseException as e:
            result = f"{type(e).__name__} missing={getattr(e, 'missing', None)}: {e}"
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_without_delegation_create_is_unsupported_and_says_what_is_missing(
    parents: dict[str, CGroup],
) -> None:
    def attempt(layout: Layout) -> Callable[[], str]:
        def go() -> str:
            CGroup.create(layout=layout)
            return "created"
        return go

    host = host_layout()
    bases = [h.dir_of(f"{h.self_path.rstrip('/')}/{BASE_NAME}") for h in host.hierarchies]

    def groups() -> set[str]:
        # (Groups of others -- this process's pool of emptied groups, other sessions on the
        # machine -- may be there before and after: only new ones count.)
        return {os.path.join(b, n) for b in bases if os.path.isdir(b)
                for n in os.listdir(b) if n.startswith("cg-")}

    before = groups()
    if host.v2 is not None:
        # Driven as pure v2: delegation is what would help.
        v2 = attrs.evolve(host, kind=BackendKind.V2, v1=())
        out = run_as_nobody(attempt(v2))
        assert out.startswith("UnsupportedError missing=cgroup delegation"), out
        assert "Delegate=yes" in out
    if host.kind is not BackendKind.V2:
        # A hybrid (or v1) host: the controllers are v1, which no delegation can hand over.
        out = run_as_nobody(attempt(host))
        assert out.startswith("UnsupportedError missing=cgroup v2 controllers"), out
        assert f"this host is {host.kind.value}" in out
        assert "memory" in out and "cannot be delegated" in out
        assert "--best-effort" in out and "unified_cgroup_hierarchy=1" in out
    # Nothing was made by the failed attempts.
    assert not groups() - before


def test_with_a_delegated_v2_cgroup_a_user_creates_joins_and_deletes(
    parents: dict[str, CGroup],
) -> None:
    if "v2" not in parents:
        pytest.skip("no cgroup v2 mount here")
    delegated = CGroup.create("delegated", parent=parents["v2"])
    try:
        d = delegated.dirs["unified"]
        # What a systemd Delegate=yes unit gets: the directory and these files.
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(d, name), NOBODY, NOBODY)
        layout = delegated.layout

        def as_user() -> str:
            mine = CGroup.create("mine", parent=CGroup.open(delegated.path, layout=layout))
            mine.add(os.getpid())
            inside = mine.procs() == [os.getpid()]
            delegated.add(os.getpid())  # step out again so the group can be removed
            mine.delete()
            return f"inside={inside} gone={not mine.exists()}"

        assert run_as_nobody(as_user, join=delegated.procs_files()[0]) == \
            "inside=True gone=True"
    finally:
        delegated.delete()
