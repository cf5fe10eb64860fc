"""Published ports with real packets: DNAT from the host's loopback, its other address and
other containers (hairpin); UDP; conflicts; the userland proxy path; nothing left after."""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

import pytest
from net_helpers import OTHER, OTHER6, http_get

from conftest import Containers, Upstream, cleanup, have, links, nft_table
from isolate.errors import ConfigError
from isolate.net import NetNamespace, Networks, parse_publish
from isolate.net._helpers import start_time
from isolate.net.firewall import NetworkRules


def test_a_published_port_answers_on_loopback_other_address_and_to_containers(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    net = nets.create("n")
    web, other = containers.new(), containers.new()
    ep = nets.connect("n", web, owner="web", ports=["9090:80"])
    nets.connect("n", other, owner="other")
    containers.httpd(web, 80, "it works")
    assert [str(b) for b in ep.ports] == ["0.0.0.0:9090->80/tcp"]
    assert http_get(host, "127.0.0.1", 9090) == "it works"   # the host's loopback
    assert http_get(host, OTHER, 9090) == "it works"         # the host's other address
    assert http_get(other, OTHER, 9090) == "it works"        # hairpin: a container, via host
    assert http_get(other, net.gateway, 9090) == "it works"
    # A container on another network reaches it through the host's port too (ports are
    # public), though not directly.
    nets.create("elsewhere")
    far = containers.new()
    nets.connect("elsewhere", far, owner="far")
    assert http_get(far, OTHER, 9090) == "it works"


def _peer_of_a_connection(server_ns: NetNamespace, client_ns: NetNamespace, addr: str,
                          port: int, family: int = socket.AF_INET, cport: int = 80) -> str:
    """Accept one connection to ``addr:port`` (a published port, DNAT'ed to ``server_ns``'s
    port ``cport``) made from ``client_ns``; the address the server sees it come from."""
    with server_ns.socket(family) as srv, client_ns.socket(family) as cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", cport))
        srv.listen(1)
        srv.settimeout(10)
        cli.settimeout(10)
        cli.connect((addr, port))
        conn, peer = srv.accept()
        conn.close()
        return str(peer[0])


def test_a_container_reaches_its_own_published_port_through_the_host(
        nets: Networks, host: NetNamespace, containers: Containers, bridge_nf: str) -> None:
    net = nets.create("n")
    web = containers.new()
    nets.connect("n", web, owner="web", ports=["9090:80"])
    containers.httpd(web, 80, "myself")
    # Docker's hairpin to self: through the host's address and through the gateway, with the
    # bridge's netfilter hooks on (the DNAT'ed frame is bridged back out of its own port) or
    # off (it is routed back into the bridge).
    assert http_get(web, OTHER, 9090) == "myself"
    assert http_get(web, net.gateway, 9090) == "myself"


def test_the_host_s_own_traffic_to_a_published_port_comes_from_the_gateway(
        nets: Networks, host: NetNamespace, containers: Containers, bridge_nf: str) -> None:
    net = nets.create("n")
    web, other = containers.new(), containers.new()
    ep = nets.connect("n", web, owner="web", ports=["9090:80"])
    eo = nets.connect("n", other, owner="other")
    # As through Docker's userland proxy: the container answers the host through its
    # network's own route (the link MTU), whichever host address was used.
    assert _peer_of_a_connection(web, host, "127.0.0.1", 9090) == net.gateway
    assert _peer_of_a_connection(web, host, OTHER, 9090) == net.gateway
    # A member of the network reaching it through the host is masqueraded too (hairpin).
    assert _peer_of_a_connection(web, other, OTHER, 9090) == net.gateway
    assert _peer_of_a_connection(web, web, OTHER, 9090) == net.gateway
    assert eo.ipv4 != ep.ipv4


def test_another_machine_reaches_a_published_port_and_is_seen_as_itself(
        nets: Networks, host: NetNamespace, containers: Containers, bridge_nf: str) -> None:
    nets.create("n")
    web, lan = containers.new(), containers.new()  # lan: a machine on the host's LAN
    nets.connect("n", web, owner="web", ports=["9090:80", "9091:81"])
    with host.netlink() as ipr:
        ipr.link("add", ifname="lan0", kind="veth",
                 peer={"ifname": "eth0", "net_ns_fd": lan.fileno()})
        idx = ipr.link_lookup(ifname="lan0")[0]
        ipr.addr("add", index=idx, address="10.98.0.1", prefixlen=24)
        ipr.link("set", index=idx, state="up")
    with lan.netlink() as ipr:
        for name in ("lo", "eth0"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address="10.98.0.2",
                 prefixlen=24)
    containers.httpd(web, 80, "from afar")
    # DNAT in prerouting; the container sees the machine's own address, as with Docker (only
    # the host's and the network's own traffic is masqueraded).
    assert http_get(lan, "10.98.0.1", 9090) == "from afar"
    assert _peer_of_a_connection(web, lan, "10.98.0.1", 9091, cport=81) == "10.98.0.2"
    with pytest.raises(OSError):  # what is not published is not reachable
        http_get(lan, "10.98.0.1", 80, timeout=2)


def test_ipv6_published_ports_are_dnated_for_the_host_other_containers_and_itself(
        nets: Networks, host: NetNamespace, containers: Containers, bridge_nf: str) -> None:
    net = nets.create("dual", ipv6=True)
    assert net.gateway6 is not None
    web, other = containers.new(), containers.new()
    ep = nets.connect("dual", web, owner="web",
                      ports=["9090:80", f"[{OTHER6}]:9091:80", "9092:81"])
    nets.connect("dual", other, owner="other")
    assert ep.ipv6 is not None and ep.proxy is None  # every binding is DNAT'ed, none proxied
    containers.httpd(web, 80, "over v6")
    for client in (host, other, web):
        assert http_get(client, OTHER6, 9090) == "over v6"
        assert http_get(client, OTHER6, 9091) == "over v6"
        assert http_get(client, net.gateway6, 9090) == "over v6"
    # The IPv4 side of the same wildcard binding, and the address-bound one only there.
    assert http_get(host, OTHER, 9090) == "over v6"
    with pytest.raises(OSError):
        http_get(host, OTHER, 9091, timeout=2)
    assert _peer_of_a_connection(web, host, OTHER6, 9092, socket.AF_INET6, 81) == net.gateway6
    table = nft_table(host)
    assert ep.ipv6 in table and f"{OTHER6} . tcp . 9091" in table
    nets.disconnect(ep)
    table = nft_table(host)
    assert ep.ipv6 not in table and "9091" not in table
    with pytest.raises(OSError):
        http_get(host, OTHER6, 9090, timeout=2)


def test_a_port_published_on_one_host_address_answers_only_there(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    nets.create("n")
    web = containers.new()
    ep = nets.connect("n", web, owner="web", ports=["127.0.0.1:9091:80", f"{OTHER}::80"])
    containers.httpd(web, 80, "local")
    assert http_get(host, "127.0.0.1", 9091) == "local"
    with pytest.raises(OSError):
        http_get(host, OTHER, 9091, timeout=2)
    ephemeral = ep.ports[1]
    assert ephemeral.host_ip == OTHER and ephemeral.host_port > 1024
    assert http_get(host, OTHER, ephemeral.host_port) == "local"


def test_a_udp_port_carries_a_datagram(nets: Networks, host: NetNamespace,
                                       containers: Containers) -> None:
    nets.create("n")
    web = containers.new()
    nets.connect("n", web, owner="web", ports=["9090:80/udp"])
    assert _datagram_arrives(containers, web, host, ("127.0.0.1", 9090))


def _datagram_arrives(containers: Containers, server: NetNamespace, client: NetNamespace,
                      dest: tuple[str, int], port: int = 80) -> bool:
    fd = containers.udp_sink(server, port)
    with client.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, os.fdopen(fd, "rb") as f:
        s.sendto(b"datagram", dest)
        if not select.select([f], [], [], 10)[0]:
            return False
        return os.read(f.fileno(), 100) == b"datagram"


def test_a_port_range_maps_one_to_one(nets: Networks, host: NetNamespace,
                                      containers: Containers) -> None:
    nets.create("n")
    web = containers.new()
    ep = nets.connect("n", web, owner="web", ports=["9100-9101:80-81"])
    containers.httpd(web, 80, "eighty")
    containers.httpd(web, 81, "eighty-one")
    assert [(b.host_port, b.container_port) for b in ep.ports] == [(9100, 80), (9101, 81)]
    assert http_get(host, "127.0.0.1", 9101) == "eighty-one"


def test_a_host_port_in_use_is_a_clear_error_before_anything_is_made(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    nets.create("n")
    nets.connect("n", containers.new(), owner="first", ports=["9090:80"])
    endpoints = nets.endpoints()
    table = nft_table(host)
    devices = links(host)
    with pytest.raises(ConfigError, match="9090/tcp is already in use"):
        nets.connect("n", containers.new(), owner="second", ports=["9090:81"])
    with host.socket() as listener:  # a program of the host listens on a port
        listener.bind(("0.0.0.0", 9300))
        listener.listen(1)
        with pytest.raises(ConfigError, match="9300/tcp is already in use"):
            nets.connect("n", containers.new(), owner="third", ports=["8000:80", "9300:80"])
    with pytest.raises(ConfigError, match="not an address of the host"):
        nets.connect("n", containers.new(), owner="fourth", ports=["10.1.2.3:8000:80"])
    assert nets.endpoints() == endpoints
    assert nft_table(host) == table and links(host) == devices
    # Another protocol, or another address of a different port, is no conflict.
    nets.connect("n", containers.new(), owner="udp", ports=["9090:80/udp"])


def test_publish_adds_ports_to_a_connected_endpoint(nets: Networks, host: NetNamespace,
                                                    containers: Containers) -> None:
    nets.create("n")
    web = containers.new()
    ep = nets.connect("n", web, owner="web")
    containers.httpd(web, 80, "later")
    ep = nets.publish(ep, [parse_publish("9095:80")])
    assert http_get(host, "127.0.0.1", 9095) == "later"
    assert nets.endpoints()[0].ports == ep.ports


def test_teardown_leaves_no_veth_rule_address_or_proxy(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    before = links(host)
    nets.create("n")
    web = containers.new()
    ep = nets.connect("n", web, owner="web", ports=["9090:80", "[::1]:9091:80", "53/udp"])
    assert ep.proxy is not None and ep.proxy.alive()  # [::1] is served by the proxy
    assert "9090" in nft_table(host)
    nets.disconnect(ep)
    assert "9090" not in nft_table(host) and ep.ipv4 not in nft_table(host)
    assert not ep.proxy.alive() and start_time(ep.proxy.pid) is None
    assert links(host) - before == {nets.get("n").bridge}
    assert nets._pools(nets.get("n"))[0].leases == {}
    nets.remove("n")
    assert links(host) == before and nft_table(host) == ""


def test_prune_removes_port_forwards_and_rules_that_no_record_names(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    net = nets.create("n")
    web, gone = containers.new(), containers.new()
    nets.connect("n", web, owner="web", ports=["9090:80"])
    lost = nets.connect("n", gone, owner="gone", ports=["9091:80"])
    containers.httpd(web, 80, "kept")
    containers.httpd(gone, 80, "lost")
    assert http_get(host, OTHER, 9091) == "lost"
    # Its record lost (by hand; a crash cannot lose a record that was fsync'ed), and the
    # chains of a network that has none: what only prune can find.
    os.unlink(nets.dir.file(net.id, "endpoints", lost.id + ".json"))
    nets.firewall.setup_network(NetworkRules("c" * 64, "isobccccccccccc", ("172.31.9.0/24",)))
    done = nets.prune()
    assert f"port forward tcp 9091 to {lost.ipv4}" in done
    assert "firewall chain n-cccccccccccc-fwd" in done
    assert f"device {lost.host_ifname}" in done
    with pytest.raises(OSError):
        http_get(host, OTHER, 9091, timeout=2)
    assert http_get(host, OTHER, 9090) == "kept"  # what a record names stays
    table = nft_table(host)
    assert "9091" not in table and "cccccccccccc" not in table and "9090" in table
    assert nets.prune() == []


def test_the_proxy_serves_ipv6_loopback(nets: Networks, host: NetNamespace,
                                        containers: Containers) -> None:
    nets.create("n")
    web = containers.new()
    nets.connect("n", web, owner="web", ports=["[::1]:9092:80"])
    containers.httpd(web, 80, "via proxy")
    assert http_get(host, "::1", 9092) == "via proxy"


def test_without_a_firewall_the_proxy_publishes_ports(
        host: NetNamespace, store: Path, containers: Containers, upstream: Upstream) -> None:
    with Networks(store, host=host, firewall="none", upstream=[upstream.address]) as nets:
        try:
            nets.create("n")
            web, other = containers.new(), containers.new()
            ep = nets.connect("n", web, owner="web", ports=["9090:80", "9093:80/udp"])
            nets.connect("n", other, owner="other")
            assert ep.proxy is not None
            containers.httpd(web, 80, "proxied")
            assert http_get(host, "127.0.0.1", 9090) == "proxied"
            assert http_get(host, OTHER, 9090) == "proxied"
            assert http_get(other, OTHER, 9090) == "proxied"
            assert nft_table(host) == ""
            assert _datagram_arrives(containers, web, host, ("127.0.0.1", 9093))
            nets.disconnect(ep)
            assert not ep.proxy.alive()
        finally:
            cleanup(nets)


def test_nft_missing_is_a_clear_error(host: NetNamespace, store: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not have("nft"):
        pytest.skip("nft is not installed")
    from isolate.errors import UnsupportedError

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("isolate.net.firewall._default_env", lambda: {"PATH": "/nonexistent"})
    with pytest.raises(UnsupportedError, match="nft") as info:
        Networks(store, host=host)
    assert info.value.missing == "nft"
