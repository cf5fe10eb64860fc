"""Sandboxes on networks, with real packets, all inside a network namespace each test makes to
play the host: a bridge network (names between sandboxes, a published port), pasta, and the
old True/False meaning host/none."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolate import Sandbox
from isolate.container import netdriver
from isolate.errors import ConfigError
from isolate.image import Store
from isolate.net import NetNamespace

sys.path.insert(0, str(Path(__file__).parent / "net"))
from net_helpers import OTHER, fetch, make_host, staged_extras

import rootless

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture
def host() -> Iterator[NetNamespace]:
    ns = make_host(default_route=True)
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture
def store(tmp_path: Path, host: NetNamespace) -> Iterator[Store]:
    """A store whose networks live in ``host``; nothing of them may be left at the end."""
    if os.geteuid() != 0:
        pytest.skip("bridge networks need root")
    if shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("nft (Debian package nftables) is not installed")
    s = Store(tmp_path / "store")
    try:
        yield s
    finally:
        with netdriver.open_networks(s.root, host) as nets:
            left = nets.endpoints()
            for net in nets.networks():
                nets.remove(net.id)
            nets.prune(networks=True)
        assert not left, left


def _www(tmp_path: Path, text: str) -> str:
    """A directory with ``index.html`` saying ``text``, to bind into a sandbox at /www."""
    www = tmp_path / f"www-{text}"
    www.mkdir()
    (www / "index.html").write_text(text + "\n")
    www.chmod(0o755)
    return f"{www}:/www:ro"


def _server(sb: Sandbox, port: int) -> None:
    sb.popen(["busybox", "httpd", "-f", "-p", str(port), "-h", "/www"])


def test_sandboxes_on_a_network_find_each_other_by_name(store: Store, host: NetNamespace,
                                                        tmp_path: Path) -> None:
    with netdriver.open_networks(store.root, host) as nets:
        nets.create("lab")
    with Sandbox(network="lab", hostname="web", store=store, network_host=host,
                 binds=[_www(tmp_path, "from-web")]) as web, \
            Sandbox(network="lab", hostname="client", store=store, network_host=host) as cl:
        _server(web, 8080)
        out = cl.run(["sh", "-c", "for i in $(seq 100); do busybox wget -q -O - "
                      "http://web:8080/ && exit 0; sleep 0.1; done; exit 1"],
                     capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == "from-web\n", out
        resolv = cl.run(["cat", "/etc/resolv.conf"], capture_output=True, text=True).stdout
        assert resolv.startswith("nameserver ")
        hosts = cl.run(["cat", "/etc/hosts"], capture_output=True, text=True).stdout
        assert "client" in hosts
    with netdriver.open_networks(store.root, host) as nets:
        assert nets.endpoints() == []


def test_a_sandbox_publishes_a_port_on_the_default_bridge(store: Store, host: NetNamespace,
                                                          tmp_path: Path) -> None:
    with Sandbox(network="bridge", ports=["9090:8080"], store=store, network_host=host,
                 binds=[_www(tmp_path, "published")]) as sb:
        assert [p["host_port"] for p in sb.ports] == [9090]
        _server(sb, 8080)
        assert fetch(host, "127.0.0.1", 9090) == "published\n"
        assert fetch(host, OTHER, 9090) == "published\n"
    with pytest.raises(OSError):
        fetch(host, "127.0.0.1", 9090, timeout=1)


def test_a_sandbox_gets_out_through_pasta(host: NetNamespace, tmp_path: Path) -> None:
    if shutil.which("pasta", path="/usr/bin:/usr/sbin") is None:
        pytest.skip("pasta (Debian package passt) is not installed")
    with Sandbox(network="pasta", ports=["9090:8080"], network_host=host,
                 binds=[_www(tmp_path, "via-pasta")]) as sb:
        _server(sb, 8080)
        assert fetch(host, "127.0.0.1", 9090) == "via-pasta\n"


def test_network_modes_and_their_errors() -> None:
    assert Sandbox(network=True).config.network == "host"
    assert Sandbox(network=False).config.network == "none"
    assert Sandbox(network="none").config.host_network is False
    with pytest.raises(ConfigError, match="not 'container:x'"):
        Sandbox(network="container:x")
    with pytest.raises(ConfigError, match="ports are published only"):
        Sandbox(ports=["80"])
    with pytest.raises(ConfigError, match="invalid"):
        Sandbox(network="pasta", ports=["notaport"])


# As uid 65534 in the machine's own network namespace (pasta and slirp4netns act only in the
# sandbox's namespace and open sockets on the machine's loopback; nothing else is touched): a
# server on the machine's loopback reached from the sandbox, and a server in the sandbox
# reached through a port published on 127.0.0.1.
ROOTLESS_SANDBOX_CODE = """
import json, os, socket, sys, threading
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate import Sandbox
from isolate.net import NetNamespace
from net_helpers import fetch, loopback_server

assert os.geteuid() != 0
srv = loopback_server(b"from the host")
out = {{}}
with Sandbox(network={program!r}, ports=["127.0.0.1::8080"],
             binds=[{www!r} + ":/www:ro"]) as sb:
    sb.popen(["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
    port = sb.ports[0]["host_port"]
    out["ports"] = [[p["host_ip"], p["container_port"]] for p in sb.ports]
    with NetNamespace.of() as here:
        out["published"] = fetch(here, "127.0.0.1", int(port))
    if {program!r} == "pasta":
        # pasta maps the sandbox's default gateway to the machine's loopback.
        route = sb.run(["busybox", "ip", "route"], capture_output=True, text=True).stdout
        gateway = next(l.split()[2] for l in route.splitlines() if l.startswith("default"))
        got = sb.run(["sh", "-c", "for i in $(seq 50); do timeout 10 busybox wget -q -O - "
                      f"http://{{gateway}}:{{srv.getsockname()[1]}}/ && exit 0; sleep 0.2; "
                      "done; exit 1"], capture_output=True, text=True)
        out["outbound"] = got.stdout
    resolv = sb.run(["cat", "/etc/resolv.conf"], capture_output=True, text=True).stdout
    out["resolv"] = resolv.split()[:1]
try:
    with NetNamespace.of() as here:
        fetch(here, "127.0.0.1", int(port), timeout=1)
    out["closed"] = False
except OSError:
    out["closed"] = True
print(json.dumps(out))
"""


@pytest.mark.userns
@pytest.mark.parametrize("program", ["pasta", "slirp4netns"])
def test_an_ordinary_users_sandbox_gets_out_and_publishes_through(program: str,
                                                                  tmp_path: Path) -> None:
    if shutil.which(program, path="/usr/bin:/usr/sbin:/bin:/sbin") is None:
        pytest.skip(f"{program} is not installed")
    if not os.path.exists("/dev/net/tun") or not os.path.exists("/bin/busybox"):
        pytest.skip("/dev/net/tun and busybox-static (/bin/busybox) are needed")
    with staged_extras() as env:
        code = ROOTLESS_SANDBOX_CODE.format(extra=env["extra"], tests=env["tests"],
                                            www=env["www"], program=program)
        proc = rootless.run_unprivileged(
            code, binds={env["tun"]: "/dev/net/tun"}, timeout=300,
            extra_env={"XDG_DATA_HOME": str(rootless.xdg_home(tmp_path))})
    r = json.loads(proc.stdout.splitlines()[-1])
    want = {"ports": [["127.0.0.1", 8080]], "published": "rootless", "resolv": ["nameserver"],
            "closed": True}
    if program == "pasta":
        want["outbound"] = "from the host"
    assert r == want, proc.stderr
