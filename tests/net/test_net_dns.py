"""Names on a network: the per-network resolver, through getent (the libc resolver), Python's
getaddrinfo and a direct DNS query; forwarding to the host's (here: a fake) upstream."""

from __future__ import annotations

import socket
import sys

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import UPSTREAM_ADDR, UPSTREAM_NAME, Containers, Upstream, eventually, have
from isolate.net import NetNamespace, Networks
from isolate.net._helpers import HelperProcess


def query(ns: NetNamespace, server: str, name: str, rdtype: str = "A"
          ) -> dns.message.Message:
    """A DNS query sent over a UDP socket made in ``ns``."""
    with ns.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)  # dnspython needs that of a socket it is given
        return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=10, sock=s)


def addresses_of(reply: dns.message.Message) -> set[str]:
    return {item.to_text() for rrset in reply.answer for item in rrset}


def resolver_of(nets: Networks, network: str) -> HelperProcess | None:
    return HelperProcess.from_json(nets.dir.read(nets.get(network).id, "resolver.json"))


def test_endpoints_find_each_other_by_name_in_either_order_and_by_alias(
        nets: Networks, containers: Containers) -> None:
    net = nets.create("app")
    a, b = containers.new(), containers.new()
    ea = nets.connect("app", a, owner="a", name="web", aliases=["www", "frontend"])
    # b is connected after a asks for it: the name appears once b exists.
    reply = query(a, net.gateway, "db")
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN"
    eb = nets.connect("app", b, owner="b", name="db")
    assert addresses_of(query(a, net.gateway, "db")) == {eb.ipv4}
    assert addresses_of(query(b, net.gateway, "web")) == {ea.ipv4}
    assert addresses_of(query(b, net.gateway, "WWW.")) == {ea.ipv4}
    assert addresses_of(query(b, net.gateway, "frontend")) == {ea.ipv4}
    ptr = query(b, net.gateway, ".".join(reversed(ea.ipv4.split("."))) + ".in-addr.arpa",
                "PTR")
    assert addresses_of(ptr) == {"web."}
    nets.disconnect(eb)
    assert dns.rcode.to_text(query(a, net.gateway, "db").rcode()) == "NXDOMAIN"


def test_getent_and_getaddrinfo_in_a_container_resolve_names(
        nets: Networks, containers: Containers) -> None:
    if not have("getent"):
        pytest.skip("getent is not installed")
    nets.create("app")
    a, b = containers.new(), containers.new()
    nets.connect("app", a, owner="a", name="web", aliases=["www"])
    eb = nets.connect("app", b, owner="b", name="db")
    hosts, resolv = nets.container_files("a", "web")
    assert resolv.startswith(f"nameserver {nets.get('app').gateway}\n")
    code, out = containers.run_with_files(a, ["getent", "hosts", "db"], hosts=hosts,
                                          resolv=resolv)
    assert code == 0 and out.split()[:2] == [eb.ipv4, "db"]
    code, out = containers.run_with_files(
        b, [sys.executable, "-I", "-S", "-c",
            "import socket; print(socket.getaddrinfo('www', 80, socket.AF_INET)[0][4][0])"],
        hosts=nets.container_files("b", "db")[0], resolv=resolv)
    assert code == 0, out
    assert out.strip() == nets.endpoints(owner="a")[0].ipv4


def test_other_names_are_forwarded_upstream_except_from_an_internal_network(
        nets: Networks, containers: Containers, upstream: Upstream) -> None:
    net = nets.create("app")
    closed = nets.create("closed", internal=True)
    a, c = containers.new(), containers.new()
    nets.connect("app", a, owner="a", name="web")
    nets.connect("closed", c, owner="c", name="secret")
    assert addresses_of(query(a, net.gateway, UPSTREAM_NAME)) == {UPSTREAM_ADDR}
    assert UPSTREAM_NAME in upstream.queries
    asked = len(upstream.queries)
    reply = query(c, closed.gateway, UPSTREAM_NAME)
    assert dns.rcode.to_text(reply.rcode()) == "SERVFAIL"
    assert len(upstream.queries) == asked  # nothing left the internal network
    assert addresses_of(query(c, closed.gateway, "secret")) == {
        nets.endpoints(owner="c")[0].ipv4}


def test_a_direct_query_over_tcp_works_too(nets: Networks, containers: Containers) -> None:
    net = nets.create("app")
    a = containers.new()
    ea = nets.connect("app", a, owner="a", name="web")
    with a.socket() as s:
        s.settimeout(10)
        s.connect((net.gateway, 53))
        s.setblocking(False)
        reply = dns.query.tcp(dns.message.make_query("web", "A"), net.gateway, timeout=10,
                              sock=s)
    assert addresses_of(reply) == {ea.ipv4}


def test_the_resolver_starts_with_the_first_endpoint_and_goes_with_the_last(
        nets: Networks, containers: Containers) -> None:
    nets.create("app")
    assert resolver_of(nets, "app") is None
    e1 = nets.connect("app", containers.new(), owner="a", name="one")
    first = resolver_of(nets, "app")
    assert first is not None and first.alive()
    e2 = nets.connect("app", containers.new(), owner="b", name="two")
    assert resolver_of(nets, "app") == first  # one per network
    nets.disconnect(e1)
    assert first.alive()
    nets.disconnect(e2)
    assert resolver_of(nets, "app") is None
    assert eventually(lambda: not first.alive())


def test_a_killed_resolver_is_restarted_and_a_stray_one_pruned(
        nets: Networks, containers: Containers) -> None:
    net = nets.create("app")
    a = containers.new()
    nets.connect("app", a, owner="a", name="web")
    first = resolver_of(nets, "app")
    assert first is not None
    first.stop()
    ep = nets.connect("app", containers.new(), owner="b", name="db")
    second = resolver_of(nets, "app")
    assert second is not None and second != first and second.alive()
    assert addresses_of(query(a, net.gateway, "db")) == {ep.ipv4}


def test_a_resolver_answers_only_its_own_networks_containers(
        nets: Networks, containers: Containers) -> None:
    net = nets.create("app")
    other = nets.create("other")
    a, b = containers.new(), containers.new()
    ea = nets.connect("app", a, owner="a", name="web")
    nets.connect("other", b, owner="b", name="spy")
    assert addresses_of(query(a, net.gateway, "web")) == {ea.ipv4}
    # b's packets reach app's resolver through the host (its default route), and are
    # refused: no name of app, nor forwarding through it, for another network.
    for name in ("web", UPSTREAM_NAME):
        reply = query(b, net.gateway, name)
        assert dns.rcode.to_text(reply.rcode()) == "REFUSED" and not reply.answer
    # Its own network's resolver answers it (and not with app's names).
    assert dns.rcode.to_text(query(b, other.gateway, "web").rcode()) == "NXDOMAIN"
    assert addresses_of(query(b, other.gateway, "spy")) == {
        nets.endpoints(owner="b")[0].ipv4}
