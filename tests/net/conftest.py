"""Fixtures for isolate.net: a network namespace that plays "the host", "containers" (further
namespaces with processes spawned into them), and a fake upstream DNS server.

Everything is made inside namespaces the tests create and held by fds, so it disappears when
the test ends, also when it fails: nothing touches the machine's own network namespace, and no
packet leaves the test's namespaces. The host namespace gets loopback and one more address
(``OTHER``, ``OTHER6``, on a veth pair whose both ends stay in it) to play a host with a real
interface.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from net_helpers import OTHER, OTHER6

from isolate import lowlevel
from isolate._plan import CLONE_NEWNS, Mode, Op, OpKind, Plan
from isolate.errors import NetworkError
from isolate.net import NetNamespace, Networks

HERE = Path(__file__).parent
UPSTREAM_PORT = 5353
UPSTREAM_NAME = "upstream.example"
UPSTREAM_ADDR = "192.0.2.10"
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if HERE in path.parents and not path.name.startswith("test_net_parse"):
            item.add_marker(pytest.mark.network)
            item.add_marker(pytest.mark.root)


def have(program: str) -> bool:
    return shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


@pytest.fixture
def host() -> Iterator[NetNamespace]:
    """A fresh network namespace playing the host: lo up, ``OTHER``/24 and ``OTHER6``/64 on a
    veth."""
    ns = NetNamespace.create()
    try:
        with ns.netlink() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
            idx = ipr.link_lookup(ifname="uplink0")[0]
            ipr.addr("add", index=idx, address=OTHER, prefixlen=24)
            ipr.addr("add", index=idx, address=OTHER6, prefixlen=64, flags=0x02)  # no DAD
            for name in ("uplink0", "uplink0p"):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        yield ns
    finally:
        ns.close()


class Upstream:
    """A DNS server in the host namespace (a thread serving a socket made there): it knows
    ``UPSTREAM_NAME`` and counts the queries it gets."""

    def __init__(self, host: NetNamespace) -> None:
        self.sock = host.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((OTHER, UPSTREAM_PORT))
        self.sock.settimeout(0.2)
        self.queries: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{OTHER}#{UPSTREAM_PORT}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                wire, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            q = dns.message.from_wire(wire)
            name = q.question[0].name.to_text(omit_final_dot=True)
            self.queries.append(name)
            reply = dns.message.make_response(q)
            if name == UPSTREAM_NAME and q.question[0].rdtype == 1:
                reply.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A",
                                                        UPSTREAM_ADDR))
            elif name != UPSTREAM_NAME:
                reply.set_rcode(3)  # NXDOMAIN
            self.sock.sendto(reply.to_wire(), addr)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(params=["routed", "br_netfilter"])
def bridge_nf(request: pytest.FixtureRequest, host: NetNamespace) -> str:
    """The host namespace with the bridge's netfilter hooks off ("routed": a DNAT'ed frame
    that enters a bridge is routed) or on ("br_netfilter": bridged frames go through the IP
    hooks, and a DNAT'ed one is bridged back) -- what isolate meets on hosts with and without
    br_netfilter (Docker loads it). Set in the test's own namespace only."""
    try:
        host.read_sysctl("net.bridge.bridge-nf-call-iptables")
    except NetworkError:
        if request.param == "br_netfilter":
            pytest.skip("this kernel has no br_netfilter")
        return str(request.param)
    value = "1" if request.param == "br_netfilter" else "0"
    host.write_sysctls({"net.bridge.bridge-nf-call-iptables": value,
                        "net.bridge.bridge-nf-call-ip6tables": value})
    return str(request.param)


@pytest.fixture
def upstream(host: NetNamespace) -> Iterator[Upstream]:
    up = Upstream(host)
    try:
        yield up
    finally:
        up.close()


def cleanup(nets: Networks) -> None:
    """Remove every endpoint and network a test left (so the host namespace can go)."""
    for ep in nets.endpoints():
        with contextlib.suppress(Exception):
            nets.disconnect(ep)
    for net in nets.networks():
        with contextlib.suppress(Exception):
            nets.remove(net.id)
    nets.prune(networks=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "networks"


def helpers_of(store: Path) -> list[int]:
    """Pids of processes whose command line names ``store`` (resolvers, proxies)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(store).encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture
def nets(host: NetNamespace, store: Path, upstream: Upstream) -> Iterator[Networks]:
    """Networks in ``store`` built in ``host``; at the end every endpoint and network is
    removed, and no helper process of the store may remain."""
    if not have("nft"):
        pytest.skip("nft (Debian package nftables) is not installed")
    with Networks(store, host=host, upstream=[upstream.address]) as n:
        try:
            yield n
        finally:
            cleanup(n)
            left = helpers_of(store)
            for pid in left:
                os.kill(pid, 9)
            assert not left, f"helper processes left running: {left}"


class Containers:
    """Network namespaces standing in for containers, and processes run in them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.namespaces: list[NetNamespace] = []
        self.children: list[lowlevel.Child] = []

    def new(self) -> NetNamespace:
        ns = NetNamespace.create()
        self.namespaces.append(ns)
        return ns

    def start(self, ns: NetNamespace, argv: Sequence[str], *, stdout: int = -1) -> \
            lowlevel.Child:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            child = ns.spawn(argv, fds=(null, stdout if stdout >= 0 else null, null))
        finally:
            os.close(null)
        self.children.append(child)
        return child

    def httpd(self, ns: NetNamespace, port: int = 80, text: str = "hello") -> lowlevel.Child:
        """busybox httpd serving ``text`` at / on ``port``."""
        root = self.tmp / f"www-{len(self.children)}"
        root.mkdir()
        (root / "index.html").write_text(text)
        child = self.start(ns, ["busybox", "httpd", "-f", "-p", str(port), "-h", str(root)])
        wait_listening(ns, port)
        return child

    def udp_sink(self, ns: NetNamespace, port: int) -> int:
        """A UDP server in ``ns`` on ``port`` that writes the first datagram it gets to the
        returned pipe (once it is listening); the caller closes the fd."""
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"s.bind(('0.0.0.0', {port}))\n"
                "sys.stdout.buffer.write(b'ready\\n'); sys.stdout.flush()\n"
                "sys.stdout.buffer.write(s.recvfrom(1000)[0]); sys.stdout.flush()\n")
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.start(ns, [sys.executable, "-I", "-S", "-c", code], stdout=out_w)
        finally:
            os.close(out_w)
        ready = b""
        while not ready.endswith(b"\n"):
            chunk = os.read(out_r, 1)
            if not chunk:
                raise OSError("the UDP sink did not start")
            ready += chunk
        return out_r

    def run_with_files(self, ns: NetNamespace, argv: Sequence[str], *, hosts: str,
                       resolv: str, timeout: float = 30) -> tuple[int, str]:
        """Run ``argv`` in ``ns`` with its own mount namespace in which ``/etc/hosts`` and
        ``/etc/resolv.conf`` are the given contents (as a container's are); returns
        ``(exit code, stdout+stderr)``."""
        d = self.tmp / f"etc-{len(self.children)}-{time.monotonic_ns()}"
        d.mkdir()
        (d / "hosts").write_text(hosts)
        (d / "resolv.conf").write_text(resolv)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        p = Plan(CLONE_NEWNS, Mode.VFORK)
        p.extend(ns.join_ops())
        p.add(Op(OpKind.MOUNT, a=MS_REC | MS_PRIVATE, s2=b"/", note="make / private"))
        for name in ("hosts", "resolv.conf"):
            p.add(Op(OpKind.MOUNT, a=MS_BIND, s1=str(d / name).encode(),
                     s2=f"/etc/{name}".encode(), note=f"bind /etc/{name}"))
        p.add(lowlevel.plan.fds([(null, 0, False), (out_w, 1, False), (out_w, 2, False)]))
        p.add(lowlevel.plan.exec_("timeout", ["timeout", str(int(timeout)), *argv], None))
        try:
            child = lowlevel.spawn(p)
        finally:
            os.close(out_w)
            os.close(null)
        with child, os.fdopen(out_r, "rb") as f:
            out = f.read().decode(errors="replace")
            return child.wait(), out

    def close(self) -> None:
        for child in self.children:
            child.kill()
            child.wait()
            child.close()
        for ns in self.namespaces:
            ns.close()


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Containers]:
    c = Containers(tmp_path)
    try:
        yield c
    finally:
        c.close()


def wait_listening(ns: NetNamespace, port: int, addr: str = "127.0.0.1",
                   timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with ns.socket() as s:
            s.settimeout(2)
            try:
                s.connect((addr, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


def unreachable(ns: NetNamespace, addr: str, port: int, timeout: float = 2) -> bool:
    """Whether a TCP connect from ``ns`` to ``addr:port`` fails (refused, unreachable or no
    answer within ``timeout`` -- a drop)."""
    with ns.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as s:
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
        except OSError:
            return True
    return False


def links(ns: NetNamespace) -> set[str]:
    with ns.netlink() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def addresses(ns: NetNamespace, ifname: str) -> set[str]:
    with ns.netlink() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=idx)
                if not ipaddress.ip_address(a.get_attr("IFA_ADDRESS")).is_link_local}


def nft_table(host: NetNamespace) -> str:
    """isolate's nft table as text ('' when there is none)."""
    res = host.run(["nft", "list", "table", "inet", "isolate"], check=False)
    return res.stdout.decode() if res.returncode == 0 else ""


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
