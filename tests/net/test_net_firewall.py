"""The four firewall verbs on their own: idempotent, atomic, and gone without a trace."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conftest import have, nft_table
from isolate.errors import ConfigError, NetworkError
from isolate.net import NetNamespace, NftablesFirewall, NoFirewall, PortBinding
from isolate.net.firewall import NetworkRules, PortForward, make_firewall

NET = NetworkRules("a" * 64, "isobaaaaaaaaaaa", ("172.30.0.0/24",))
OTHER_NET = NetworkRules("b" * 64, "isobbbbbbbbbbbb", ("172.31.0.0/24",), internal=True)


@pytest.fixture
def fw(host: NetNamespace) -> Iterator[NftablesFirewall]:
    if not have("nft"):
        pytest.skip("nft is not installed")
    firewall = NftablesFirewall(host)
    try:
        yield firewall
    finally:
        firewall.close()


def elements(fw: NftablesFirewall, name: str) -> list[object]:
    for item in fw.ruleset():
        if "map" in item and item["map"]["name"] == name:
            return list(item["map"].get("elem", []))
        if "set" in item and item["set"]["name"] == name:
            return list(item["set"].get("elem", []))
    return []


def test_network_verbs_are_idempotent_and_the_last_removes_the_table(
        fw: NftablesFirewall, host: NetNamespace) -> None:
    fw.setup_network(NET)
    first = nft_table(host)
    fw.setup_network(NET)  # again: the same table, no duplicated rule
    assert nft_table(host) == first
    fw.setup_network(OTHER_NET)
    assert elements(fw, "bridges") == sorted([NET.bridge, OTHER_NET.bridge])
    text = nft_table(host)
    assert f'oifname != "{NET.bridge}" masquerade' in text
    assert f'oifname != "{OTHER_NET.bridge}" masquerade' not in text  # internal: no way out
    fw.teardown_network(OTHER_NET, complete=False)
    fw.teardown_network(OTHER_NET, complete=False)  # twice: nothing to remove is no error
    assert nft_table(host) == first
    fw.teardown_network(NET, complete=True)
    assert nft_table(host) == ""
    fw.teardown_network(NET, complete=True)


def test_port_forward_verbs_add_and_remove_map_elements(fw: NftablesFirewall) -> None:
    fw.setup_network(NET)
    pf = PortForward(NET, "172.30.0.2", None, (
        PortBinding("tcp", "", 9090, 80), PortBinding("udp", "127.0.0.1", 5353, 53)))
    fw.setup_port_forward(pf)
    fw.setup_port_forward(pf)
    assert len(elements(fw, "pf4any_addr")) == 1 and len(elements(fw, "pf4at_port")) == 1
    fw.teardown_port_forward(pf)
    fw.teardown_port_forward(pf)
    assert elements(fw, "pf4any_addr") == [] and elements(fw, "pf4at_addr") == []
    fw.teardown_network(NET, complete=True)


def test_sweep_removes_what_no_record_names_and_keeps_the_rest(fw: NftablesFirewall,
                                                              host: NetNamespace) -> None:
    assert fw.sweep([NET], ["172.30.0.2"]) == []  # no table: nothing to do
    fw.setup_network(NET)
    fw.setup_network(OTHER_NET)
    kept = PortForward(NET, "172.30.0.2", "fd00::2", (PortBinding("tcp", "", 9090, 80),))
    stray = PortForward(NET, "172.30.0.9", None, (
        PortBinding("tcp", "", 9091, 80), PortBinding("udp", "10.99.0.1", 5353, 53)))
    fw.setup_port_forward(kept)
    fw.setup_port_forward(stray)
    done = fw.sweep([NET], ["172.30.0.2", "fd00:0::2"])
    assert sorted(done) == sorted([
        "port forward tcp 9091 to 172.30.0.9", "port forward 10.99.0.1 udp 5353 to 172.30.0.9",
        f"the rules of bridge {OTHER_NET.bridge}", f"firewall chain n-{'b' * 12}-fwd",
        f"firewall chain n-{'b' * 12}-from", f"firewall chain n-{'b' * 12}-to"])
    for name in ("pf4any_addr", "pf4any_port", "pf6any_addr", "pf6any_port"):
        assert len(elements(fw, name)) == 1, name  # the kept forward, both families
    assert elements(fw, "pf4at_addr") == [] and elements(fw, "pf4at_port") == []
    assert elements(fw, "bridges") == [NET.bridge]
    assert "n-bbbbbbbbbbbb" not in nft_table(host) and "n-aaaaaaaaaaaa-to" in nft_table(host)
    assert fw.sweep([NET], ["172.30.0.2", "fd00::2"]) == []
    fw.teardown_network(NET, complete=True)


def test_the_forwarding_guard_drops_what_is_not_isolates(fw: NftablesFirewall,
                                                         host: NetNamespace) -> None:
    fw.setup_network(NET, guard_forwarding=True)
    rules = [i["rule"] for i in fw.ruleset() if "rule" in i and i["rule"]["chain"] == "forward"]
    assert rules[-1]["expr"] == [{"drop": None}]
    fw.setup_network(NET)
    rules = [i["rule"] for i in fw.ruleset() if "rule" in i and i["rule"]["chain"] == "forward"]
    assert rules[-1]["expr"] != [{"drop": None}]
    fw.teardown_network(NET, complete=True)


def test_a_refused_transaction_changes_nothing_and_says_why(fw: NftablesFirewall,
                                                            host: NetNamespace) -> None:
    fw.setup_network(NET)
    before = nft_table(host)
    with pytest.raises(NetworkError, match="nft") as info:
        fw.apply([{"add": {"rule": {"family": "inet", "table": "isolate", "chain": "forward",
                                    "expr": [{"accept": None}]}}},
                  {"add": {"rule": {"family": "inet", "table": "isolate", "chain": "nope",
                                    "expr": [{"accept": None}]}}}])
    assert "nope" in str(info.value) or "No such file" in str(info.value)
    assert nft_table(host) == before  # the first command of the batch did not land either
    fw.teardown_network(NET, complete=True)
    json.dumps(fw.ruleset())


def test_the_none_backend_and_unknown_backends(host: NetNamespace) -> None:
    fw = make_firewall("none", host)
    assert isinstance(fw, NoFirewall)
    fw.setup_network(NET)
    fw.setup_port_forward(PortForward(NET, "172.30.0.2", None, ()))
    fw.teardown_port_forward(PortForward(NET, "172.30.0.2", None, ()))
    assert fw.sweep([], []) == []
    fw.teardown_network(NET, complete=True)
    assert nft_table(host) == ""
    with pytest.raises(ConfigError, match="unknown firewall backend"):
        make_firewall("iptables", host)
