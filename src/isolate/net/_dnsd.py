"""The per-network resolver: a small DNS server, run as ``python -m isolate.net._dnsd``.

It answers the names (and aliases) of the containers on one network from the network's
``names.json`` -- re-read whenever that file is replaced, so containers connected later are
found at once -- and forwards every other name to the upstream resolvers (the host's, or a
container's own ``--dns`` servers). An internal network forwards nothing. Its sockets are made,
bound and handed over by the process that starts it (fds given on the command line), so it can
never fail to bind and needs no privilege; it holds no state of its own and may be killed at
any time. Messages are dnspython's; errors go to stderr (the network's ``dns.log``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
from typing import Any, cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from isolate.net._aio import spawn

TTL = 5  # names come and go with containers: let nobody cache them long


class Names:
    """The network's names, reloaded when ``names.json`` is replaced (a new inode)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.data: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        import json

        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns)
            if stamp != self.stamp:
                with open(self.path, encoding="utf-8") as f:
                    self.data = json.load(f)
                self.stamp = stamp
        except (OSError, ValueError) as exc:
            print(f"isolate-dns: cannot read {self.path}: {exc}", file=sys.stderr, flush=True)
        return self.data


class Resolver:
    def __init__(self, names: Names) -> None:
        self.names = names

    def local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer from the network's own names, or None if the name is not ours."""
        data = self.names.get()
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        addrs: list[str] | None = data.get("names", {}).get(name)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        reply.flags |= dns.flags.RA if data.get("forward") else 0
        if addrs is not None:
            want = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}
            for rdtype, version in want.items():
                if q.rdtype not in (rdtype, dns.rdatatype.ANY):
                    continue
                texts = [a for a in addrs if (":" in a) == (version == 6)]
                if texts:
                    reply.answer.append(dns.rrset.from_text_list(
                        q.name, TTL, dns.rdataclass.IN, rdtype, texts))
            return reply
        if q.rdtype == dns.rdatatype.PTR:
            try:
                addr = dns.reversename.to_address(q.name)
            except (dns.exception.SyntaxError, ValueError):
                return None
            host = data.get("reverse", {}).get(addr)
            if host:
                reply.answer.append(dns.rrset.from_text(
                    q.name, TTL, dns.rdataclass.IN, dns.rdatatype.PTR, host + "."))
                return reply
        return None

    async def answer(self, wire: bytes, client: str, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # a malformed query gets no answer, as from any server
            return None
        if len(query.question) != 1:
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.FORMERR)
            return reply.to_wire()
        local = self.local(query)
        if local is not None:
            return local.to_wire()
        data = self.names.get()
        if not data.get("forward"):
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL if data.get("internal") else dns.rcode.REFUSED)
            return reply.to_wire()
        upstream = data.get("clients", {}).get(client) or data.get("upstream") or []
        for server in upstream:
            host, _, port = server.partition("#")
            try:
                if tcp:
                    got = await dns.asyncquery.tcp(query, host, timeout=3,
                                                   port=int(port or 53))
                else:
                    got, _ = await dns.asyncquery.udp_with_fallback(
                        query, host, timeout=3, port=int(port or 53))
            except (OSError, dns.exception.DNSException) as exc:
                print(f"isolate-dns: upstream {server}: {exc!r}", file=sys.stderr, flush=True)
                continue
            got.id = query.id
            return got.to_wire(max_size=65535 if tcp else max(512, query.payload))
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[Any, ...]) -> None:
        out = await self.resolver.answer(data, addr[0], False)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _serve_tcp(resolver: Resolver, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            head = await reader.readexactly(2)
            (size,) = struct.unpack("!H", head)
            wire = await reader.readexactly(size)
            out = await resolver.answer(wire, peer, True)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    resolver = Resolver(Names(args.names))
    loop = asyncio.get_running_loop()
    for fd in args.udp:
        sock = socket.socket(fileno=fd)
        await loop.create_datagram_endpoint(lambda: _Udp(resolver), sock=sock)
    for fd in args.tcp:
        sock = socket.socket(fileno=fd)
        await asyncio.start_server(lambda r, w: _serve_tcp(resolver, r, w), sock=sock)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="isolate-dns")
    parser.add_argument("--names", required=True)
    parser.add_argument("--udp", type=int, action="append", default=[])
    parser.add_argument("--tcp", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
