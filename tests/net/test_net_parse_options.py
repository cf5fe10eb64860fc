"""Docker's network option grammar: -p, --network, --network-alias, --ip, --dns, --add-host."""

from __future__ import annotations

import pytest

from isolate.errors import ConfigError
from isolate.net import (
    NetworkMode,
    PortBinding,
    PortMapping,
    format_bindings,
    parse_add_host,
    parse_dns,
    parse_ip,
    parse_network,
    parse_network_alias,
    parse_publish,
)
from isolate.net.options import parse_dns_option, parse_dns_search


@pytest.mark.parametrize(("spec", "expected"), [
    ("80", PortMapping(80, 80)),
    ("9090:80", PortMapping(80, 80, 9090, 9090)),
    ("9090:80/udp", PortMapping(80, 80, 9090, 9090, "udp")),
    ("127.0.0.1:9090:80", PortMapping(80, 80, 9090, 9090, "tcp", "127.0.0.1")),
    ("127.0.0.1::80", PortMapping(80, 80, 0, 0, "tcp", "127.0.0.1")),
    ("0.0.0.0:9090:80", PortMapping(80, 80, 9090, 9090)),
    ("[::1]:9090:80/tcp", PortMapping(80, 80, 9090, 9090, "tcp", "::1")),
    ("8000-8002:80-82", PortMapping(80, 82, 8000, 8002)),
    ("8000-8010:80", PortMapping(80, 80, 8000, 8010)),
    ("80-82", PortMapping(80, 82)),
    ("53/UDP", PortMapping(53, 53, 0, 0, "udp")),
])
def test_publish_specs_parse_as_docker_reads_them(spec: str, expected: PortMapping) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", [
    "", "abc", "80/sctpx", "0", "70000", "9090:", "1.2.3.4:80",
    "8000-8002:80-81", "82-80", "::1:80:80", "[::1]80:80", "300.1.1.1:80:80", "a:b:c:d",
    "9090:80/", "-1", "80-", "+80",
])
def test_malformed_publish_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_publish(spec)


def test_a_mapping_knows_its_kind_and_prints_back() -> None:
    assert parse_publish("80").ephemeral
    assert parse_publish("8000-8010:80").any_of_range
    assert not parse_publish("8000-8002:80-82").any_of_range
    for spec in ("9090:80/udp", "127.0.0.1:9090:80/tcp", "[::1]:9090:80/tcp", "80-82/tcp"):
        assert parse_publish(str(parse_publish(spec))) == parse_publish(spec)


def test_bindings_print_as_docker_ps_shows_them_and_overlap_by_address() -> None:
    a = PortBinding("tcp", "", 9090, 80)
    b = PortBinding("tcp", "127.0.0.1", 9090, 81)
    c = PortBinding("udp", "", 9090, 80)
    assert format_bindings([a, PortBinding("udp", "::1", 53, 53)]) == \
        "0.0.0.0:9090->80/tcp, [::1]:53->53/udp"
    assert a.overlaps(b) and not a.overlaps(c)
    assert not b.overlaps(PortBinding("tcp", "10.0.0.1", 9090, 80))
    assert PortBinding.from_json(b.to_json()) == b


@pytest.mark.parametrize(("value", "mode"), [
    ("none", NetworkMode("none")),
    ("host", NetworkMode("host")),
    ("bridge", NetworkMode("bridge")),
    ("default", NetworkMode("bridge")),
    ("mynet", NetworkMode("network", "mynet")),
    ("container:web", NetworkMode("container", "web")),
    ("ns:/run/netns/x", NetworkMode("ns", "/run/netns/x")),
    ("pasta", NetworkMode("pasta")),
    ("pasta:--mtu,1400", NetworkMode("pasta", options=("--mtu", "1400"))),
    ("slirp4netns", NetworkMode("slirp4netns")),
    ("name=mynet,alias=db,alias=pg,ip=172.20.0.5",
     NetworkMode("network", "mynet", ("db", "pg"), "172.20.0.5")),
])
def test_network_values_parse(value: str, mode: NetworkMode) -> None:
    assert parse_network(value) == mode


def test_network_mode_names_its_network() -> None:
    assert parse_network("bridge").network == "bridge"
    assert parse_network("mynet").network == "mynet" and parse_network("mynet").joins_network
    assert not parse_network("host").joins_network


@pytest.mark.parametrize("value", [
    "", "container:", "ns:relative", "-bad", "name=a,name=b", "name=a,foo=1", "alias=x",
    "name=host,alias=x", "name=n,ip=1.2.3", "name=n,ip6=10.0.0.1", "name=n,ip=1.1.1.1,ip=2.2.2.2",
])
def test_bad_network_values_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_network(value)


def test_aliases_ips_and_dns_servers_are_checked() -> None:
    assert parse_network_alias("web.") == "web"
    assert parse_network_alias("my_db-1") == "my_db-1"
    for bad in ("", "a b", "-x", "x" * 64):
        with pytest.raises(ConfigError):
            parse_network_alias(bad)
    assert parse_ip("172.20.0.5", 4) == "172.20.0.5"
    assert parse_ip("fd00::0005", 6) == "fd00::5"
    for bad, version in (("172.20.0.5", 6), ("fd00::5", 4), ("0.0.0.0", None),
                         ("127.0.0.1", None), ("x", None)):
        with pytest.raises(ConfigError):
            parse_ip(bad, version)
    assert parse_dns("10.0.0.1") == "10.0.0.1"
    assert parse_dns("10.0.0.1#5353") == "10.0.0.1#5353"
    for bad in ("dns.example", "10.0.0.1#0", "10.0.0.1#x"):
        with pytest.raises(ConfigError):
            parse_dns(bad)
    assert parse_dns_search("example.com") == "example.com"
    assert parse_dns_search(".") == "."
    assert parse_dns_option("ndots:2") == "ndots:2"
    with pytest.raises(ConfigError):
        parse_dns_option("nd ots")


def test_add_host_takes_both_separators_and_host_gateway() -> None:
    assert parse_add_host("db:10.0.0.5").ip == "10.0.0.5"
    assert parse_add_host("db=10.0.0.5").name == "db"
    assert parse_add_host("v6:[fd00::1]").ip == "fd00::1"
    gw = parse_add_host("host.docker.internal:host-gateway")
    assert gw.resolve("172.17.0.1") == "172.17.0.1"
    with pytest.raises(ConfigError):
        gw.resolve(None)
    for bad in ("db", "db:", ":1.2.3.4", "db:1.2.3", "d b:1.2.3.4"):
        with pytest.raises(ConfigError):
            parse_add_host(bad)
