"""Helpers of the network tests that need nothing but isolate (the rootless test copies this
file for code it runs as an ordinary user)."""

from __future__ import annotations

import socket
import time

from isolate.net import NetNamespace

__all__ = ["OTHER", "OTHER6", "fetch", "http_get"]

OTHER = "10.99.0.1"  # the host's "other address" (not loopback)
OTHER6 = "fd99::1"  # and its IPv6 one


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
