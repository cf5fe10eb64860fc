"""What the networks directory survives: a crash at each step of connect and disconnect, torn
and garbled files, and a reboot (records of another boot, a network whose bridge is gone).

Every record is written temp, fsync, rename; an endpoint being made is ``<id>.creating`` until
it is complete. These tests hold the code to what that needs: a crash in the middle of connect
is rolled back from that record, a record of another boot or a torn one is dropped without
touching the kernel, a lost or garbled hint costs only the round-robin, and a network outlives
its bridge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dns.rcode
import pytest
from net_helpers import http_get
from test_net_dns import addresses_of, query, resolver_of

from conftest import Containers, eventually, links, nft_table
from isolate.net import NetNamespace, Network, Networks, process_owner

_CRASH_AT = """
import os, sys
from isolate.net import Networks
from isolate.net._store import Directory
store, host_fd, ns_fd, where = sys.argv[1:5]
with Networks(store, host=int(host_fd), upstream=[]) as nets:
    write, remove = Directory.write, Directory.remove
    def crash_write(self, data, *parts):
        if where == "record" and parts[-2:-1] == ("endpoints",):
            os._exit(9)  # the hint is written; no record yet
        return write(self, data, *parts)
    def crash_fsync(fd):
        os._exit(9)  # the record is written, not yet renamed into place
    if where == "fsync-record":
        def crash_write(self, data, *parts, write=write):
            if parts[-2:-1] == ("endpoints",):
                os.fsync = crash_fsync
            return write(self, data, *parts)
    rename = Directory.rename
    def crash_rename(self, old, new):
        if where == "made":
            os._exit(9)  # everything is made; the record still says it is being made
        return rename(self, old, new)
    Directory.rename = crash_rename
    def crash_remove(self, *parts):
        if where == "unlink" and parts[-2:-1] == ("endpoints",):
            os._exit(9)  # the veth is gone; its record is not
        return remove(self, *parts)
    Directory.write, Directory.remove = crash_write, crash_remove
    ep = nets.connect("n", int(ns_fd), owner="crasher", ports=["9090:80"])
    nets.disconnect(ep)
"""


def _crash(store: Path, host: NetNamespace, ns: NetNamespace, where: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _CRASH_AT, str(store), str(host.fileno()),
                           str(ns.fileno()), where], pass_fds=(host.fileno(), ns.fileno()),
                          timeout=120, check=False, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr


def _record_files(nets: Networks, net_id: str) -> list[str]:
    return sorted(os.listdir(nets.dir.file(net_id, "endpoints"))) \
        if os.path.isdir(nets.dir.file(net_id, "endpoints")) else []


def _crashed_connect(nets: Networks, host: NetNamespace, containers: Containers, store: Path,
                     where: str) -> tuple[Network, NetNamespace, list[str]]:
    """A network, and a connect to it that crashed at ``where``; the records it left."""
    net = nets.create("n", subnet="172.30.0.0/24")
    ns = containers.new()
    _crash(store, host, ns, where)
    return net, ns, _record_files(nets, net.id)


def test_a_crash_before_the_record_is_written_leaves_nothing_made(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    net, ns, files = _crashed_connect(nets, host, containers, store, "record")
    assert files == []
    ep = nets.connect("n", containers.new(), owner="next")
    assert [e.owner for e in nets.endpoints()] == ["next"]
    assert _record_files(nets, net.id) == [ep.id + ".json"]
    assert "eth0" not in links(ns)


def test_a_crash_before_the_record_is_renamed_into_place_leaves_only_a_temp_file(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    net, ns, (temp,) = _crashed_connect(nets, host, containers, store, "fsync-record")
    assert temp.startswith(".")  # invisible to readers; nothing was made from it
    assert nets.endpoints() == [] and "eth0" not in links(ns)
    assert "9090" not in nft_table(host)
    nets.prune()
    assert _record_files(nets, net.id) == []


def test_a_crash_in_the_middle_of_connect_is_rolled_back_by_the_next_change(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    net, ns, (name,) = _crashed_connect(nets, host, containers, store, "made")
    assert name.endswith(".creating")
    ep = json.loads(Path(nets.dir.file(net.id, "endpoints", name)).read_text())
    # Everything was made: the veth, the address, the port forward.
    assert ep["host_ifname"] in links(host) and "eth0" in links(ns)
    assert "9090" in nft_table(host)
    assert nets.endpoints() == []  # not an endpoint anyone sees
    # The next change (here: a connect of the same host port) rolls it back first.
    again = nets.connect("n", containers.new(), owner="next", ports=["9090:80"])
    assert _record_files(nets, net.id) == [again.id + ".json"]
    assert ep["host_ifname"] not in links(host)
    assert eventually(lambda: "eth0" not in links(ns))
    assert again.ipv4 != ep["ipv4"]  # round-robin: its address is not given at once


def test_a_crash_between_deleting_the_veth_and_its_record_is_pruned(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    net = nets.create("n", subnet="172.30.0.0/24")
    ns = containers.new()
    _crash(store, host, ns, "unlink")
    # The record outlived what it describes: its veth (gone with both ends before the
    # crash), and not its port forward, which went first.
    (ep,) = nets.endpoints()
    assert ep.host_ifname not in links(host) and "eth0" not in links(ns)
    assert "9090" not in nft_table(host)
    assert any(ep.id[:12] in d and "namespace is gone" in d for d in nets.prune())
    assert nets.endpoints() == [] and _record_files(nets, net.id) == []
    # Its address and host port are free again.
    again = nets.connect("n", containers.new(), owner="again", ip=ep.ipv4, ports=["9090:80"])
    assert again.ipv4 == ep.ipv4


def test_a_torn_endpoint_record_is_dropped_and_everything_else_goes_on(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    net = nets.create("app")
    a, b = containers.new(), containers.new()
    ea = nets.connect("app", a, owner="a", name="web")
    eb = nets.connect("app", b, owner="b", name="db")
    # What a disk error or a hand can leave of a record (put there as isolate puts files: a
    # new inode renamed over the old).
    path = Path(nets.dir.file(net.id, "endpoints", eb.id + ".json"))
    torn = path.with_name(".torn")
    torn.write_bytes(path.read_bytes()[:40])
    os.rename(torn, path)
    assert dns.rcode.to_text(query(a, net.gateway, "db").rcode()) == "NXDOMAIN"
    assert addresses_of(query(b, net.gateway, "web")) == {ea.ipv4}  # the resolver goes on
    assert [e.id for e in nets.endpoints()] == [ea.id]  # dropped, not an error
    assert not path.exists()
    # It described nothing that could exist after a crash that tears files; here its veth
    # does, and prune removes it as a device no record names.
    assert f"device {eb.host_ifname}" in nets.prune()
    assert eb.host_ifname not in links(host)
    ec = nets.connect("app", containers.new(), owner="c", ip=eb.ipv4)
    assert ec.ipv4 == eb.ipv4  # its lease went with it


@pytest.mark.parametrize("damage", ["garbled", "lost", "foreign"])
def test_a_damaged_hint_costs_only_the_round_robin(
        nets: Networks, containers: Containers, store: Path, damage: str) -> None:
    net = nets.create("n", subnet="172.30.0.0/24")
    e2 = nets.connect("n", containers.new(), owner="a")
    e3 = nets.connect("n", containers.new(), owner="b")
    e4 = nets.connect("n", containers.new(), owner="c")
    nets.disconnect(e4)
    e5 = nets.connect("n", containers.new(), owner="d")
    assert e5.ipv4 == "172.30.0.5"  # the hint: .4 is not given again at once
    nets.disconnect(e5)
    hint = Path(nets.dir.file(net.id, "hint"))
    assert os.readlink(hint) == "172.30.0.5,"
    hint.unlink()
    if damage == "garbled":
        hint.symlink_to("\x01 not, an address")
    elif damage == "foreign":
        hint.symlink_to("10.1.2.3,")  # not of this network
    # Rebuilt from the records: after the highest address in use, and nothing twice.
    e6 = nets.connect("n", containers.new(), owner="e")
    assert e6.ipv4 == "172.30.0.4"
    assert {e.ipv4 for e in nets.endpoints()} == {e2.ipv4, e3.ipv4, e6.ipv4}
    assert os.readlink(hint) == "172.30.0.4,"


def test_after_a_reboot_old_records_are_dropped_and_the_network_is_built_again(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    net = nets.create("app", subnet="172.30.0.0/24")
    old = nets.connect("app", containers.new(), owner="old", name="old", ports=["9090:80"])
    resolver = resolver_of(nets, "app")
    assert resolver is not None
    # What a reboot does: every device, rule, process and sysctl of the kernel is gone; the
    # files come back as they were, from another boot.
    resolver.stop()
    with host.netlink() as ipr:
        for name in (old.host_ifname, net.bridge):
            ipr.link("del", ifname=name)
    host.run(["nft", "delete", "table", "inet", "isolate"])
    host.write_sysctls({"net.ipv4.ip_forward": "0"})
    for parts in ((net.id, "endpoints", old.id + ".json"), (net.id, "resolver.json"),
                  ("host.json",)):
        data = nets.dir.read(*parts)
        nets.dir.write({**data, "boot": "a-previous-boot"}, *parts)
    assert nets.endpoints() == []  # nothing of that boot exists
    web = containers.new()
    ep = nets.connect("app", web, owner="new", name="new", ports=["9090:80"])
    assert net.bridge in links(host) and host.read_sysctl("net.ipv4.ip_forward") == "1"
    containers.httpd(web, 80, "after reboot")
    assert http_get(host, "127.0.0.1", 9090) == "after reboot"
    assert addresses_of(query(web, net.gateway, "new")) == {ep.ipv4}
    assert resolver_of(nets, "app") not in (None, resolver)
    nets.disconnect(ep)
    nets.remove("app")
    # The sysctl isolate found at "boot" is what it puts back.
    assert host.read_sysctl("net.ipv4.ip_forward") == "0"
    assert eventually(lambda: not resolver.alive())


_RELEASE = """
import json, sys
from isolate.net import Networks
store, host_fd = sys.argv[1:3]
with Networks(store, host=int(host_fd)) as nets:
    gone = [ep.id for owner in sys.argv[3:] for ep in nets.release(owner)]
print(json.dumps({"gone": gone, "modules": sorted(
    m for m in sys.modules if m.startswith(("pyroute2", "isolate.net.", "hashlib")))}))
"""


def test_a_release_in_a_fresh_interpreter_loads_only_what_it_needs(
        nets: Networks, host: NetNamespace, containers: Containers, store: Path) -> None:
    """The container's exit command releases its endpoints in an interpreter of its own: it
    loads neither pyroute2 (over 100 ms there) nor what makes networks and endpoints (IPAM,
    option parsers, file builders, user-mode networking) -- and still removes everything: a
    veth whose namespace is gone, a live namespace's veth (deleted), a port forward."""
    net = nets.create("n", subnet="172.30.0.0/24")
    with NetNamespace.create() as short_lived:
        ended = nets.connect("n", short_lived, owner="ended")
    # (its namespace is gone with the handle: the veth went with it)
    live_ns = containers.new()
    live = nets.connect("n", live_ns, owner="live", ports=["9090:80"])
    assert live.host_ifname in links(host) and "9090" in nft_table(host)
    proc = subprocess.run([sys.executable, "-c", _RELEASE, str(store), str(host.fileno()),
                           "ended", "live"], pass_fds=(host.fileno(),), timeout=120,
                          check=True, capture_output=True, text=True)
    r = json.loads(proc.stdout)
    assert sorted(r["gone"]) == sorted([ended.id, live.id])
    assert r["modules"] == ["isolate.net._helpers", "isolate.net._netlink", "isolate.net._ns",
                            "isolate.net._store", "isolate.net.firewall",
                            "isolate.net.network", "isolate.net.ports"], r
    assert nets.endpoints() == [] and _record_files(nets, net.id) == []
    assert live.host_ifname not in links(host) and "eth0" not in links(live_ns)
    assert "9090" not in nft_table(host)


def test_a_kept_helper_goes_with_its_owner_also_after_a_crash(
        nets: Networks, host: NetNamespace, containers: Containers) -> None:
    """``keep_helper``: a process kept for an owner is stopped by ``release(owner)``, and --
    its owner gone without a release (a crash) -- by the next change of any network."""
    from isolate.net._helpers import HelperProcess

    nets.create("n", subnet="172.30.0.0/24")
    owner = subprocess.Popen(["sleep", "1000"])
    orphan = subprocess.Popen(["sleep", "1000"])
    kept = subprocess.Popen(["sleep", "1000"])
    try:
        crashed = process_owner(owner.pid)
        first = HelperProcess.of(orphan.pid, "test helper")
        second = HelperProcess.of(kept.pid, "test helper")
        nets.keep_helper(crashed, first)
        nets.keep_helper("someone", second)
        nets.connect("n", containers.new(), owner="other")  # a change: its owner lives
        assert first.alive() and second.alive()
        owner.kill()
        owner.wait()
        nets.connect("n", containers.new(), owner="other2")  # the next change sweeps it
        # (stop() reaps a child of the caller's: gone, not a zombie)
        assert not first.alive() and second.alive()
        nets.release("someone")
        assert not second.alive()
        assert nets.dir.list("helpers") == []
    finally:
        for p in (owner, orphan, kept):
            p.kill()
            p.wait()
