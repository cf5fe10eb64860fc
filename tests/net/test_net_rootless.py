"""Rootless networking: an ordinary user publishes a port through pasta (slirp4netns as the
fallback), entirely inside namespaces that user owns: a user namespace with a network namespace
playing the host, and a container's network namespace made inside it."""

from __future__ import annotations

import os
import sys
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
from net_helpers import fetch, OTHER

assert os.geteuid() != 0
nss = Namespace.create(["user", "net"])
host = NetNamespace.of(nss["net"], userns=nss["user"])
with host.netlink() as ipr:
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
    ipr.addr("add", index=ipr.link_lookup(ifname="uplink0")[0], address=OTHER, prefixlen=24)
    for name in ("uplink0", "uplink0p"):
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    ipr.route("add", dst="default", gateway="10.99.0.254")
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


# Run as uid 65534: podman's rootless layout, all in namespaces the user owns -- a user
# namespace with a network namespace playing the world outside (an uplink, a server), another
# playing the user's own "host" (pasta connects it to the outside and publishes a port into it)
# where isolate.net builds a bridge network with nftables, and containers on that network.
ROOTLESS_BRIDGE_CODE = """
import os, socket, sys, tempfile
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
import dns.message, dns.query
from isolate.namespaces import Namespace
from isolate.net import NetNamespace, Networks, attach_user_mode
from net_helpers import fetch, http_get, OTHER

LAN_PEER = "10.99.0.2"
assert os.geteuid() != 0
if not os.access(sys.executable, os.X_OK):
    # This interpreter was started for us from a directory we cannot enter (root's); the
    # resolver isolate.net starts runs with the system's, of the same version.
    sys.executable = {system_python!r}
nss = Namespace.create(["user", "net"])
user = nss["user"]
outside = NetNamespace.of(nss["net"], userns=user)
with outside.netlink() as ipr:
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
    ipr.addr("add", index=ipr.link_lookup(ifname="uplink0")[0], address=OTHER, prefixlen=24)
    # Another machine of the outside's LAN (pasta gives the user's namespace OTHER itself).
    ipr.addr("add", index=ipr.link_lookup(ifname="uplink0p")[0], address=LAN_PEER,
             prefixlen=32)
    for name in ("uplink0", "uplink0p"):
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    ipr.route("add", dst="default", gateway="10.99.0.254")
rhost = NetNamespace.create(userns=user)
store = tempfile.mkdtemp(prefix="isolate-rootless-store-")
null = os.open(os.devnull, os.O_RDWR)
procs = []
def serve(ns, port, root):
    child = ns.spawn(["busybox", "httpd", "-f", "-p", str(port), "-h", root],
                     fds=(null, null, null))
    procs.append(child)
serve(outside, 8000, {www!r})
link = attach_user_mode(rhost, ports=["9090:8080"], host=outside, program="pasta")
c1, c2 = NetNamespace.create(userns=user), NetNamespace.create(userns=user)
try:
    with Networks(store, host=rhost, upstream=[]) as nets:
        try:
            net = nets.create("app")
            web = nets.connect("app", c1, owner="web", name="web", ports=["8080:80"])
            db = nets.connect("app", c2, owner="db", name="db")
            serve(c1, 80, {www2!r})
            print("published", fetch(outside, "127.0.0.1", 9090))
            print("by-address", fetch(c2, web.ipv4, 80))
            with c2.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                reply = dns.query.udp(dns.message.make_query("web", "A"), net.gateway,
                                      timeout=10, sock=s)
            print("by-name", sorted(r.to_text() for rr in reply.answer for r in rr)
                  == [web.ipv4])
            print("outbound", fetch(c1, LAN_PEER, 8000))
            print("hairpin", http_get(c1, net.gateway, 8080))
        finally:
            for log in ("dns.log", "proxy.log"):  # what the helpers said, for a failure
                path = os.path.join(store, net.id, log)
                if os.path.exists(path):
                    sys.stderr.write(log + ": " + open(path).read())
            for ep in nets.endpoints():
                nets.disconnect(ep)
            for n in nets.networks():
                nets.remove(n.id)
            nets.prune(networks=True)
    with rhost.netlink() as ipr:
        print("left", sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                              if l.get_attr("IFLA_IFNAME").startswith("iso")))
    table = rhost.run(["nft", "list", "table", "inet", "isolate"], check=False)
    print("table", table.returncode != 0)
finally:
    link.stop()
    for child in procs:
        child.kill(); child.wait(); child.close()
    for ns in (c1, c2, rhost, outside):
        ns.close()
    nss.close()
    import shutil; shutil.rmtree(store)
"""


@pytest.fixture
def rootless_env() -> Iterator[dict[str, str]]:
    """What the unprivileged code needs staged (net_helpers.staged_extras), with a second page
    dir ``www2`` for the server on the bridge."""
    with staged_extras({"www": "rootless", "www2": "on the bridge"}) as paths:
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


@pytest.mark.userns
def test_an_ordinary_user_runs_bridge_networks_in_a_host_namespace_of_its_own(
        rootless_env: dict[str, str]) -> None:
    if not have("pasta") or not have("nft"):
        pytest.skip("pasta (Debian package passt) and nft are needed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")
    system_python = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    if not os.access(system_python, os.X_OK):
        system_python = sys.executable
    code = ROOTLESS_BRIDGE_CODE.format(extra=rootless_env["extra"],
                                       tests=rootless_env["tests"], www=rootless_env["www"],
                                       www2=rootless_env["www2"], system_python=system_python)
    proc = run_unprivileged(code, binds={rootless_env["tun"]: "/dev/net/tun"})
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines == {"published": "on the bridge", "by-address": "on the bridge",
                     "by-name": "True", "outbound": "rootless", "hairpin": "on the bridge",
                     "left": "[]", "table": "True"}, proc.stdout + proc.stderr


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
