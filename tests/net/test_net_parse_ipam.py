"""Address management and container files, without touching the kernel."""

from __future__ import annotations

import ipaddress

import pytest

from isolate.errors import ConfigError
from isolate.net import AddressPool, hosts_file, parse_add_host, resolv_conf
from isolate.net.files import parse_resolv_conf
from isolate.net.ipam import pick_subnet, pick_subnet6


def pool(subnet: str = "10.1.0.0/29") -> AddressPool:
    net = ipaddress.ip_network(subnet)
    return AddressPool(net, net.network_address + 1)


def test_addresses_skip_network_gateway_and_broadcast_and_never_repeat() -> None:
    p = pool()
    got = [p.allocate(f"e{i}") for i in range(5)]
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(ConfigError, match="no free address"):
        p.allocate("e9")


def test_a_released_address_is_reused_only_after_the_others() -> None:
    p = pool("10.1.0.0/28")
    a = p.allocate("a")
    p.allocate("b")
    p.release("a")
    assert p.allocate("c") == "10.1.0.4"  # round-robin: not the one just freed
    assert a not in p.leases


def test_requested_addresses_are_checked() -> None:
    p = pool()
    assert p.allocate("a", "10.1.0.5") == "10.1.0.5"
    for bad, what in (("10.1.0.5", "in use"), ("10.1.0.1", "reserved"),
                      ("10.1.0.7", "reserved"), ("10.2.0.1", "not in subnet"), ("x", "invalid")):
        with pytest.raises(ConfigError, match=what):
            p.allocate("b", bad)


def test_pools_round_trip_through_json() -> None:
    p = pool()
    p.allocate("a")
    q = AddressPool.from_json(p.subnet, p.gateway, p.to_json())
    assert q.leases == p.leases and q.allocate("b") == "10.1.0.3"


def test_free_subnets_avoid_what_is_taken() -> None:
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(pick_subnet(taken)) == "172.19.0.0/16"
    assert str(pick_subnet([], [("10.0.0.0/30", 31)])) == "10.0.0.0/31"
    with pytest.raises(ConfigError):
        pick_subnet([ipaddress.ip_network("10.0.0.0/8")], [("10.0.0.0/16", 24)])
    six = pick_subnet6("abc", [])
    assert six.prefixlen == 64 and six.is_private and str(six).startswith("fd")
    assert pick_subnet6("abc", [six]) != six


def test_hosts_file_lists_localhost_extra_hosts_and_the_container() -> None:
    text = hosts_file("web", ["172.17.0.2"], aliases=["www"],
                      extra=[parse_add_host("db:10.0.0.5"),
                             parse_add_host("gw:host-gateway")], gateway="172.17.0.1")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.0.0.5\tdb" in lines and "172.17.0.1\tgw" in lines
    assert lines[-1] == "172.17.0.2\tweb www"


def test_resolv_conf_names_the_resolver_or_the_hosts_servers_less_loopback() -> None:
    host = parse_resolv_conf("# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n"
                             "search corp.example\noptions ndots:2 edns0\n")
    assert resolv_conf(resolver="172.20.0.1", host=host) == \
        "nameserver 172.20.0.1\nsearch corp.example\noptions ndots:2 edns0\n"
    assert resolv_conf(host=host).startswith("nameserver 10.0.0.2\nsearch")
    assert resolv_conf(dns=["9.9.9.9#5353"], search=["."], options=[], host=host) == \
        "nameserver 9.9.9.9\n"
