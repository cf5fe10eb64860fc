"""Containers on bridge networks, with real packets: published ports (the host's loopback, its
other address, another container through the host), UDP, names between containers, isolated
and internal networks, conflicts, concurrent starts, connect/disconnect, and nothing left
after stop, rm or a SIGKILLed supervisor.

Everything happens inside a network namespace each test makes to play the host (the store's
``network_host``): no device, rule or packet touches the machine's own network namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore, netdriver
from isolate.errors import ConfigError
from isolate.image import Store
from isolate.net import NetNamespace

sys.path.insert(0, str(Path(__file__).parent.parent / "net"))
from net_helpers import OTHER, helper_pids, http_get, make_host

pytestmark = [pytest.mark.root, pytest.mark.network]

#: The host's /usr, bound read-only into the test image: glibc's getent (the libc resolver)
#: and Python for a UDP sink, next to the image's static busybox.
USR = "/usr:/usr:ro"

HTTPD = ["sh", "-c", "echo \"hello from $(hostname)\" > /var/www/index.html; "
         "exec httpd -f -p 80 -h /var/www"]


def _have(program: str) -> bool:
    return shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


@pytest.fixture
def host() -> Iterator[NetNamespace]:
    """A network namespace playing the host: lo up, ``OTHER``/24 on a veth of its own."""
    ns = make_host()
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture(scope="module")
def netbox(image_store: Store) -> str:
    """``netbox``: the busybox test image plus ``lib``/``lib64`` links into a ``/usr`` the
    tests bind from the host, ``hosts: files dns`` and ExposedPorts 80/tcp."""
    from isolate.image import ImageConfig

    from .conftest import _busybox_tree

    tree = Path(image_store.root).parent / "netbox-tree"
    if not tree.exists():
        tree.mkdir()
        _busybox_tree(tree)
        (tree / "usr").mkdir()
        (tree / "lib").symlink_to("usr/lib")
        (tree / "lib64").symlink_to("usr/lib64")
        (tree / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
        image_store.from_directory(tree, "netbox:latest", config=ImageConfig(
            env=["PATH=/bin:/usr/bin"], cmd=["sh"], exposed_ports=["80/tcp"]))
    return "netbox"


@pytest.fixture
def cs(image_store: Store, host: NetNamespace) -> Iterator[ContainerStore]:
    """Containers whose networks are built in ``host``; at the end every container the test
    made is removed, and then no endpoint, network record or helper process may be left."""
    if not _have("nft"):
        pytest.skip("nft (Debian package nftables) is not installed")
    store = ContainerStore(image_store, network_host=host)
    before = set(store.ids())
    directory = os.path.join(image_store.root, "networks")
    try:
        yield store
    finally:
        for cid in set(store.ids()) - before:
            try:
                store.get(cid).remove(force=True, volumes=True)
            except LookupError:
                pass
        with netdriver.open_networks(image_store.root, host) as nets:
            left = [e.name or e.owner for e in nets.endpoints()]
            for net in nets.networks():
                nets.remove(net.id)
            nets.prune(networks=True)
        helpers = helper_pids(directory)
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        assert not left, f"endpoints left after the containers went: {left}"
        assert not helpers, f"helper processes left running: {helpers}"


def fetch(ns: NetNamespace, addr: str, port: int, timeout: float = 30) -> str:
    """GET / through ``ns``, retried until the server in a just-started container listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(ns, addr, port, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _links(ns: NetNamespace) -> set[str]:
    with ns.netlink() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _nft(ns: NetNamespace) -> str:
    res = ns.run(["nft", "list", "table", "inet", "isolate"], check=False)
    return res.stdout.decode() if res.returncode == 0 else ""


def run(cs: ContainerStore, command: list[str], *, image: str = "busybox",
        **options: object) -> Container:
    """Create and start a container of ``cs`` (``docker run -d``)."""
    c = cs.create(ContainerConfig(image, command, **options))  # type: ignore[arg-type]
    c.start()
    return c


def _exec(c: Container, cmd: str) -> tuple[int, str]:
    code, out, err = c.exec_run(["sh", "-c", cmd])
    return code, (out + err).decode()


def test_a_published_port_answers_from_the_host_and_from_another_container(
        cs: ContainerStore, host: NetNamespace) -> None:
    web = run(cs, HTTPD, name="web", ports=["9090:80"])
    assert web.config.network == "bridge"  # -p without --network: the default network
    assert fetch(host, "127.0.0.1", 9090).startswith("hello from")   # the host's loopback
    assert fetch(host, OTHER, 9090).startswith("hello from")         # its other address
    client = run(cs, ["sleep", "1000"], name="client", network="bridge")
    # Hairpin: another container reaches it through the host's address and port.
    code, out = _exec(client, f"timeout 20 wget -q -O - http://{OTHER}:9090/")
    assert code == 0 and out.startswith("hello from"), out
    info = web.inspect()["NetworkSettings"]
    assert info["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9090"}]}
    assert info["Networks"]["bridge"]["IPAddress"] == info["IPAddress"] != ""
    from isolate.container import ps_row

    assert ps_row(web).ports == "0.0.0.0:9090->80/tcp"
    assert ps_row(client).ports == ""


def _wait_file(c: Container, path: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        code, out = _exec(c, f"cat {path} 2>/dev/null")
        if code == 0 and out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared in {c.name}")
        time.sleep(0.05)


UDP_SINK = ["python3", "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', 80))\n"
            "open('/tmp/ready', 'w').write('ready')\n"
            "open('/tmp/got', 'wb').write(s.recvfrom(100)[0])\n"
            "import time; time.sleep(1000)\n"]


def test_a_udp_port_carries_a_datagram(cs: ContainerStore, host: NetNamespace,
                                       netbox: str) -> None:
    sink = run(cs, UDP_SINK, image=netbox, mounts=[USR], ports=["9090:80/udp"])
    _wait_file(sink, "/tmp/ready")
    with host.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"datagram", ("127.0.0.1", 9090))
        assert _wait_file(sink, "/tmp/got") == "datagram"


def test_publish_all_publishes_the_exposed_ports_on_ephemeral_ones(
        cs: ContainerStore, host: NetNamespace, netbox: str) -> None:
    web = run(cs, HTTPD, image=netbox, publish_all=True)
    ports = netdriver.published_ports(web.dir)
    assert [(p["container_port"], p["protocol"]) for p in ports] == [(80, "tcp")]
    assert int(str(ports[0]["host_port"])) >= 1024
    assert fetch(host, "127.0.0.1", int(str(ports[0]["host_port"]))).startswith("hello")


def test_containers_on_a_network_reach_each_other_by_name_and_alias_in_either_order(
        cs: ContainerStore, host: NetNamespace, netbox: str) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("app")
    first = run(cs, ["sleep", "1000"], image=netbox, name="first", network="app",
                mounts=[USR])
    web = run(cs, HTTPD, image=netbox, name="web", network="app", mounts=[USR],
              network_aliases=["www"])
    gateway = _exec(first, "ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'")[1]
    assert _exec(first, "cat /etc/resolv.conf")[1].startswith(f"nameserver {gateway.strip()}")
    web_ip = web.inspect()["NetworkSettings"]["Networks"]["app"]["IPAddress"]
    first_ip = first.inspect()["NetworkSettings"]["Networks"]["app"]["IPAddress"]
    # The earlier container finds the later one, by name and alias: glibc's resolver...
    for name in ("web", "www", web.short_id):
        code, out = _exec(first, f"getent hosts {name}")
        assert code == 0 and out.split()[0] == web_ip, (name, out)
    # ...and a DNS query of its own (busybox's nslookup asks the nameserver directly).
    code, out = _exec(first, f"nslookup www {gateway.strip()}")
    assert code == 0 and web_ip in out, out
    code, out = _exec(first, "timeout 20 wget -q -O - http://www/")
    assert code == 0 and out.startswith("hello from"), out
    # The later one finds the earlier one.
    code, out = _exec(web, "getent hosts first")
    assert code == 0 and out.split()[0] == first_ip, out
    code, out = _exec(web, "getent hosts nosuchname.example")
    assert code != 0, out


def test_containers_on_different_networks_cannot_reach_each_other(
        cs: ContainerStore, host: NetNamespace, netbox: str) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("red")
        nets.create("blue")
    web = run(cs, HTTPD, image=netbox, name="web", network="red")
    other = run(cs, ["sleep", "1000"], image=netbox, name="other", network="blue",
                mounts=[USR])
    friend = run(cs, ["sleep", "1000"], image=netbox, name="friend", network="red")
    web_ip = web.inspect()["NetworkSettings"]["Networks"]["red"]["IPAddress"]
    code, out = _exec(friend, f"timeout 20 wget -q -O - http://{web_ip}/")
    assert code == 0 and out.startswith("hello"), out
    code, out = _exec(other, f"timeout 3 wget -q -O - http://{web_ip}/")
    assert code != 0, out
    assert _exec(other, "getent hosts web")[0] != 0


def test_an_internal_network_has_no_way_out(cs: ContainerStore, host: NetNamespace) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("sealed", internal=True)
        nets.create("open")
    with host.socket() as server:
        server.bind((OTHER, 8080))
        server.listen(8)
        server.settimeout(0.2)
        done = threading.Event()

        def serve() -> None:   # answer "hi" and close: a reachable server
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                conn.sendall(b"hi\n")
                conn.close()
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            inside = run(cs, ["sleep", "1000"], network="sealed")
            outside = run(cs, ["sleep", "1000"], network="open")
            code, out = _exec(outside, f"timeout 20 nc {OTHER} 8080 </dev/null")
            assert code == 0 and out == "hi\n", out  # a normal network gets out
            code, out = _exec(inside, f"timeout 3 nc {OTHER} 8080 </dev/null")
            assert code != 0 and "hi" not in out, out
            assert "default" not in _exec(inside, "ip route")[1]
        finally:
            done.set()
            thread.join(10)
    with pytest.raises(ConfigError, match="internal"):
        run(cs, ["true"], network="sealed", ports=["8081:80"])


def test_a_host_port_in_use_is_a_clear_error_and_nothing_is_made(
        cs: ContainerStore, host: NetNamespace) -> None:
    run(cs, HTTPD, name="first", ports=["9090:80"])
    links = _links(host)
    late = cs.create(ContainerConfig("busybox", HTTPD, name="late", ports=["9090:80"]))
    with pytest.raises(ConfigError, match=r"9090.*in use"):
        late.start()
    assert _links(host) == links
    assert late.inspect()["NetworkSettings"]["Ports"] == {}
    with netdriver.open_networks(cs.images.root, host) as nets:
        assert not nets.endpoints(owner=netdriver.owner_of(late.id))
    # A port of the host itself (not isolate's) is found as well.
    with host.socket() as taken:
        taken.bind(("0.0.0.0", 9191))
        taken.listen(1)
        busy = cs.create(ContainerConfig("busybox", HTTPD, ports=["9191:80"]))
        with pytest.raises(ConfigError, match="9191"):
            busy.start()
    assert _links(host) == links


def test_concurrent_starts_get_distinct_addresses(cs: ContainerStore,
                                                   host: NetNamespace) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("busy", subnet="172.31.7.0/28")
    made = [cs.create(ContainerConfig("busybox", ["sleep", "1000"], network="busy"))
            for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(made))

    def start(c: Container) -> None:
        barrier.wait()
        try:
            c.start()
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=start, args=(c,)) for c in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    ips = [c.inspect()["NetworkSettings"]["Networks"]["busy"]["IPAddress"] for c in made]
    assert len(set(ips)) == len(made), ips
    inside = [_exec(c, "ip -4 -o addr show eth0")[1].split()[3].split("/")[0] for c in made]
    assert inside == ips


def test_stop_and_rm_leave_no_veth_rule_address_proxy_or_resolver(
        cs: ContainerStore, host: NetNamespace, image_store: Store) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        net = nets.create("app")
    before = _links(host)
    directory = os.path.join(image_store.root, "networks")
    web = run(cs, HTTPD, name="web", network="app",
              ports=["9090:80", "[::1]:9091:80"])   # ::1 goes through the userland proxy
    assert fetch(host, "127.0.0.1", 9090).startswith("hello")
    assert fetch(host, "::1", 9091).startswith("hello")
    assert len(_links(host) - before) == 1                    # its veth
    assert "9090" in _nft(host)
    assert len(helper_pids(directory)) == 2                   # the resolver and the proxy
    web.stop(timeout=1)
    assert _links(host) == before
    assert "9090" not in _nft(host)
    assert helper_pids(directory) == []
    with netdriver.open_networks(cs.images.root, host) as nets:
        assert nets.endpoints() == []
    with pytest.raises(OSError):
        http_get(host, "127.0.0.1", 9090, timeout=2)
    web.start()   # the same ports again, and the same network
    assert fetch(host, "127.0.0.1", 9090).startswith("hello")
    web.remove(force=True)
    assert _links(host) == before and helper_pids(directory) == []
    with netdriver.open_networks(cs.images.root, host) as nets:
        assert nets.endpoints() == []
        nets.remove(net.id)
    assert f"isob{net.id[:11]}" not in _links(host)


def test_a_container_whose_supervisor_was_sigkilled_is_reclaimed(
        cs: ContainerStore, host: NetNamespace, image_store: Store) -> None:
    before = _links(host)
    directory = os.path.join(image_store.root, "networks")
    web = run(cs, HTTPD, name="web", ports=["9090:80", "[::1]:9091:80"])
    assert fetch(host, "127.0.0.1", 9090).startswith("hello")
    if web.state.supervisor != "shim":
        pytest.skip("isolate-shim is not built")
    os.kill(web.state.supervisor_pid, signal.SIGKILL)
    # Its namespace went with it (and the veth with the namespace); its rules, proxy and
    # lease stay until someone notices: prune does.
    deadline = time.monotonic() + 30
    while _links(host) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _links(host) - before <= {"isolate0"}
    with netdriver.open_networks(cs.images.root, host) as nets:
        done = nets.prune()
    assert any(web.id[:12] in d or "gone" in d for d in done), done
    assert "9090" not in _nft(host)
    assert helper_pids(directory) == []
    # The next start (another one) gets the port at once.
    run(cs, HTTPD, name="again", ports=["9090:80"])
    assert fetch(host, "127.0.0.1", 9090).startswith("hello")


def test_the_next_start_reclaims_what_a_killed_supervisor_left(
        cs: ContainerStore, host: NetNamespace) -> None:
    web = run(cs, HTTPD, name="web", ports=["9090:80"])
    assert fetch(host, "127.0.0.1", 9090).startswith("hello")
    if web.state.supervisor != "shim":
        pytest.skip("isolate-shim is not built")
    os.kill(web.state.supervisor_pid, signal.SIGKILL)
    other = cs.create(ContainerConfig("busybox", HTTPD, name="other", ports=["9090:80"]))
    other.start()      # its connect reclaims the dead one's endpoint and port first
    assert fetch(host, "127.0.0.1", 9090).startswith("hello from")


def test_network_connect_and_disconnect_of_a_running_container(
        cs: ContainerStore, host: NetNamespace, netbox: str) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("front")
        nets.create("back")
    db = run(cs, HTTPD, image=netbox, name="db", network="back")
    app = run(cs, ["sleep", "1000"], image=netbox, name="app", network="front",
              mounts=[USR])
    assert _exec(app, "getent hosts db")[0] != 0
    db_ip = db.inspect()["NetworkSettings"]["Networks"]["back"]["IPAddress"]
    assert _exec(app, f"timeout 3 wget -q -O - http://{db_ip}/")[0] != 0
    app.connect("back", aliases=["application"])
    assert "eth1" in _exec(app, "ip -o link")[1]
    code, out = _exec(app, f"timeout 20 wget -q -O - http://{db_ip}/")
    assert code == 0 and out.startswith("hello"), out
    # The network's members find it by its name and alias there (its own resolver stays
    # its first network's: see docs/networking.md).
    app_ip = app.inspect()["NetworkSettings"]["Networks"]["back"]["IPAddress"]
    code, out = _exec(db, "nslookup application")
    assert code == 0 and app_ip in out, out
    assert set(app.inspect()["NetworkSettings"]["Networks"]) == {"front", "back"}
    with pytest.raises(ConfigError, match="already exists"):
        app.connect("back")
    app.disconnect("back")
    assert "eth1" not in _exec(app, "ip -o link")[1]
    assert set(app.inspect()["NetworkSettings"]["Networks"]) == {"front"}
    # A restart keeps what connect and disconnect changed.
    app.connect("back")
    app.restart(timeout=1)
    assert set(app.inspect()["NetworkSettings"]["Networks"]) == {"front", "back"}
    with pytest.raises(ConfigError, match="not connected"):
        db.disconnect("front")


def test_two_networks_at_create(cs: ContainerStore, host: NetNamespace) -> None:
    with netdriver.open_networks(cs.images.root, host) as nets:
        nets.create("one", subnet="172.30.1.0/24")
        nets.create("two", subnet="172.30.2.0/24")
    c = run(cs, ["sleep", "1000"], network="one", extra_networks=["two"], ip="172.30.1.50",
            extra_hosts=["gw:host-gateway"])
    addrs = _exec(c, "ip -4 -o addr")[1]
    assert "172.30.1.50/24" in addrs and "172.30.2." in addrs
    assert "172.30.1.1\tgw" in _exec(c, "cat /etc/hosts")[1]


def test_pasta_as_root_publishes_a_port(cs: ContainerStore, host: NetNamespace) -> None:
    if not _have("pasta"):
        pytest.skip("pasta (Debian package passt) is not installed")
    with host.netlink() as ipr:   # pasta copies the host's default route and address
        ipr.route("add", dst="default", gateway="10.99.0.254")
    web = run(cs, HTTPD, network="pasta", ports=["9090:80"])
    assert fetch(host, "127.0.0.1", 9090).startswith("hello from")
    assert netdriver.format_ports(netdriver.published_ports(web.dir)) == \
        "0.0.0.0:9090->80/tcp"
    web.stop(timeout=1)
    with pytest.raises(OSError):
        http_get(host, "127.0.0.1", 9090, timeout=2)


def test_a_missing_user_mode_program_is_named_and_nothing_is_left(
        cs: ContainerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from isolate.cgroups.devices import kept_program_fds
    from isolate.errors import UnsupportedError

    monkeypatch.setattr("isolate.net.rootless._default_env", lambda: {"PATH": "/nonexistent"})
    c = cs.create(ContainerConfig("busybox", ["true"], network="pasta", ports=["9090:80"]))
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(UnsupportedError, match="pasta or slirp4netns") as info:
        c.start()
    assert info.value.missing == "pasta or slirp4netns"
    kept = {str(fd) for fd in kept_program_fds()}  # the device program cache, not a leak
    assert set(os.listdir("/proc/self/fd")) - kept == fds - kept
    assert "pasta" in (c.state.error or "")


def test_the_exit_command_releases_the_network_in_the_stores_host_namespace(
        cs: ContainerStore, image_store: Store, host: NetNamespace) -> None:
    """The supervisor's exit command (an interpreter of its own, with only PATH in its
    environment) is told the path of the namespace playing the host: it releases the
    container's endpoint there as soon as the container ends, with no one reading the
    container (before, it opened the networks in its own namespace, was refused, and left the
    release to the next reader)."""
    where = ContainerStore(image_store, network_host=f"/proc/{os.getpid()}/fd/{host.fileno()}")
    c = where.create(ContainerConfig("busybox", ["true"], network="bridge"))
    c.start()
    facts = os.path.join(c.dir, "network.json")
    deadline = time.monotonic() + 60
    while os.path.exists(facts) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(facts)
    with netdriver.open_networks(image_store.root, host) as nets:
        assert nets.endpoints() == []
    c.remove()
