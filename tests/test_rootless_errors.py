"""Errors an ordinary user meets say what is wrong and what would work (real runs as uid
65534 through ``rootless.run_unprivileged``). The cgroup and ``isolate run --best-effort``
messages are tested in tests/cgroups/test_rootless.py and tests/test_cli.py."""

from __future__ import annotations

import textwrap

import pytest

import rootless

pytestmark = [pytest.mark.root, pytest.mark.userns]


def test_a_time_namespace_alone_says_to_add_a_user_namespace() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        from isolate.errors import NamespaceError
        from isolate.namespaces import Namespace
        try:
            Namespace.create("time")
        except NamespaceError as exc:
            print(exc.errno, exc)
        with Namespace.create(["user", "time"]):
            print("with user: made")
    """)).stdout.splitlines()
    assert out[0].startswith("1 create time namespace(s); as an ordinary user, create them "
                             "together with a new user namespace ('user')"), out
    assert out[1:] == ["with user: made"]


def test_persisting_into_a_missing_directory_names_the_missing_privilege_first() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        from isolate.errors import NamespaceError
        from isolate.namespaces import Namespace
        with Namespace.create(["user", "net"]) as nss:
            for persist in (lambda: nss["net"].persist("/nonexistent-isolate/dir/net"),
                            lambda: nss.persist("/nonexistent-isolate/dir")):
                try:
                    persist()
                except NamespaceError as exc:
                    print(exc.errno, exc)
    """)).stdout.splitlines()
    assert len(out) == 2, out
    for line in out:
        assert line.startswith("1 persist <Namespace "), line  # EPERM, not ENOENT
        assert "needs CAP_SYS_ADMIN over the current mount namespace" in line
        assert "/nonexistent-isolate/dir: No such file or directory" in line


def test_persisting_into_a_missing_directory_as_root_still_says_enoent(tmp_path: object) -> None:
    from isolate.errors import NamespaceError
    from isolate.namespaces import Namespace

    with Namespace.create("uts") as ns, pytest.raises(NamespaceError) as err:
        ns.persist(f"{tmp_path}/missing/uts")
    assert err.value.errno == 2 and "create" in str(err.value)


def test_a_sandbox_without_a_user_namespace_says_an_ordinary_user_needs_one() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        from isolate import Sandbox
        from isolate.errors import UnsupportedError
        try:
            Sandbox(user_namespace=False).__enter__()
        except UnsupportedError as exc:
            print(exc.missing, "|", exc)
        with Sandbox() as sb:   # the default for an ordinary user: a user namespace
            print(sb.run(["id", "-u"], capture_output=True, text=True).stdout.strip())
    """)).stdout.splitlines()
    assert out[0].startswith("CAP_SYS_ADMIN | an ordinary user may create namespaces only "
                             "inside a user namespace of its own, and this sandbox has none "
                             "(user_namespace=False): leave user_namespace unset"), out
    assert out[1:] == ["0"]


def test_an_image_user_is_refused_naming_the_cli_option_and_the_keyword() -> None:
    # "pass uid=0" named only the Python keyword where `isolate run -u 0` was meant.
    from isolate.errors import UnsupportedError
    from isolate.namespaces import IdMaps

    maps = IdMaps("0:65534:1", "0:65534:1", fallback="only your own ids are mapped")
    with pytest.raises(UnsupportedError, match=r"--user 0 on the command line, uid=0 from Python"):
        maps.check(1000, 1000, "image abc (User 'app')")
