"""The network commands and flags of the CLI, with real packets: ``network create/ls/inspect/
rm/prune/connect/disconnect``, ``run -d -p 9090:80 IMAGE`` (the README's flow), ``port``,
``ps``'s ports, names between containers on a network, ``--network`` twice, a throwaway
``run --net NAME -- CMD``, and the one-line errors. Every bridge, veth and rule is made inside
a network namespace each test makes to play the host (``$ISOLATE_NETWORK_NS`` points the CLI
at it); nothing of it may be left when the test ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolate.container import netdriver
from isolate.net import NetNamespace

from .conftest import WAIT, Isolate

sys.path.insert(0, str(Path(__file__).parent.parent / "net"))
from net_helpers import OTHER, fetch, helper_pids, make_host

pytestmark = [pytest.mark.root, pytest.mark.network]

HTTPD = "echo hello from $(hostname) > /srv/index.html && exec httpd -f -p 80 -h /srv"


def _links(ns: NetNamespace) -> set[str]:
    with ns.netlink() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _nft(ns: NetNamespace) -> str:
    res = ns.run(["nft", "list", "ruleset"], check=False)
    return res.stdout.decode() if res.returncode == 0 else ""


class NetCli:
    """``isolate`` as a user runs it, its networks built in ``host``."""

    def __init__(self, cli: Isolate, host: NetNamespace) -> None:
        self.cli = cli
        self.host = host
        self.path = f"/proc/{os.getpid()}/fd/{host.fileno()}"
        cli.env = dict(cli.env, ISOLATE_NETWORK_NS=self.path)

    def __call__(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.cli(*args, **kw)  # type: ignore[arg-type]

    def ok(self, *args: str) -> str:
        return self.cli.ok(*args)

    def fails(self, *args: str) -> str:
        """Run it; it must fail with one line and exit 125; that line."""
        proc = self.cli(*args)
        assert proc.returncode == 125, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        return lines[0]

    def sh(self, container: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.cli("exec", container, "sh", "-c", script)

    def ip_of(self, container: str, network: str) -> str:
        doc = self.cli.inspect(container)
        nets = doc["NetworkSettings"]["Networks"]  # type: ignore[index]
        return str(nets[network]["IPAddress"])


@pytest.fixture
def net(detachable: Isolate) -> Iterator[NetCli]:
    """The CLI with a host namespace of the test's own; at the end every container the test
    made is removed, then every network, and nothing of them may remain in the namespace."""
    if shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("nft (Debian package nftables) is not installed")
    isolate_cli = detachable
    host = make_host()
    cli = NetCli(isolate_cli, host)
    before = set(isolate_cli.ok("ps", "-a", "-q", "--no-trunc").split())
    try:
        yield cli
    finally:
        left = set(isolate_cli.ok("ps", "-a", "-q", "--no-trunc").split()) - before
        if left:
            isolate_cli("rm", "-f", "-v", *sorted(left))
        # With its last member gone, a network has no resolver and no proxy left.
        helpers = helper_pids(os.path.join(str(isolate_cli.store), "networks"))
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        try:
            with netdriver.open_networks(str(isolate_cli.store), host) as nets:
                endpoints = [e.name or e.owner for e in nets.endpoints()]
                for n in nets.networks():
                    nets.remove(n.id)
                nets.prune(networks=True)
            links = {x for x in _links(host) if x.startswith(("isov", "isob", "isolate"))}
            rules = _nft(host)
        finally:
            host.close()
        assert not helpers, f"helper processes left after the containers went: {helpers}"
        assert not endpoints, f"endpoints left after the containers went: {endpoints}"
        assert not links, links
        assert "isolate" not in rules, rules


def _free_port(host: NetNamespace) -> int:
    with host.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


# -- the README's flow -------------------------------------------------------------------------

def test_run_d_p_publishes_a_port_shown_by_ps_and_port(net: NetCli) -> None:
    cid = net.ok("run", "-d", "--name", "web", "-p", "9090:80", "busybox", "sh", "-c",
                 HTTPD).strip()
    assert fetch(net.host, "127.0.0.1", 9090).startswith("hello from")
    assert fetch(net.host, OTHER, 9090).startswith("hello from")
    ps = net.ok("ps", "--format", "{{.Names}} {{.Ports}}")
    assert "web 0.0.0.0:9090->80/tcp" in ps.splitlines(), ps
    assert net.ok("port", "web").splitlines() == ["80/tcp -> 0.0.0.0:9090"]
    assert net.ok("port", "web", "80").splitlines() == ["0.0.0.0:9090"]
    doc = net.cli.inspect(cid)
    assert doc["NetworkSettings"]["Ports"] == {  # type: ignore[index]
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9090"}]}
    # Another container reaches it through the host's address (hairpin).
    out = net("run", "--rm", "--network", "bridge", "busybox", "wget", "-q", "-O", "-",
              f"http://{OTHER}:9090/")
    assert out.returncode == 0 and out.stdout.startswith("hello from"), out
    net.ok("stop", "-t", "1", "web")
    assert net.ok("ps", "-a", "--format", "{{.Names}}:{{.Ports}}").count("web:\n") == 1
    assert not {x for x in _links(net.host) if x.startswith("isov")}
    with pytest.raises(OSError):
        fetch(net.host, "127.0.0.1", 9090, timeout=1)
    net.ok("rm", "web")


def test_an_ephemeral_host_port_on_one_address(net: NetCli) -> None:
    net.ok("run", "-d", "--name", "web", "-p", "127.0.0.1::80", "busybox", "sh", "-c", HTTPD)
    line = net.ok("port", "web", "80/tcp").strip()
    ip, _, port = line.rpartition(":")
    assert ip == "127.0.0.1" and int(port) > 0, line
    assert fetch(net.host, "127.0.0.1", int(port)).startswith("hello from")
    with pytest.raises(OSError):
        fetch(net.host, OTHER, int(port), timeout=1)


def test_publish_all_publishes_the_expose_ports(net: NetCli) -> None:
    net.ok("run", "-d", "--name", "web", "-P", "--expose", "8080", "busybox", "sh", "-c",
           HTTPD.replace("-p 80", "-p 8080"))
    assert net.cli.inspect("web")["Config"]["ExposedPorts"] == {  # type: ignore[index]
        "8080/tcp": {}}
    ip, _, port = net.ok("port", "web", "8080").strip().rpartition(":")
    assert ip == "0.0.0.0" and int(port) > 0
    assert fetch(net.host, "127.0.0.1", int(port)).startswith("hello from")


# -- networks -----------------------------------------------------------------------------------

def test_network_create_ls_inspect_rm_and_prune(net: NetCli) -> None:
    nid = net.ok("network", "create", "--subnet", "172.30.5.0/24", "--gateway", "172.30.5.1",
                 "--label", "team=a", "app").strip()
    assert len(nid) == 64
    net.ok("network", "create", "-d", "bridge", "--internal", "--ipv6", "sealed")
    rows = net.ok("network", "ls").splitlines()
    assert rows[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(r.split()[1] for r in rows[1:]) == ["app", "sealed"]
    assert net.ok("network", "ls", "-q", "-f", "label=team=a").split() == [nid[:12]]
    [doc] = json.loads(net.ok("network", "inspect", "app"))
    assert doc["Id"] == nid and doc["Driver"] == "bridge" and doc["Internal"] is False
    assert doc["IPAM"]["Config"] == [{"Subnet": "172.30.5.0/24", "Gateway": "172.30.5.1"}]
    assert doc["Labels"] == {"team": "a"}
    assert net.ok("network", "inspect", "-f", "{{.Internal}} {{.EnableIPv6}}",
                  "sealed").strip() == "true true"
    # An overlapping subnet, an unknown network: one line each, nothing made.
    assert "172.30.5" in net.fails("network", "create", "--subnet", "172.30.0.0/16", "other")
    assert "nosuch" in net.fails("network", "inspect", "nosuch")
    assert "nosuch" in net.fails("network", "rm", "nosuch")
    # In use: refused; once the container is gone, removed.
    net.ok("create", "--name", "member", "--network", "app", "--ip", "172.30.5.50", "busybox",
           "sleep", "100")
    net.ok("start", "member")
    assert "in use" in net.fails("network", "rm", "app")
    [doc] = json.loads(net.ok("network", "inspect", "app"))
    [member] = doc["Containers"].values()
    assert member["Name"] == "member" and member["IPv4Address"] == "172.30.5.50/24"
    net.ok("rm", "-f", "member")
    assert net.ok("network", "rm", "app").strip() == "app"
    assert net.ok("network", "prune", "-f").splitlines() == ["Deleted Networks:", "sealed"]
    assert net.ok("network", "ls", "-q") == ""


def test_containers_find_each_other_by_name_and_alias_and_other_networks_cannot(
        net: NetCli) -> None:
    net.ok("network", "create", "app")
    net.ok("network", "create", "other")
    net.ok("run", "-d", "--name", "first", "--network", "app", "busybox", "sleep", "1000")
    net.ok("run", "-d", "--name", "web", "--network", "app", "--network-alias", "www",
           "--hostname", "webhost", "busybox", "sh", "-c", HTTPD)
    web_ip = net.ip_of("web", "app")
    # The earlier one finds the later one: libc's resolver (wget) and a direct DNS query to
    # the nameserver of its resolv.conf (nslookup asks it itself).
    out = net.sh("first", "for i in $(seq 100); do wget -q -O - http://www/ && exit 0; "
                          "sleep 0.2; done; exit 1")
    assert out.returncode == 0 and out.stdout == "hello from webhost\n", out
    server = net.sh("first", "sed -n 's/^nameserver //p' /etc/resolv.conf").stdout.split()[0]
    out = net.sh("first", f"nslookup web {server}")
    assert out.returncode == 0 and web_ip in out.stdout, out
    out = net.sh("web", "cat /etc/hosts")
    assert "webhost" in out.stdout, out
    # A container on another network reaches neither the name nor the address.
    net.ok("run", "-d", "--name", "outsider", "--network", "other", "busybox", "sleep", "1000")
    out = net.sh("outsider", f"timeout 3 wget -q -O - http://{web_ip}/")
    assert out.returncode != 0, out
    own = net.sh("outsider", "sed -n 's/^nameserver //p' /etc/resolv.conf").stdout.split()[0]
    assert own != server
    out = net.sh("outsider", f"nslookup web {own}")
    assert web_ip not in out.stdout, out


def test_an_internal_network_has_no_way_out(net: NetCli) -> None:
    with net.host.socket() as srv:
        srv.bind((OTHER, 0))
        srv.listen(4)
        port = srv.getsockname()[1]

        def serve() -> None:  # "pong" to each connection, until the socket closes
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"pong\n")

        threading.Thread(target=serve, daemon=True).start()
        net.ok("network", "create", "open")
        net.ok("network", "create", "--internal", "sealed")
        probe = f"timeout 10 nc {OTHER} {port} </dev/null"
        out = net("run", "--rm", "--network", "open", "busybox", "sh", "-c", probe)
        assert out.stdout == "pong\n", out
        out = net("run", "--rm", "--network", "sealed", "busybox", "sh", "-c", probe)
        assert out.stdout == "" and out.returncode != 0, out
        srv.shutdown(2)


def test_network_given_twice_and_connect_disconnect_of_a_running_container(
        net: NetCli) -> None:
    net.ok("network", "create", "red")
    net.ok("network", "create", "blue")
    net.ok("network", "create", "green")
    net.ok("run", "-d", "--name", "two", "--network", "red", "--network", "blue", "busybox",
           "sleep", "1000")
    assert set(net.cli.inspect("two")["NetworkSettings"]["Networks"]) == {  # type: ignore[index]
        "red", "blue"}
    assert net.sh("two", "ip -o addr show eth1").returncode == 0
    net.ok("run", "-d", "--name", "peer", "--network", "green", "busybox", "sleep", "1000")
    net.ok("network", "connect", "--alias", "deux", "green", "two")
    assert "green" in net.cli.inspect("two")["NetworkSettings"]["Networks"]  # type: ignore
    out = net.sh("peer", "for i in $(seq 50); do ping -c 1 -W 1 deux && exit 0; sleep 0.2; "
                         "done; exit 1")
    assert out.returncode == 0, out
    net.ok("network", "disconnect", "green", "two")
    assert "green" not in net.cli.inspect("two")["NetworkSettings"]["Networks"]  # type: ignore
    assert net.sh("two", "ip -o addr show eth2").returncode != 0
    assert "not connected" in net.fails("network", "disconnect", "green", "two")
    net.ok("network", "disconnect", "-f", "green", "two")
    assert "nosuch" in net.fails("network", "connect", "nosuch", "two")


def test_dns_add_host_and_hostname_shape_the_etc_files(net: NetCli) -> None:
    out = net.ok("run", "--rm", "--network", "bridge", "--hostname", "box", "--dns",
                 "10.1.2.3", "--dns-search", "example.com", "--dns-option", "ndots:2",
                 "--add-host", "db:10.0.0.5", "--add-host", "gw:host-gateway", "busybox",
                 "sh", "-c", "hostname; cat /etc/resolv.conf /etc/hosts")
    lines = out.splitlines()
    assert lines[0] == "box"
    assert "nameserver 10.1.2.3" in lines and "search example.com" in lines, out
    assert "options ndots:2" in lines, out
    hosts = [line.split() for line in lines if line and line[0].isdigit()]
    assert ["10.0.0.5", "db"] in hosts, out
    gateway = next(h for h in hosts if h[1:] == ["gw"])[0]
    assert gateway.startswith("172."), out  # the host's address on the default bridge
    assert any("box" in h[1:] for h in hosts), out


# -- bad input ----------------------------------------------------------------------------------

def test_bad_network_input_is_one_line_and_exit_125(net: NetCli) -> None:
    assert "99999" in net.fails("run", "-d", "-p", "99999:80", "busybox", "true")
    assert "nosuch" in net.fails("run", "-d", "--network", "nosuch", "busybox", "true")
    assert "nosuch" in net.fails("create", "--network", "nosuch", "busybox", "true")
    with net.host.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = net.fails("run", "-d", "--name", "clash", "-p", f"{port}:80", "busybox",
                         "sleep", "100")
        assert str(port) in line, line
    assert not {x for x in _links(net.host) if x.startswith("isov")}


# -- a throwaway sandbox ------------------------------------------------------------------------

def test_a_throwaway_run_joins_a_network_and_publishes_a_port(net: NetCli,
                                                               tmp_path: Path) -> None:
    net.ok("network", "create", "app")
    net.ok("run", "-d", "--name", "web", "--network", "app", "busybox", "sh", "-c", HTTPD)
    out = net("run", "--net", "app", "--", "busybox", "sh", "-c",
              "for i in $(seq 100); do busybox wget -q -O - http://web/ && exit 0; "
              "sleep 0.2; done; exit 1")
    assert out.returncode == 0 and out.stdout.startswith("hello from"), out
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("from a sandbox\n")
    www.chmod(0o755)
    port = _free_port(net.host)
    proc = net.cli.popen("run", "--net", "bridge", "-p", f"{port}:8080", "-v", f"{www}:/www",
                         "--", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert fetch(net.host, "127.0.0.1", port, timeout=WAIT) == "from a sandbox\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    assert "Traceback" not in err, err
    with netdriver.open_networks(str(net.cli.store), net.host) as nets:
        assert [e.name or e.owner for e in nets.endpoints()] == ["web"]
