"""RUN steps on bridge networks, with real packets: each test makes a network namespace that
plays the host (every bridge, veth and nft rule is made in it) and, behind the host's uplink,
one that plays the outside world, where an HTTP server of the test's answers. A step reaches
it through the bridge and the host's outbound NAT; when the step ends -- done, failed,
interrupted or killed -- its veth, address lease and rules are gone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from isolate._container_runner import ContainerStepRunner
from isolate.container import netdriver
from isolate.errors import ConfigError
from isolate.image import Store
from isolate.image.build import Builder, BuildOptions, BuildRequest, BuildResult, StepFailed
from isolate.net import NetNamespace

from ..conftest import SRC
from .conftest import BASE, read
from .test_cli_build import _processes_with, _wait_for, _wait_or_dump

pytestmark = [pytest.mark.root, pytest.mark.network]

UPLINK = "10.98.0.1"  # the host's address on its uplink
OUTSIDE = "10.98.0.2"  # the outside world's, where the server listens


@attrs.define
class World:
    """The host namespace, the outside one behind it, and a server there that records who
    connected (the source address it saw) and answers ``hello``."""

    host: NetNamespace
    outside: NetNamespace
    port: int
    peers: list[str] = attrs.field(factory=list)

    @property
    def host_path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.host.fileno()}"


def _wire(host: NetNamespace, outside: NetNamespace) -> None:
    with host.netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
        ipr.link("set", index=ipr.link_lookup(ifname="uplink0p")[0],
                 net_ns_fd=outside.fileno())
        idx = ipr.link_lookup(ifname="uplink0")[0]
        ipr.addr("add", index=idx, address=UPLINK, prefixlen=24)
        ipr.link("set", index=idx, state="up")
    with outside.netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        idx = ipr.link_lookup(ifname="uplink0p")[0]
        ipr.addr("add", index=idx, address=OUTSIDE, prefixlen=24)
        ipr.link("set", index=idx, state="up")


def _serve(listener: socket.socket, peers: list[str]) -> None:
    while True:
        try:
            conn, addr = listener.accept()
        except OSError:
            return  # closed: the test is over
        with conn:
            peers.append(addr[0])
            conn.settimeout(30)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
            except OSError:
                pass


def _links(ns: NetNamespace) -> set[str]:
    with ns.netlink() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _ruleset(ns: NetNamespace) -> str:
    res = ns.run(["nft", "list", "ruleset"], check=False)
    return res.stdout.decode() if res.returncode == 0 else ""


def _endpoints(store: Store, world: World) -> list[str]:
    with netdriver.open_networks(store.root, world.host) as nets:
        return [f"{e.owner} {e.ipv4}" for e in nets.endpoints()]


def _leaves_nothing(store: Store, world: World, addresses: Sequence[str] = ()) -> None:
    """No endpoint (its lease), no veth and no rule naming one of ``addresses`` is left."""
    assert _endpoints(store, world) == []
    # A veth whose step namespace is ending is left to the kernel, which deletes a dying
    # namespace's devices in its own time (after the last process of a SIGKILLed build).
    _wait_for(lambda: not {x for x in _links(world.host) if x.startswith("isov")},
              "the step's veth to go with its namespace")
    rules = _ruleset(world.host)
    for addr in addresses:
        assert addr not in rules, rules


@pytest.fixture
def world(store: Store) -> Iterator[World]:
    if shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("nft (Debian package nftables) is not installed")
    host = NetNamespace.create()
    outside = NetNamespace.create()
    listener = None
    try:
        _wire(host, outside)
        listener = outside.socket()
        listener.bind((OUTSIDE, 0))
        listener.listen(8)
        w = World(host, outside, int(listener.getsockname()[1]))
        server = threading.Thread(target=_serve, args=(listener, w.peers), daemon=True)
        server.start()
        yield w
        with netdriver.open_networks(store.root, host) as nets:
            left = nets.endpoints()
            for net in nets.networks():
                nets.remove(net.id)
            nets.prune(networks=True)
        assert not left, left
        assert not {x for x in _links(host) if x.startswith(("isov", "isob", "isolate"))}
        assert "isolate" not in _ruleset(host)
    finally:
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        outside.close()
        host.close()


def _build(store: Store, ctx: Path, world: World, dockerfile: str, **options: object
           ) -> BuildResult:
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    builder = Builder(store, ContainerStepRunner(network_host=world.host))
    return builder.build(BuildRequest(context=str(ctx), tags=("test/net:1",),
                                      options=BuildOptions(**options)))  # type: ignore[arg-type]


def _get(world: World) -> str:
    # busybox's wget -T segfaults: bounded by timeout(1) instead
    return f"timeout 60 wget -q -O - http://{OUTSIDE}:{world.port}/"


def test_a_run_step_on_bridge_reaches_the_outside_through_nat(
        store: Store, base: object, tmp_path: Path, world: World) -> None:
    img = _build(store, tmp_path / "ctx", world, f"""FROM {BASE}
RUN --network=bridge {_get(world)} > /got && ip -4 -o addr show eth0 > /addr && \\
    cat /etc/hosts > /hosts && cat /etc/resolv.conf > /resolv && ls /sys/class/net > /nets
RUN ls /sys/class/net > /default-nets
""").image
    assert read(store, img, "/got") == b"hello\n"
    addr = (read(store, img, "/addr") or b"").decode().split()[3].split("/")[0]
    # The step had an address of the default bridge's subnet; the outside saw the host's
    # uplink address instead (masqueraded), so the packets went out through the host.
    with netdriver.open_networks(store.root, world.host) as nets:
        import ipaddress

        default = nets.ensure_default()
        assert ipaddress.ip_address(addr) in ipaddress.ip_network(default.subnet)
    assert world.peers == [UPLINK]
    hosts = (read(store, img, "/hosts") or b"").decode()
    assert f"{addr}\tbuildkitsandbox" in hosts
    assert (read(store, img, "/resolv") or b"").decode().strip()
    assert (read(store, img, "/nets") or b"").split() == [b"eth0", b"lo"]
    # The build's default network is still the host's, and nothing of the step's own
    # network is in the image.
    assert set((read(store, img, "/default-nets") or b"").decode().split()) == set(
        os.listdir("/sys/class/net"))
    for path in ("/etc/hosts", "/etc/resolv.conf"):
        assert read(store, img, path) is None
    _leaves_nothing(store, world, [addr])


def test_the_build_network_option_takes_bridge_and_user_defined_networks(
        store: Store, base: object, tmp_path: Path, world: World) -> None:
    with netdriver.open_networks(store.root, world.host) as nets:
        nets.create("buildnet", subnet="10.123.0.0/24")
    text = (f"FROM {BASE}\nRUN {_get(world)} > /got && ip -4 -o addr show eth0 > /addr\n"
            "RUN --network=none ls /sys/class/net > /nets\n")
    img = _build(store, tmp_path / "ctx", world, text, network="buildnet").image
    assert read(store, img, "/got") == b"hello\n"
    assert b" 10.123.0." in (read(store, img, "/addr") or b"")
    assert read(store, img, "/nets") == b"lo\n"
    _leaves_nothing(store, world)
    img = _build(store, tmp_path / "ctx", world, text, network="bridge").image
    assert read(store, img, "/got") == b"hello\n"
    assert b" 10.123.0." not in (read(store, img, "/addr") or b"")
    # a network that does not exist: a clear error, nothing made
    with pytest.raises(ConfigError, match="nosuch"):
        _build(store, tmp_path / "ctx", world, text, network="nosuch", no_cache=True)
    _leaves_nothing(store, world)


def test_a_failing_step_on_bridge_leaves_nothing(store: Store, base: object, tmp_path: Path,
                                                 world: World) -> None:
    with pytest.raises(StepFailed) as failed:
        _build(store, tmp_path / "ctx", world,
               f"FROM {BASE}\nRUN --network=bridge ip -4 -o addr show eth0 && exit 3\n")
    assert failed.value.exit_code == 3
    addr = failed.value.output_tail.split()[3].split("/")[0]
    _leaves_nothing(store, world, [addr])


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_step_on_bridge_leaves_nothing(store: Store, base: object,
                                                      tmp_path: Path, world: World,
                                                      how: signal.Signals) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    marker = f"9{os.getpid()}{how.value}.25"
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN --network=bridge sleep {marker}\n")
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root,
               ISOLATE_NETWORK_NS=world.host_path, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "-m", "isolate.cli", "build", "-q", str(ctx)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            )
    try:
        _wait_for(lambda: _processes_with(marker), "the step's sleep")
        assert len(_endpoints(store, world)) == 1  # the step holds an endpoint
        os.kill(proc.pid, how)
        _wait_or_dump(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
    _wait_for(lambda: not _processes_with(marker), "the step's sleep to end")
    if how == signal.SIGINT:
        assert proc.returncode == 130, err
    else:
        # Killed, the build released nothing; its endpoint's owner is dead, and the next
        # change of the store's networks -- here the next build's step -- removes it.
        assert proc.returncode == -signal.SIGKILL
        (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN --network=bridge true\n")
        _build(store, ctx, world, (ctx / "Dockerfile").read_text())
    _leaves_nothing(store, world)


def test_bridge_networks_and_their_errors_in_the_options() -> None:
    assert BuildOptions(network="default").network == "host"
    assert BuildOptions(network="bridge").network == "bridge"
    assert BuildOptions(network="my-net.1").network == "my-net.1"
    for bad in ("pasta", "container:x", "-x", "a b"):
        with pytest.raises(ConfigError, match="RUN steps run on"):
            BuildOptions(network=bad)


def test_the_cli_takes_the_network_and_names_a_missing_one_in_one_line(
        store: Store, base: object, tmp_path: Path, world: World) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN {_get(world)} > /got\n")
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root,
               ISOLATE_NETWORK_NS=world.host_path)

    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "isolate.cli", "build", "-q", *args,
                               str(ctx)], env=env, capture_output=True, text=True,
                              timeout=300)

    done = build("--network", "bridge")
    assert done.returncode == 0, done.stderr
    assert read(store, done.stdout.strip(), "/got") == b"hello\n"
    for bad, says in (("nosuch", "nosuch"), ("pasta", "RUN steps run on")):
        proc = build("--network", bad)
        assert proc.returncode == 1 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and says in proc.stderr, proc.stderr
    _leaves_nothing(store, world)


def test_stages_built_at_once_each_get_an_endpoint_of_their_own(
        store: Store, base: object, tmp_path: Path, world: World) -> None:
    # Each stage's step waits (through a cache mount both see) until the other's runs: two
    # endpoints of one build at the same time, each released with its step.
    wait = ("i=0; touch /shared/{0}; while ! [ -e /shared/{1} ] && [ $i -lt 1200 ]; do "
            "sleep 0.1; i=$((i + 1)); done")
    stages = "".join(
        f"FROM {BASE} AS {me}\nRUN --network=bridge --mount=type=cache,id=n,target=/shared "
        f"{wait.format(me, other)}; {_get(world)} > /got && ip -4 -o addr show eth0 > /addr\n"
        for me, other in (("a", "b"), ("b", "a")))
    img = _build(store, tmp_path / "ctx", world, stages + f"FROM {BASE}\n"
                 "COPY --from=a /got /a\nCOPY --from=a /addr /a-addr\n"
                 "COPY --from=b /got /b\nCOPY --from=b /addr /b-addr\n").image
    assert read(store, img, "/a") == read(store, img, "/b") == b"hello\n"
    addrs = [(read(store, img, f"/{s}-addr") or b"").decode().split()[3].split("/")[0]
             for s in ("a", "b")]
    assert addrs[0] != addrs[1]
    assert world.peers == [UPLINK, UPLINK]
    _leaves_nothing(store, world, addrs)
