"""Rootless networking: an ordinary user publishes a port through pasta (slirp4netns as the
fallback), entirely inside namespaces that user owns: a user namespace with a network namespace
playing the host, and a container's network namespace made inside it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from net_helpers import OTHER, fetch, staged_extras

from conftest import Containers, have
from isolate.errors import UnsupportedError
from isolate.net import NetNamespace, attach_user_mode, loopback_up
from isolate.net.rootless import find_program
from rootless import run_unprivileged

# Run as uid 65534: make the host (user + net namespace of ours, with an uplink and a default
# route, as pasta copies its addresses from the host's default interface), a container's
# network namespace owned by our user namespace, a server in it, publish, fetch, stop.
ROOTLESS_CODE = """
import os, sys
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate.namespaces import Namespace
from isolate.net import NetNamespace, attach_user_mode, loopback_up
from net_helpers import fetch, make_host, OTHER

assert os.geteuid() != 0
nss = Namespace.create(["user", "net"])
host = make_host(nss["user"], default_route=True)
container = NetNamespace.create(userns=nss["user"])
null = os.open(os.devnull, os.O_RDWR)
server = container.spawn(["busybox", "httpd", "-f", "-p", "80", "-h", {www!r}],
                         fds=(null, null, null))
try:
    net = attach_user_mode(container, ports=["9090:80", "127.0.0.1::80"], host=host,
                           program={program!r})
    try:
        print("program", net.program)
        print("loopback", fetch(host, "127.0.0.1", 9090))
        print("other", fetch(host, OTHER, 9090))
        print("ephemeral", fetch(host, "127.0.0.1", net.ports[1].host_port))
    finally:
        net.stop()
        print("stopped", not net.alive())
finally:
    server.kill(); server.wait(); server.close()
    container.close(); host.close(); nss.close()
"""


@pytest.fixture
def rootless_env() -> Iterator[dict[str, str]]:
    """What the unprivileged code needs (see :func:`net_helpers.staged_extras`)."""
    with staged_extras() as paths:
        yield paths


@pytest.mark.userns
@pytest.mark.parametrize("program", ["pasta", "slirp4netns"])
def test_an_ordinary_user_publishes_a_port(rootless_env: dict[str, str], program: str) -> None:
    if not have(program):
        pytest.skip(f"{program} is not installed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")
    code = ROOTLESS_CODE.format(extra=rootless_env["extra"], tests=rootless_env["tests"],
                                www=rootless_env["www"], program=program)
    proc = run_unprivileged(code, binds={rootless_env["tun"]: "/dev/net/tun"})
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines == {"program": program, "loopback": "rootless", "other": "rootless",
                     "ephemeral": "rootless", "stopped": "True"}, proc.stderr


def test_pasta_as_root_publishes_a_port_too(host: NetNamespace,
                                            containers: Containers) -> None:
    if not have("pasta"):
        pytest.skip("pasta is not installed")
    with host.netlink() as ipr:
        ipr.route("add", dst="default", gateway="10.99.0.254")
    c = containers.new()
    loopback_up(c)  # the "none" mode's one step, and the server's readiness check needs it
    containers.httpd(c, 80, "root pasta")
    net = attach_user_mode(c, ports=["9090:80"], host=host, program="pasta")
    try:
        assert fetch(host, "127.0.0.1", 9090) == "root pasta"
        assert fetch(host, OTHER, 9090) == "root pasta"
    finally:
        net.stop()
    assert not net.alive()


def test_a_missing_program_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("isolate.net.rootless._default_env", lambda: {"PATH": "/nonexistent"})
    with pytest.raises(UnsupportedError, match="pasta or slirp4netns") as info:
        find_program()
    assert info.value.missing == "pasta or slirp4netns"
    with pytest.raises(UnsupportedError, match="needs slirp4netns"):
        attach_user_mode("/proc/self/ns/net", program="slirp4netns")
