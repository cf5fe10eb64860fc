"""Netlink requests sent as one batch: several messages in one ``sendmsg``, their ACKs read back.

pyroute2 encodes the messages (its message classes) and is what isolate uses for everything
that reads state (dumps, lookups); this module only frames and sends what must be fast -- the
few requests of every container start and stop (those of a stop -- look a veth up, delete it --
are framed by hand, so that a release never loads pyroute2): the kernel handles the messages of one
``sendmsg`` in order and in the sender's context (rtnetlink, and nfnetlink batches too), so
when the call returns every ACK is queued on the socket and is read without waiting.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["NLM_F_ACK", "NLM_F_CREATE", "NLM_F_EXCL", "NLM_F_REQUEST", "configure_interface",
           "delete_link", "link_index", "link_peer", "make_veth", "peer_reachable", "replies",
           "rtnl_message", "set_hairpin", "transact"]

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_IFF_UP = 0x1
_IFA_F_NODAD = 0x02
_RT_TABLE_MAIN, _RTPROT_STATIC, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 4, 0, 1
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_RTNLGRP_LINK = 1
_RTM_DELLINK, _RTM_GETLINK = 17, 18
_IFLA_IFNAME, _IFLA_LINK, _IFLA_LINK_NETNSID, _IFLA_IF_NETNSID = 3, 5, 37, 46
_BRIDGE_MODE_HAIRPIN = 1


def replies(sock: socket.socket) -> list[tuple[int, int, bytes]]:
    """``(type, seq, payload)`` of every message queued on ``sock``, without waiting."""
    out: list[tuple[int, int, bytes]] = []
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return out
        off = 0
        while off + _HEADER.size <= len(data):
            length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, off)
            if length < _HEADER.size:
                break
            out.append((kind, seq, data[off + _HEADER.size:off + length]))
            off += length + (-length % 4)


def transact(sock: socket.socket, messages: Sequence[bytes], seqs: Sequence[int]
             ) -> dict[int, int]:
    """Send ``messages`` (each already framed, with ``NLM_F_ACK`` and its sequence number in
    ``seqs``) in one ``sendmsg``; returns each sequence number's result: 0, or the errno the
    kernel answered. A message that got no ACK (the kernel stopped at an earlier error, as an
    nfnetlink batch does) is not in the result.

    Raises OSError (the send itself failed).
    """
    sock.send(b"".join(messages))
    results: dict[int, int] = {}
    wanted = set(seqs)
    for kind, seq, payload in replies(sock):
        if kind == NLMSG_ERROR and seq in wanted and len(payload) >= 4:
            (code,) = struct.unpack_from("=i", payload)
            results[seq] = -code
    return results


def rtnl_message(msg: Any, kind: int, flags: int, seq: int) -> bytes:
    """A pyroute2 rtnetlink message (``ifaddrmsg``, ``rtmsg``, ``ifinfmsg``...) framed as a
    request of type ``kind`` with ``flags`` and sequence number ``seq``."""
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def _link_request(kind: int, flags: int, seq: int, *, index: int = 0,
                  ifname: str | None = None, netnsid: int | None = None) -> bytes:
    """An ``RTM_*LINK`` request framed by hand (``struct ifinfomsg``, then ``IFLA_IFNAME``
    and ``IFLA_IF_NETNSID`` when given): what the release path sends, without loading
    pyroute2's message classes (over 100 ms of imports in a fresh interpreter)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, index, 0, 0)
    if ifname is not None:
        body += _attr(_IFLA_IFNAME, ifname.encode() + b"\0")
    if netnsid is not None:
        body += _attr(_IFLA_IF_NETNSID, struct.pack("=i", netnsid))
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _getlink(sock: socket.socket, *, index: int = 0, ifname: str | None = None,
             netnsid: int | None = None, seq: int = 1) -> bytes:
    """The payload (``struct ifinfomsg`` and attributes) of the answer to one
    ``RTM_GETLINK``. Raises OSError (ENODEV: no such interface)."""
    sock.send(_link_request(_RTM_GETLINK, NLM_F_REQUEST, seq, index=index, ifname=ifname,
                            netnsid=netnsid))
    for kind, got, payload in replies(sock):
        if got != seq:
            continue
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload)
            if code:
                raise OSError(-code, os.strerror(-code))
        elif len(payload) >= 16:
            return payload
    raise OSError(errno.EIO, "no answer to RTM_GETLINK")


def link_index(sock: socket.socket, name: str, seq: int = 1) -> int:
    """The ifindex of the interface ``name`` in the socket's namespace (one ``RTM_GETLINK``).

    Raises OSError (ENODEV: no such interface).
    """
    payload = _getlink(sock, ifname=name, seq=seq)
    (index,) = struct.unpack_from("=i", payload, 4)  # struct ifinfomsg
    return int(index)


def link_peer(sock: socket.socket, name: str) -> tuple[int, int, int] | None:
    """``(ifindex, the peer's ifindex, the peer namespace's id)`` of the veth ``name`` (ids
    -1 when unknown), or None when there is no such interface."""
    try:
        payload = _getlink(sock, ifname=name)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    (index,) = struct.unpack_from("=i", payload, 4)
    peer = nsid = -1
    off = 16
    while off + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, off)
        if length < 4:
            break
        kind &= 0x3FFF
        if kind == _IFLA_LINK and length >= 8:
            (peer,) = struct.unpack_from("=i", payload, off + 4)
        elif kind == _IFLA_LINK_NETNSID and length >= 8:
            (nsid,) = struct.unpack_from("=i", payload, off + 4)
        off += length + (-length % 4)
    return int(index), int(peer), int(nsid)


def peer_reachable(sock: socket.socket, peer: int, nsid: int) -> bool:
    """Whether link ``peer`` of the namespace the socket's namespace knows as ``nsid`` can be
    reached: a namespace being destroyed no longer can (EINVAL), nor a link that is gone."""
    try:
        _getlink(sock, index=peer, netnsid=nsid)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENODEV):
            return False
        raise
    return True


def make_veth(sock: socket.socket, name: str, peer: str, netns_fd: int, mtu: int,
              master: int, hairpin: bool) -> None:
    """A veth pair in one batch: ``name`` in the socket's namespace, up on the bridge with
    ifindex ``master`` (in hairpin mode with ``hairpin``), and ``peer`` made in the namespace
    of ``netns_fd`` (down: a veth end cannot be opened before the pair is linked), both with
    ``mtu``.

    Raises OSError (EEXIST: a name is taken).
    """
    from pyroute2.netlink.rtnl import RTM_NEWLINK
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["flags"], msg["change"] = _IFF_UP, _IFF_UP
    msg["attrs"] = [
        ("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
        ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": [
                ("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", netns_fd), ("IFLA_MTU", mtu)]})]})]})]
    msgs = [rtnl_message(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE |
                         NLM_F_EXCL, 1)]
    if hairpin:
        msgs.append(_hairpin_message(name, 2))
    results = transact(sock, msgs, list(range(1, len(msgs) + 1)))
    for seq, what in ((1, f"create veth {name}"), (2, f"set hairpin mode on {name}")):
        if seq <= len(msgs) and results.get(seq, errno.EIO):
            code = results.get(seq, errno.EIO)
            raise OSError(code, f"{what}: {os.strerror(code)}")


def set_hairpin(sock: socket.socket, name: str) -> None:
    """Put the bridge port ``name`` in hairpin mode. Raises OSError."""
    results = transact(sock, [_hairpin_message(name, 1)], [1])
    code = results.get(1, errno.EIO)
    if code:
        raise OSError(code, f"set hairpin mode on {name}: {os.strerror(code)}")


def _hairpin_message(name: str, seq: int) -> bytes:
    from pyroute2.netlink.rtnl import RTM_NEWLINK
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_SLAVE_KIND", "bridge"),
        ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", _BRIDGE_MODE_HAIRPIN)]})]})]
    return rtnl_message(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)


def configure_interface(sock: socket.socket, ifname: str,
                        addresses: Sequence[tuple[int, str | None, int]],
                        gateways: Sequence[tuple[int, str | None]], mtu: int | None) -> None:
    """Configure ``ifname`` in the namespace of ``sock`` (a netlink socket there): its
    ``addresses`` (``(family, address or None, prefix length)``; IPv6 ones without duplicate
    address detection), it and ``lo`` up, then a default route through each gateway
    (``(family, gateway or None)``) with ``mtu`` as its MTU metric when given -- unless the
    namespace has one already. One ``RTM_GETLINK``, then one batch of requests.

    Raises OSError (what the kernel refused).
    """
    from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWROUTE, RTM_SETLINK
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    idx = link_index(sock, ifname)
    req = NLM_F_REQUEST | NLM_F_ACK
    create = req | NLM_F_CREATE | NLM_F_EXCL
    msgs: list[tuple[bytes, bool]] = []  # the message, whether EEXIST is fine

    def add(msg: Any, kind: int, flags: int, exist_ok: bool = False) -> None:
        msgs.append((rtnl_message(msg, kind, flags, len(msgs) + 2), exist_ok))

    for family, address, prefixlen in addresses:
        if address is None:
            continue
        a = ifaddrmsg()
        a["family"], a["prefixlen"], a["index"] = family, prefixlen, idx
        a["flags"] = _IFA_F_NODAD if family == socket.AF_INET6 else 0
        a["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)] \
            if family == socket.AF_INET else [("IFA_ADDRESS", address)]
        add(a, RTM_NEWADDR, create)
    for index, name in ((idx, None), (0, "lo")):
        link = ifinfmsg()
        link["index"], link["flags"], link["change"] = index, _IFF_UP, _IFF_UP
        link["attrs"] = [("IFLA_IFNAME", name)] if name else []
        add(link, RTM_SETLINK, req)
    for family, gw in gateways:
        if gw is None:
            continue
        r = rtmsg()
        r["family"], r["table"], r["proto"] = family, _RT_TABLE_MAIN, _RTPROT_STATIC
        r["scope"], r["type"] = _RT_SCOPE_UNIVERSE, _RTN_UNICAST
        r["attrs"] = [("RTA_GATEWAY", gw), ("RTA_OIF", idx)]
        if mtu is not None:
            r["attrs"].append(("RTA_METRICS", {"attrs": [("RTAX_MTU", mtu)]}))
        add(r, RTM_NEWROUTE, create, exist_ok=True)  # EEXIST: it has a default route
    seqs = list(range(2, len(msgs) + 2))
    results = transact(sock, [m for m, _ in msgs], seqs)
    for seq, (_msg, exist_ok) in zip(seqs, msgs, strict=True):
        code = results.get(seq, errno.EIO)
        if code and not (exist_ok and code == errno.EEXIST):
            raise OSError(code, f"configure {ifname}: {os.strerror(code)}")


def delete_link(sock: socket.socket, monitor: socket.socket, name: str, index: int) -> None:
    """Delete the link ``name`` (ifindex ``index``) of the sockets' namespace and return as
    soon as the kernel has unlisted it -- for a veth, both ends gone from their namespaces,
    what Docker's disconnect promises. The deleting call itself goes on for an RCU barrier
    more while the kernel frees the devices (tens of milliseconds under load); a thread of its
    own sits that out, as nothing depends on it. ``monitor`` hears the link notifications;
    both sockets are closed when done.

    Raises OSError (the kernel refused before unlisting it; ENODEV, already gone, is fine).
    """
    result: dict[int, int] = {}

    def delete() -> None:
        # By name: an index may be taken again once it is free.
        request = _link_request(_RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 1, ifname=name)
        try:
            result.update(transact(sock, [request], [1]))
        except OSError as exc:
            result[1] = exc.errno or errno.EIO
        finally:
            sock.close()

    with monitor:
        try:
            monitor.bind((0, 0))  # a port id of its own: the kernel's (0) gets no copy
            monitor.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _RTNLGRP_LINK)
        except OSError:
            monitor.close()  # no notifications: wait for the call itself
        worker = threading.Thread(target=delete, name=f"isolate-net: delete {name}",
                                  daemon=True)
        worker.start()
        while worker.is_alive():
            if monitor.fileno() < 0:
                worker.join()
            elif _unlisted(monitor, index):
                return
    code = result.get(1, errno.EIO)
    if code and code != errno.ENODEV:
        raise OSError(code, f"delete {name}: {os.strerror(code)}")


def _unlisted(monitor: socket.socket, index: int) -> bool:
    """Whether the link notifications on ``monitor`` (waited for a little) say that link
    ``index`` was deleted. A monitor that overflowed is closed (its caller then waits for the
    deleting call itself)."""
    if not select.select([monitor], [], [], 0.05)[0]:
        return False
    try:
        for kind, _seq, payload in replies(monitor):
            if kind == _RTM_DELLINK and len(payload) >= 8 and \
                    struct.unpack_from("=i", payload, 4)[0] == index:
                return True
    except OSError:  # ENOBUFS: notifications were lost
        monitor.close()
    return False
