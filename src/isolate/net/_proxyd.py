"""The userland port proxy, run as ``python -m isolate.net._proxyd``: docker-proxy's job.

It serves published ports where DNAT cannot (the "none" firewall, an IPv6 loopback host
address, or when asked): TCP connections and UDP datagrams that reach its listening sockets
are relayed to the container's address. The sockets are made, bound and handed over by the
process that starts it (``--tcp FD=ADDR:PORT``, ``--udp FD=ADDR:PORT``), so a port in use is
found before it starts. One process per endpoint; it keeps no state and may be killed at any
time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import socket
import sys
from typing import Any, cast

from isolate.net._aio import spawn

UDP_IDLE = 60.0  # seconds a UDP client's flow lives without traffic


def _target(text: str) -> tuple[int, str, int]:
    fd, _, rest = text.partition("=")
    host, _, port = rest.rpartition(":")
    return int(fd), host.strip("[]"), int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


async def _serve_tcp(host: str, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError as exc:
        print(f"isolate-proxy: connect {host}:{port}: {exc}", file=sys.stderr, flush=True)
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
    writer.close()
    up_w.close()


class _UdpFlow(asyncio.DatagramProtocol):
    """One client's datagrams to the container and the container's answers back."""

    def __init__(self, front: asyncio.DatagramTransport, client: tuple[Any, ...]) -> None:
        self.front = front
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.last = asyncio.get_running_loop().time()
        self.front.sendto(data, self.client)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[Any, ...], _UdpFlow] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        spawn(self._expire())

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[Any, ...]) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            assert self.transport is not None
            loop = asyncio.get_running_loop()
            front = self.transport
            _, flow = await loop.create_datagram_endpoint(
                lambda: _UdpFlow(front, addr), remote_addr=(self.host, self.port))
            self.flows[addr] = flow
        flow.last = asyncio.get_running_loop().time()
        if flow.transport is not None:
            flow.transport.sendto(data)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE / 4)
            now = asyncio.get_running_loop().time()
            for addr, flow in list(self.flows.items()):
                if now - flow.last > UDP_IDLE:
                    del self.flows[addr]
                    if flow.transport is not None:
                        flow.transport.close()


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    for spec in args.tcp:
        fd, host, port = _target(spec)
        sock = socket.socket(fileno=fd)
        await asyncio.start_server(functools.partial(_serve_tcp, host, port), sock=sock)
    for spec in args.udp:
        fd, host, port = _target(spec)
        sock = socket.socket(fileno=fd)
        await loop.create_datagram_endpoint(functools.partial(_UdpFront, host, port), sock=sock)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="isolate-proxy")
    parser.add_argument("--for", dest="endpoint", default="",
                        help="the endpoint record it serves (for people reading ps)")
    parser.add_argument("--tcp", action="append", default=[])
    parser.add_argument("--udp", action="append", default=[])
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
