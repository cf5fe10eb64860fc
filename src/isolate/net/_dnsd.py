"""The per-network resolver: a small DNS server, run as ``python -m isolate.net._dnsd``.

It answers the names (and aliases) of the containers on one network from the network's
endpoint records themselves (``--endpoints DIR``) -- re-read whenever the directory's entries
change (a record is only ever replaced or removed, so each change is a new name or inode), so a
container connected later is found at once and no file is written for the resolver -- and
forwards every other name to the upstream resolvers (``--upstream``, or with ``--host-resolv``
the host's /etc/resolv.conf, re-read when it changes; a container's own ``--dns`` servers for
its queries). An internal network (``--internal``) forwards nothing. It answers only clients
on its own network (``--subnet``, each of the network's subnets, as aardvark-dns scopes its
answers per network): a query from anywhere else -- another network's container, routed here
through the host -- is REFUSED, so names never leak across networks. Its sockets are made, bound
and handed over by the process that starts it (fds given on the command line), so it can never
fail to bind and needs no privilege; it holds no state of its own and may be killed at any
time. A record it cannot parse (torn by a machine crash) or of another boot is skipped.
Messages are dnspython's; errors go to stderr (the network's ``dns.log``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
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

from isolate import _json as json
from isolate.net._aio import spawn

TTL = 5  # names come and go with containers: let nobody cache them long
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:  # pragma: no cover
        return "unknown"


class Names:
    """The network's names, rebuilt from its endpoint records when the directory's entries
    (names and inodes, from one ``scandir``) change; and the upstream servers."""

    def __init__(self, directory: str, upstream: list[str], host_resolv: bool,
                 internal: bool) -> None:
        self.directory = directory
        self.upstream = upstream
        self.host_resolv = host_resolv
        self.internal = internal
        self.boot = _boot()
        self.stamp: frozenset[tuple[str, int]] | None = None
        self.resolv_stamp: tuple[int, int] | None = None
        self.resolv_servers: list[str] = []
        self.data: dict[str, Any] = {"names": {}, "reverse": {}, "clients": {}}

    def _scan(self) -> frozenset[tuple[str, int]]:
        try:
            with os.scandir(self.directory) as it:
                return frozenset((e.name, e.inode()) for e in it
                                 if e.name.endswith(".json") and not e.name.startswith("."))
        except OSError:
            return frozenset()

    def get(self) -> dict[str, Any]:
        stamp = self._scan()
        if stamp != self.stamp:
            self.stamp = stamp
            self.data = self._load(sorted(name for name, _ in stamp))
        return self.data

    def _load(self, names: list[str]) -> dict[str, Any]:
        table: dict[str, list[str]] = {}
        reverse: dict[str, str] = {}
        clients: dict[str, list[str]] = {}
        for name in names:
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    e = json.loads(f.read())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                print(f"isolate-dns: skipping {name}: {exc}", file=sys.stderr, flush=True)
                continue
            if not isinstance(e, dict) or e.get("state", "ready") != "ready" or \
                    e.get("boot") not in (None, self.boot):
                continue
            addresses = [a for a in (e.get("ipv4"), e.get("ipv6")) if a]
            for n in filter(None, (e.get("name"), *(e.get("aliases") or ()))):
                table.setdefault(n.lower(), []).extend(addresses)
            if e.get("name"):
                for a in addresses:
                    reverse[a] = e["name"]
            if e.get("dns"):
                for a in addresses:
                    clients[a] = list(e["dns"])
        return {"names": table, "reverse": reverse, "clients": clients}

    @property
    def forward(self) -> bool:
        return not self.internal

    def servers(self) -> list[str]:
        """The upstream servers: given, or the host's resolv.conf, re-read when it is replaced
        or changed (its loopback servers too: the resolver runs in the host's namespace)."""
        if not self.host_resolv:
            return self.upstream
        try:
            st = os.stat("/etc/resolv.conf")
            stamp = (st.st_ino, st.st_mtime_ns)
            if stamp != self.resolv_stamp:
                from isolate.net.files import host_resolv_conf

                self.resolv_servers = host_resolv_conf().nameservers
                self.resolv_stamp = stamp
        except OSError as exc:
            print(f"isolate-dns: cannot read /etc/resolv.conf: {exc}", file=sys.stderr,
                  flush=True)
        return self.resolv_servers


class Resolver:
    def __init__(self, names: Names, subnets: list[str] | None = None) -> None:
        self.names = names
        #: The clients it serves (None: everyone, for a resolver started without --subnet).
        self.subnets = [ipaddress.ip_network(s, strict=False) for s in subnets] \
            if subnets else None

    def serves(self, client: str) -> bool:
        """Whether ``client`` (an address, maybe with an IPv6 zone) is on the network."""
        if self.subnets is None:
            return True
        try:
            addr = ipaddress.ip_address(client.partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.subnets)

    def local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer from the network's own names, or None if the name is not ours."""
        data = self.names.get()
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        addrs: list[str] | None = data.get("names", {}).get(name)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        reply.flags |= dns.flags.RA if self.names.forward else 0
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
        if not self.serves(client):
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.REFUSED)
            return reply.to_wire()
        if len(query.question) != 1:
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.FORMERR)
            return reply.to_wire()
        local = self.local(query)
        if local is not None:
            return local.to_wire()
        data = self.names.get()
        if not self.names.forward:
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        upstream = data.get("clients", {}).get(client) or self.names.servers()
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
    resolver = Resolver(Names(args.endpoints, args.upstream, args.host_resolv, args.internal),
                        args.subnet or None)
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
    parser.add_argument("--endpoints", required=True,
                        help="the network's endpoints directory")
    parser.add_argument("--upstream", action="append", default=[],
                        help="a forwarder, ADDR or ADDR#PORT")
    parser.add_argument("--host-resolv", action="store_true",
                        help="forward to the servers of /etc/resolv.conf")
    parser.add_argument("--internal", action="store_true", help="forward nothing")
    parser.add_argument("--subnet", action="append", default=[],
                        help="a subnet whose clients it answers (others are REFUSED)")
    parser.add_argument("--udp", type=int, action="append", default=[])
    parser.add_argument("--tcp", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
