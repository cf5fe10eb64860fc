"""Bridge networks and endpoints: real devices, addresses, routes and packets, all inside a
namespace that plays the host."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from net_helpers import OTHER, http_get

from conftest import Containers, addresses, eventually, links, nft_table, unreachable
from isolate.errors import ConfigError, NetworkError
from isolate.net import NetNamespace, Networks, process_owner
from isolate.net.network import DEFAULT_LINK_MTU


def test_a_network_is_a_bridge_with_its_gateway_and_goes_without_a_trace(
        nets: Networks, host: NetNamespace) -> None:
    before = links(host)
    net = nets.create("front", subnet="172.30.0.0/24", mtu=1400)
    assert net.gateway == "172.30.0.1" and net.bridge in links(host)
    assert addresses(host, net.bridge) == {"172.30.0.1/24"}
    assert host.read_sysctl("net.ipv4.ip_forward") == "1"
    assert net.bridge in nft_table(host)
    assert [n.name for n in nets.networks()] == ["front"]
    assert nets.get(net.id[:8]) == net
    nets.remove("front")
    assert links(host) == before
    assert nft_table(host) == ""
    assert host.read_sysctl("net.ipv4.ip_forward") == "0"  # restored
    assert os.listdir(nets.dir.path) == [".lock"]


def test_bad_networks_are_refused_before_anything_is_made(nets: Networks,
                                                          host: NetNamespace) -> None:
    before = links(host)
    nets.create("a", subnet="172.30.0.0/24")
    cases = [
        (dict(name="a"), "already exists"),
        (dict(name="b", subnet="172.30.0.128/25"), "overlaps"),
        (dict(name="b", subnet="10.99.0.0/16"), "overlaps"),  # the host's own route
        (dict(name="b", subnet="172.31.0.0/24", gateway="172.32.0.1"), "not a host address"),
        (dict(name="b", subnet="172.31.0.1/24"), "invalid subnet"),
        (dict(name="b b"), "invalid network name"),
        (dict(name="b", mtu=10), "mtu"),
    ]
    for kwargs, message in cases:
        name = kwargs.pop("name")
        with pytest.raises(ConfigError, match=message):
            nets.create(name, **kwargs)  # type: ignore[arg-type]
    assert [n.name for n in nets.networks()] == ["a"]
    assert links(host) - before == {nets.get("a").bridge}
    with pytest.raises(ConfigError, match="no such network"):
        nets.get("nope")
    with pytest.raises(ConfigError, match="no such network"):
        nets.remove("nope")


def _default_route(ns: NetNamespace, family: int = 2) -> tuple[str | None, int | None]:
    """The gateway and the MTU metric of the namespace's default route."""
    with ns.netlink() as ipr:
        (route,) = [r for r in ipr.get_routes(family=family, table=254) if r["dst_len"] == 0]
        metrics = route.get_attr("RTA_METRICS")
        mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
        return route.get_attr("RTA_GATEWAY"), mtu


def test_an_endpoint_gets_eth0_with_address_link_mtu_and_a_default_route_with_the_mtu(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    net = nets.create("n", subnet="172.30.0.0/24", mtu=1400)
    assert (net.mtu, net.link_mtu) == (1400, DEFAULT_LINK_MTU)
    c = containers.new()
    ep = nets.connect("n", c, owner="c1", name="web")
    assert (ep.ifname, ep.ipv4, ep.gateway) == ("eth0", "172.30.0.2", "172.30.0.1")
    assert addresses(c, "eth0") == {"172.30.0.2/24"}
    with c.netlink() as ipr:
        eth0 = ipr.get_links(ipr.link_lookup(ifname="eth0")[0])[0]
        assert eth0.get_attr("IFLA_MTU") == DEFAULT_LINK_MTU
        assert eth0.get_attr("IFLA_OPERSTATE") == "UP"
    # The network's MTU bounds the way out; the host and the network's members are reached
    # with the link's.
    assert _default_route(c) == ("172.30.0.1", 1400)
    assert c.read_sysctl("net.ipv4.conf.eth0.accept_redirects") == "0"
    assert ep.host_ifname in links(host)
    # The host reaches the container, and the container the host's other address.
    containers.httpd(c, 80, "from c")
    assert http_get(host, ep.ipv4, 80) == "from c"
    assert c.run(["busybox", "ping", "-c1", "-W5", OTHER]).returncode == 0
    nets.disconnect(ep)
    assert ep.host_ifname not in links(host) and "eth0" not in links(c)
    assert nets.endpoints() == []


def test_link_mtu_equal_to_the_mtu_gives_docker_s_interfaces(
        nets: Networks, containers: Containers) -> None:
    net = nets.create("n", mtu=1400, link_mtu=1400)
    c = containers.new()
    nets.connect("n", c, owner="c1")
    with c.netlink() as ipr:
        assert ipr.get_links(ipr.link_lookup(ifname="eth0")[0])[0].get_attr("IFLA_MTU") == 1400
    assert _default_route(c) == (net.gateway, None)
    for bad in (1399, 65536, "9000"):
        with pytest.raises(ConfigError, match="link_mtu"):
            nets.create("m", mtu=1400, link_mtu=bad)  # type: ignore[arg-type]


def test_two_endpoints_on_one_network_reach_each_other(
        nets: Networks, containers: Containers) -> None:
    nets.create("n")
    a, b = containers.new(), containers.new()
    ea = nets.connect("n", a, owner="a")
    eb = nets.connect("n", b, owner="b", ip=str(ipaddress.ip_address(ea.ipv4) + 10))
    assert eb.ipv4 == str(ipaddress.ip_address(ea.ipv4) + 10)
    containers.httpd(a, 8080, "a here")
    assert http_get(b, ea.ipv4, 8080) == "a here"
    with pytest.raises(ConfigError, match="in use"):
        nets.connect("n", containers.new(), owner="c", ip=eb.ipv4)


def test_networks_are_isolated_and_an_internal_one_has_no_way_out(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    nets.create("one")
    nets.create("two")
    nets.create("closed", internal=True)
    a, b, c, d = (containers.new() for _ in range(4))
    ea = nets.connect("one", a, owner="a")
    eb = nets.connect("two", b, owner="b")
    ec = nets.connect("closed", c, owner="c")
    nets.connect("closed", d, owner="d")
    for ns in (a, b, c, d):
        containers.httpd(ns, 80, "x")
    containers.httpd(host, 8000, "outside")
    outside = OTHER
    # Outbound works from a normal network (masqueraded: the host sees the gateway).
    assert http_get(a, outside, 8000) == "outside"
    # Across networks: dropped both ways.
    assert unreachable(a, eb.ipv4, 80) and unreachable(b, ea.ipv4, 80)
    # Internal: members reach each other, nothing else, and nobody reaches them.
    assert http_get(d, ec.ipv4, 80) == "x"
    assert unreachable(c, outside, 8000)
    assert unreachable(c, ea.ipv4, 80) and unreachable(a, ec.ipv4, 80)
    assert ec.gateway is None
    with pytest.raises(ConfigError, match="internal"):
        nets.publish(ec, ["8080:80"])


def test_an_endpoint_may_be_on_several_networks(nets: Networks,
                                                containers: Containers) -> None:
    nets.create("one")
    nets.create("two")
    a, b, both = containers.new(), containers.new(), containers.new()
    ea = nets.connect("one", a, owner="a")
    eb = nets.connect("two", b, owner="b")
    e1 = nets.connect("one", both, owner="both")
    e2 = nets.connect("two", both, owner="both")
    assert (e1.ifname, e2.ifname) == ("eth0", "eth1")
    containers.httpd(a, 80, "a")
    containers.httpd(b, 80, "b")
    assert http_get(both, ea.ipv4, 80) == "a" and http_get(both, eb.ipv4, 80) == "b"
    assert {e.id for e in nets.release("both")} == {e1.id, e2.id}
    assert links(both) == {"lo"}


def test_ipv6_networks_give_endpoints_both_families(nets: Networks,
                                                    containers: Containers) -> None:
    net = nets.create("dual", ipv6=True)
    assert net.subnet6 and net.gateway6
    a, b = containers.new(), containers.new()
    ea = nets.connect("dual", a, owner="a")
    eb = nets.connect("dual", b, owner="b")
    assert ea.ipv6 and ipaddress.ip_address(ea.ipv6) in ipaddress.ip_network(net.subnet6)
    containers.httpd(a, 80, "v6")
    assert http_get(b, ea.ipv6, 80) == "v6"
    assert eb.ipv6 != ea.ipv6


def test_unknown_networks_and_namespaces_are_errors_with_nothing_made(
        nets: Networks, host: NetNamespace, containers: Containers, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such network"):
        nets.connect("nope", containers.new(), owner="x")
    nets.create("n")
    with pytest.raises(NetworkError, match="not a namespace file"):
        nets.connect("n", str(tmp_path), owner="x")
    with pytest.raises(ConfigError, match="host's own"):
        nets.connect("n", host, owner="x")
    assert nets.endpoints() == [] and not any(n.startswith("isov") for n in links(host))


def test_removing_a_network_in_use_is_refused(nets: Networks, containers: Containers) -> None:
    nets.create("n")
    ep = nets.connect("n", containers.new(), owner="c", name="web")
    with pytest.raises(ConfigError, match="in use by web"):
        nets.remove("n")
    nets.disconnect(ep.id)
    nets.remove("n")


def test_the_default_network_is_made_on_first_use_without_a_resolver(
        nets: Networks, containers: Containers) -> None:
    ep = nets.connect("bridge", containers.new(), owner="c")
    net = nets.get("bridge")
    assert net.default and not net.dns and net.bridge == "isolate0"
    assert ep.network == net.id
    assert nets.dir.read(net.id, "resolver.json") is None


def test_concurrent_connects_from_threads_get_distinct_addresses(
        nets: Networks, containers: Containers) -> None:
    nets.create("n", subnet="172.30.0.0/24")
    namespaces = [containers.new() for _ in range(8)]
    got: list[str] = []
    errors: list[BaseException] = []

    def connect(i: int) -> None:
        try:
            got.append(nets.connect("n", namespaces[i], owner=f"t{i}").ipv4)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(got)) == 8


_CONNECT_IN_A_PROCESS = """
import os, sys
from isolate.net import Networks
store, host_fd, ns_fd, owner, crash = sys.argv[1:6]
os.write(1, b"ready\\n")
sys.stdin.read(1)  # all processes start connecting at the same moment
with Networks(store, host=int(host_fd), upstream=[]) as nets:
    if crash == "crash":
        def die(*args, **kwargs):
            os._exit(9)  # a real crash half-way: the veth exists, the record says creating
        nets._forward = die
    ep = nets.connect("n", int(ns_fd), owner=owner)
    print(ep.ipv4, flush=True)
"""


def _connect_processes(store: Path, host: NetNamespace, namespaces: list[NetNamespace],
                       owner: str = "p", crash: bool = False) -> list[subprocess.Popen[str]]:
    procs = []
    for i, ns in enumerate(namespaces):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _CONNECT_IN_A_PROCESS, str(store), str(host.fileno()),
             str(ns.fileno()), f"{owner}{i}", "crash" if crash else "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            pass_fds=(host.fileno(), ns.fileno())))
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("g")
        p.stdin.close()
        p.stdin = None
    return procs


def test_concurrent_connects_from_processes_get_distinct_addresses(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    nets.create("n", subnet="172.30.0.0/24")
    procs = _connect_processes(store, host, [containers.new() for _ in range(6)])
    out = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6
    assert len(set(out)) == 6 and all(o.startswith("172.30.0.") for o in out)
    assert sorted(e.ipv4 for e in nets.endpoints()) == sorted(out)


def test_a_crash_half_way_is_rolled_back_by_the_next_change_and_prune(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    nets.create("n", subnet="172.30.0.0/24")
    ns = containers.new()
    (proc,) = _connect_processes(store, host, [ns], crash=True)
    proc.communicate(timeout=120)
    assert proc.returncode == 9
    # The crash left a veth and a record in the middle of being made.
    assert any(n.startswith("isov") for n in links(host))
    assert "eth0" in links(ns)
    # The next change cleans it before doing its own work.
    ep = nets.connect("n", containers.new(), owner="next")
    assert ep.ipv4 == "172.30.0.3"  # round-robin after the crashed lease
    assert [e.owner for e in nets.endpoints()] == ["next"]
    assert [n for n in links(host) if n.startswith("isov")] == [ep.host_ifname]
    assert "eth0" not in links(ns)
    assert set(nets._pools(nets.get("n"))[0].leases) == {ep.ipv4}


def test_prune_removes_endpoints_of_dead_owners_vanished_namespaces_and_strays(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    net = nets.create("n")
    dead = subprocess.Popen(["sleep", "60"])
    owner = process_owner(dead.pid)
    ep_dead = nets.connect("n", containers.new(), owner=owner, name="ghost")
    gone_ns = NetNamespace.create()
    ep_gone = nets.connect("n", gone_ns, owner="vanishing")
    keep = nets.connect("n", containers.new(), owner="alive")
    dead.kill()
    dead.wait()
    gone_ns.close()  # its namespace ends, and the veth with it (the kernel does it later)
    assert eventually(lambda: ep_gone.host_ifname not in links(host))
    with host.netlink() as ipr:  # a device of ours that no record names (crash before
        ipr.link("add", ifname="isovdeadbeef01", kind="veth", peer="strayp")  # the record)
    done = nets.prune()
    assert any(ep_dead.id[:12] in d and "gone" in d for d in done)
    assert any(ep_gone.id[:12] in d and "namespace is gone" in d for d in done)
    assert "device isovdeadbeef01" in done
    assert [e.id for e in nets.endpoints()] == [keep.id]
    assert set(nets._pools(net)[0].leases) == {keep.ipv4}
    assert not {"isovdeadbeef01", ep_dead.host_ifname} & links(host)
    assert nets.prune() == []
