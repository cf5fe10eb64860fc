"""Benchmark isolate.net: endpoint set-up + tear-down, and TCP throughput through a published
port against the host's loopback.

Not a test: prints Markdown tables. Run as root from the worktree:
    PYTHONPATH=src python benchmarks/bench_net.py [--rounds N] [--mib M]
Everything happens inside network namespaces this script makes (one plays the host), and they
go when it ends. The anchor for set-up is what podman 4 runs per container on Debian (CNI:
the plugins of its default conflist, each an exec), driven directly in the same kind of
namespace with host-local IPAM in a temp dir: podman itself is run on this machine only with
--network=none or --network=host (its CNI set-up acts in whatever namespace it runs in, and
its netns files go to the machine's /run), so its network part is run as podman runs it.
``--starts N`` (0: none) times whole container starts (create + start + wait + remove of
``/bin/true`` in a busybox image) with ``--network none`` against the default bridge, a
user-defined network with another member (its resolver running), and the bridge with
``-p``: the network's share of a start.
Throughput is sampled on two networks of the same MTU side by side: one with isolate's default
link MTU (bridge and veths at 65520, the network MTU on the containers' default route), one
with ``link_mtu=mtu`` (Docker's interfaces exactly). ``--cc`` sets the sender's congestion
control per socket (default: the kernel's, which is what the anchor uses too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from _harness import Result, command_line, machine_notes, table

from isolate.net import NetNamespace, Networks
from isolate.net.network import DEFAULT_LINK_MTU

CNI_DIR = "/usr/lib/cni"
OTHER = "10.99.0.1"

RECEIVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
sys.stdout.write("ready\\n"); sys.stdout.flush()
buf = bytearray(1 << 20)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    c.sendall(str(n).encode()); c.close()
"""


def make_host() -> NetNamespace:
    host = NetNamespace.create()
    with host.netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
        ipr.addr("add", index=ipr.link_lookup(ifname="uplink0")[0], address=OTHER,
                 prefixlen=24)
        for name in ("uplink0", "uplink0p"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    return host


def wait_gone(host: NetNamespace, ifname: str) -> None:
    while True:
        with host.netlink() as ipr:
            if not ipr.link_lookup(ifname=ifname):
                return
        time.sleep(0.001)


class Setup:
    """Per-endpoint cycles; each keeps the time of its isolate.net calls only (making and
    dropping the container's namespace is the container's cost, not the network's)."""

    def __init__(self, nets: Networks, host: NetNamespace) -> None:
        self.nets, self.host = nets, host
        self.ns = NetNamespace.create()

    def running(self, ports: tuple[str, ...] = ()) -> float:
        """connect, then disconnect while the namespace lives (the veth is deleted)."""
        t0 = time.perf_counter()
        ep = self.nets.connect("bench", self.ns, owner="bench", name="web", ports=ports)
        self.nets.disconnect(ep)
        return time.perf_counter() - t0

    def stopped(self, ports: tuple[str, ...] = ()) -> float:
        """connect, the container ends (its namespace and veth go), release from records."""
        ns = NetNamespace.create()
        t0 = time.perf_counter()
        ep = self.nets.connect("bench", ns, owner="bench", name="web", ports=ports)
        t1 = time.perf_counter()
        ns.close()
        wait_gone(self.host, ep.host_ifname)
        t2 = time.perf_counter()
        self.nets.release("bench")
        return (t1 - t0) + (time.perf_counter() - t2)

    def stopped_with_port(self) -> float:
        """The container path with a published port."""
        return self.stopped(("9090:80",))

    def with_port(self) -> float:
        """connect publishing a port, disconnect while the namespace lives."""
        return self.running(("9090:80",))


class Cni:
    """What podman 4 (CNI backend; Debian's 4.3 has no netavark) runs per container: the
    plugins of its default network's conflist (``/etc/cni/net.d/87-podman-bridge.conflist``:
    bridge with host-local IPAM and ipMasq, portmap, firewall, tuning), each an exec, ADD in
    order with the previous plugin's result, DEL in reverse with the ADD's result -- what
    libcni does. ``plugins=("bridge",)`` is the bridge plugin alone."""

    CHAIN = ("bridge", "portmap", "firewall", "tuning")

    def __init__(self, host: NetNamespace, tmp: str, plugins: tuple[str, ...] = CHAIN) -> None:
        self.host, self.plugins = host, plugins
        self.ns = NetNamespace.create()
        self.conf: dict[str, dict[str, object]] = {
            "bridge": {"type": "bridge", "bridge": "cni-bench", "isGateway": True,
                       "ipMasq": True, "hairpinMode": True,
                       "ipam": {"type": "host-local", "dataDir": os.path.join(tmp, "cni"),
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "ranges": [[{"subnet": "10.89.0.0/16",
                                             "gateway": "10.89.0.1"}]]}},
            "portmap": {"type": "portmap", "capabilities": {"portMappings": True}},
            "firewall": {"type": "firewall"},
            "tuning": {"type": "tuning"}}

    def _run(self, command: str, plugin: str, prev: object, ports: tuple[int, ...]) -> object:
        conf: dict[str, object] = {"cniVersion": "0.4.0", "name": "bench",
                                   **self.conf[plugin]}
        if prev is not None:
            conf["prevResult"] = prev
        if plugin == "portmap":
            conf["runtimeConfig"] = {"portMappings": [
                {"hostPort": p, "containerPort": 80, "protocol": "tcp"} for p in ports]}
        env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": "bench",
               "CNI_NETNS": f"/proc/{os.getpid()}/fd/{self.ns.fileno()}", "CNI_IFNAME": "eth0",
               "CNI_PATH": CNI_DIR}
        res = self.host.run([os.path.join(CNI_DIR, plugin)], json.dumps(conf).encode(),
                            env=env, check=False)
        if res.returncode:
            raise RuntimeError(f"{plugin} {command}: {res.stdout.decode()}"
                               f"{res.stderr.decode()}")
        return json.loads(res.stdout) if command == "ADD" else None

    def cycle(self, ports: tuple[int, ...] = ()) -> float:
        """ADD then DEL; seconds."""
        t0 = time.perf_counter()
        result = None
        for plugin in self.plugins:
            result = self._run("ADD", plugin, result, ports)
        for plugin in reversed(self.plugins):
            self._run("DEL", plugin, result, ports)
        return time.perf_counter() - t0

    def cycle_with_port(self) -> float:
        """The chain publishing 9091 -> 80 (portmap's DNAT rules)."""
        return self.cycle((9091,))


def sample(cands: list[tuple[str, Callable[[], float]]], rounds: int,
           warmup: int = 3) -> list[Result]:
    """The harness's round-robin, rotated each round, but each sample is the time the
    candidate reports (its network calls only)."""
    samples: dict[str, list[float]] = {name: [] for name, _ in cands}
    for r in range(-warmup, rounds):
        k = r % len(cands)
        for name, fn in [*cands[k:], *cands[:k]]:
            t = fn()
            if r >= 0:
                samples[name].append(t)
    return [Result(name, "", tuple(samples[name])) for name, _ in cands]


def throughput(host: NetNamespace, nets: Networks, mib: int, rounds: int, mtu: int,
               cc: str | None) -> str:
    """MiB/s of one TCP stream host -> server: on the host's loopback directly, and into a
    container through its published port (DNAT from the loopback and from the host's other
    address; the proxy for [::1]), on a network with the default link MTU and on one whose
    links have the network's MTU. Samples interleaved, medians."""
    nets.create("tp-link", mtu=mtu)
    nets.create("tp-docker", mtu=mtu, link_mtu=mtu)
    c1, c2 = NetNamespace.create(), NetNamespace.create()
    procs = []
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for ns, port in ((host, 7000), (c1, 80), (c2, 80)):
            r, w = os.pipe()
            child = ns.spawn([sys.executable, "-I", "-S", "-c", RECEIVER, str(port)],
                             fds=(null, w, null))
            os.close(w)
            os.read(r, 6)
            os.close(r)
            procs.append(child)
        nets.connect("tp-link", c1, owner="tp", ports=["9090:80", "[::1]:9091:80"])
        nets.connect("tp-docker", c2, owner="tp", ports=["9092:80"])
        chunk = b"x" * (1 << 20)
        link = f"link MTU {DEFAULT_LINK_MTU}, network MTU {mtu}"
        docker = f"link MTU = network MTU = {mtu} (Docker's interfaces)"
        paths = [("host loopback, no container (anchor)", socket.AF_INET, "127.0.0.1", 7000),
                 (f"{link}: via 127.0.0.1 (DNAT in output)", socket.AF_INET, "127.0.0.1",
                  9090),
                 (f"{link}: via the host's other address (DNAT)", socket.AF_INET, OTHER,
                  9090),
                 (f"{docker}: via 127.0.0.1", socket.AF_INET, "127.0.0.1", 9092),
                 (f"{docker}: via the host's other address", socket.AF_INET, OTHER, 9092),
                 (f"{link}: via [::1] (userland proxy)", socket.AF_INET6, "::1", 9091)]
        rates: dict[str, list[float]] = {p[0]: [] for p in paths}
        for r in range(rounds):
            k = r % len(paths)
            for name, fam, addr, port in [*paths[k:], *paths[:k]]:
                with host.socket(fam) as s:
                    if cc:
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
                    s.connect((addr, port))
                    t0 = time.perf_counter()
                    for _ in range(mib):
                        s.sendall(chunk)
                    s.shutdown(socket.SHUT_WR)
                    got = int(s.recv(64))
                    dt = time.perf_counter() - t0
                assert got == mib << 20, (name, got)
                rates[name].append(mib / dt)
        anchor = statistics.median(rates[paths[0][0]])
        used = cc or host.read_sysctl("net.ipv4.tcp_congestion_control")
        lines = [f"(one stream of {mib} MiB per sample, {rounds} samples per path, sender "
                 f"congestion control {used})", "",
                 "| path | median MiB/s | vs loopback |", "|---|---|---|"]
        for name, _, _, _ in paths:
            med = statistics.median(rates[name])
            lines.append(f"| {name} | {med:.0f} | {med / anchor:.2f}x |")
        return "\n".join(lines)
    finally:
        os.close(null)
        for child in procs:
            child.kill()
            child.wait()
            child.close()
        nets.release("tp")
        nets.remove("tp-link")
        nets.remove("tp-docker")
        c1.close()
        c2.close()


def start_table(host: NetNamespace, tmp: str, rounds: int) -> str:
    """Container starts with and without a network (a table)."""
    from _harness import Candidate, interleave
    from bench_containers import _tree

    from isolate.container import ContainerConfig, ContainerStore, netdriver
    from isolate.image import ImageConfig, Store

    tree = os.path.join(tmp, "tree")
    _tree(tree)
    store = Store(os.path.join(tmp, "store"))
    store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
    # By path, so that the exit command (an interpreter of its own) releases the network in it.
    cs = ContainerStore(store, network_host=f"/proc/{os.getpid()}/fd/{host.fileno()}")
    with netdriver.open_networks(store.root, host) as nets:
        nets.create("app", subnet="172.31.0.0/16")
    keeper = cs.create(ContainerConfig("busybox", ["sleep", "100000"], network="app"))
    keeper.start()

    def cycle(**options: object) -> Callable[[], object]:
        def fn() -> None:
            c = cs.create(ContainerConfig("busybox", ["/bin/true"], **options))
            c.start()
            c.wait()
            c.remove()
        return fn

    try:
        results = interleave([
            Candidate("--network none", cycle(network="none"),
                      "a network namespace of its own, lo up"),
            Candidate("--network bridge (the default bridge)", cycle(network="bridge"),
                      "veth on isolate0, address, routes, hosts/resolv.conf; released at exit"),
            Candidate("--network app (user-defined, resolver running)", cycle(network="app"),
                      "as above, with its name and short id for the network's resolver"),
            Candidate("--network bridge -p 9090:80", cycle(network="bridge",
                                                           ports=["9090:80"]),
                      "as the bridge, plus the port forward (nft) and its removal"),
        ], rounds)
    finally:
        keeper.remove(force=True)
        with netdriver.open_networks(store.root, host) as nets:
            nets.remove("app")
            for net in nets.networks():
                nets.remove(net.id)
            nets.prune(networks=True)
    out = table(results, [("vs none", "--network none")])
    base = next(r.median for r in results if r.name == "--network none")
    shares = ", ".join(f"{r.name.split(' (')[0]}: +{(r.median - base) * 1e3:.2f} ms"
                       for r in results if r.name != "--network none")
    return out + f"\n\nThe network's share of a start (median minus none's): {shares}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100,
                        help="set-up samples per candidate (0: throughput only)")
    parser.add_argument("--mib", type=int, default=512, help="MiB sent per throughput sample")
    parser.add_argument("--tp-rounds", type=int, default=5)
    parser.add_argument("--store", default=None,
                        help="where the networks directory goes (default: a temp dir; "
                             "/dev/shm shows the cost without the disk's fsyncs)")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--mtu", type=int, default=1500, help="the networks' MTU")
    parser.add_argument("--cc", default=None,
                        help="the sender's TCP congestion control (default: the kernel's)")
    parser.add_argument("--starts", type=int, default=0,
                        help="container starts per candidate, none vs bridge (0: skip)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="isolate-bench-net-", dir=args.store)
    host = make_host()
    try:
        with Networks(os.path.join(tmp, "networks"), host=host, upstream=[]) as nets:
            nets.create("bench", subnet="172.30.0.0/16", mtu=args.mtu)
            # One endpoint stays for the whole run, as other containers would: the network's
            # resolver then runs throughout (it reads each cycle's record itself).
            keeper = NetNamespace.create()
            nets.connect("bench", keeper, owner="keeper", name="keeper")
            setup = Setup(nets, host)
            cands: list[tuple[str, Callable[[], float]]] = [
                ("connect + release after the container ended", setup.stopped),
                ("connect with -p 9090:80 + release after the container ended",
                 setup.stopped_with_port),
                ("connect + disconnect, namespace alive (veth deleted)", setup.running),
                ("connect with -p 9090:80 + disconnect, namespace alive", setup.with_port)]
            cnis: list[Cni] = []
            anchor = "podman 4's CNI chain ADD + DEL (bridge, portmap, firewall, tuning)"
            anchor_p = "podman 4's CNI chain with -p 9091:80"
            if all(os.path.exists(os.path.join(CNI_DIR, p)) for p in Cni.CHAIN) and \
                    shutil.which("iptables"):
                cnis = [Cni(host, tmp), Cni(host, tmp, ("bridge",))]
                cands += [(anchor, cnis[0].cycle), (anchor_p, cnis[0].cycle_with_port),
                          ("CNI bridge plugin alone ADD + DEL", cnis[1].cycle)]
            print(command_line() + "\n")
            if args.rounds > 0:
                results = sample(cands, args.rounds)
                print("## bench_net: endpoint set-up + tear-down\n")
                print(table(results, [("vs podman's CNI", anchor),
                                      ("vs podman's CNI with -p", anchor_p)]))
                print("\n(isolate rows: whole-call times of connect + disconnect/release; the "
                      "'after the container ended' rows exclude the kernel's asynchronous "
                      "removal of the namespace)\n")
                print(f"(networks directory on {os.path.dirname(tmp)})\n")
            if args.starts > 0:
                print("## bench_net: a container's start, --network none vs bridge\n")
                print(start_table(host, tmp, args.starts))
            if not args.no_throughput:
                print("## bench_net: TCP throughput host -> container\n")
                print(throughput(host, nets, args.mib, args.tp_rounds, args.mtu, args.cc))
            print("\n" + machine_notes())
            nets.release("keeper")
            keeper.close()
            nets.remove("bench")
            setup.ns.close()
            for cni in cnis:
                cni.ns.close()
    finally:
        host.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
