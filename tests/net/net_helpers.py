"""Helpers of the network tests that need nothing but isolate (the rootless test copies this
file for code it runs as an ordinary user)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

from isolate.net import NetNamespace

__all__ = ["OTHER", "OTHER6", "fetch", "helper_pids", "http_get", "loopback_server", "make_host",
           "staged_extras"]

OTHER = "10.99.0.1"  # the host's "other address" (not loopback)
OTHER6 = "fd99::1"  # and its IPv6 one


def make_host(userns: object = None, *, default_route: bool = False,
              ipv6: bool = False) -> NetNamespace:
    """A fresh network namespace playing the host: lo up, ``OTHER``/24 (and with ``ipv6``
    ``OTHER6``/64) on a veth pair whose both ends stay in it (a host with a real interface);
    with ``default_route``, a default route through that interface (pasta copies the host's).
    ``userns``: the user namespace to make it in (an ordinary user's). The caller closes it."""
    ns = NetNamespace.create(userns=userns)
    try:
        with ns.netlink() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
            idx = ipr.link_lookup(ifname="uplink0")[0]
            ipr.addr("add", index=idx, address=OTHER, prefixlen=24)
            if ipv6:
                ipr.addr("add", index=idx, address=OTHER6, prefixlen=64, flags=0x02)  # no DAD
            for name in ("uplink0", "uplink0p"):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            if default_route:
                ipr.route("add", dst="default", gateway="10.99.0.254")
    except BaseException:
        ns.close()
        raise
    return ns


def http_get(ns: NetNamespace, addr: str, port: int, timeout: float = 10) -> str:
    """GET / from ``addr:port`` over a socket made in ``ns``; the body. Raises OSError."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with ns.socket(family) as s:
        s.settimeout(timeout)
        s.connect((addr, port))
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise OSError(f"not an HTTP answer: {data[:80]!r}")
    return body.decode()


def fetch(ns: NetNamespace, addr: str, port: int, timeout: float = 30) -> str:
    """:func:`http_get`, retried for ``timeout`` seconds: a generous readiness wait for a
    user-mode stack (pasta's path for a non-loopback source goes through the container's tap
    device, whose neighbour entries are made on first use)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(ns, addr, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def loopback_server(body: bytes) -> socket.socket:
    """A tiny HTTP server on an ephemeral port of 127.0.0.1 in the caller's namespace, answering
    every request with ``body`` from a daemon thread (it goes with the process); its listening
    socket."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body)
    threading.Thread(target=serve, daemon=True).start()
    return srv


@contextlib.contextmanager
def staged_extras(pages: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """For code run as an ordinary user (needs root to set up): world-readable copies of what
    it imports beyond isolate and attrs (pyroute2, dnspython, this file as
    ``tests/net_helpers.py``), a dir per entry of ``pages`` (default ``{"www": "rootless"}``)
    holding that text as ``index.html``, and a tun device node it may open (the machine's
    /dev/net/tun may be root's only: bind ours over it in the run's private mount namespace).
    Yields the paths: ``extra`` (for sys.path), ``tests``, ``tun`` and one per page dir."""
    import shutil
    import stat
    import tempfile

    import dns
    import pyroute2

    extra = tempfile.mkdtemp(prefix="isolate-net-rootless-")
    try:
        os.chmod(extra, 0o755)
        for module in (pyroute2, dns):  # dnspython: the networks' resolvers import it
            shutil.copytree(os.path.dirname(module.__file__ or ""),
                            os.path.join(extra, module.__name__),
                            ignore=shutil.ignore_patterns("__pycache__"))
        tests = os.path.join(extra, "tests")
        os.mkdir(tests)
        shutil.copy(__file__, os.path.join(tests, "net_helpers.py"))
        paths = {"extra": extra, "tests": tests}
        for name, text in (pages or {"www": "rootless"}).items():
            paths[name] = os.path.join(extra, name)
            os.mkdir(paths[name])
            with open(os.path.join(paths[name], "index.html"), "w") as f:
                f.write(text)
        tun = os.path.join(extra, "tun")
        os.mknod(tun, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        os.chmod(tun, 0o666)
        for dirpath, dirnames, filenames in os.walk(extra):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
            for name in filenames:
                if name != "tun":
                    os.chmod(os.path.join(dirpath, name), 0o644)
        yield {**paths, "tun": tun}
    finally:
        shutil.rmtree(extra, ignore_errors=True)


def helper_pids(directory: str) -> list[int]:
    """Pids of processes whose command line names ``directory`` (a store's networks dir: its
    resolvers and proxies)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if directory.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found
