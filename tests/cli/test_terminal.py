"""The client side of a terminal, without a container: the detach-key scanner and the
``--detach-keys`` parser, as tables."""

from __future__ import annotations

import pytest

from isolate.cli.container_options import parse_detach_keys
from isolate.cli.terminal import DetachScanner
from isolate.errors import ConfigError

KEYS = b"\x10\x11"  # ctrl-p ctrl-q


@pytest.mark.parametrize(("chunks", "sent", "detached"), [
    ([b"abc"], b"abc", False),
    ([b"ab\x10\x11cd"], b"ab", True),
    ([b"ab\x10", b"\x11"], b"ab", True),            # the keys split over two reads
    ([b"\x10x"], b"\x10x", False),                  # broken: what was held goes on
    ([b"\x10\x10\x11"], b"\x10", True),             # a held byte may begin the keys again
    ([b"\x10", b"y", b"\x10\x11"], b"\x10y", True),
    ([b"\x11\x10"], b"\x11", False),                # the last byte is held, not sent yet
])
def test_the_detach_keys_are_found_in_what_is_typed(chunks: list[bytes], sent: bytes,
                                                    detached: bool) -> None:
    scanner = DetachScanner(KEYS)
    out = b""
    found = False
    for chunk in chunks:
        data, found = scanner.feed(chunk)
        out += data
        if found:
            break
    assert (out, found) == (sent, detached)


@pytest.mark.parametrize(("spec", "keys"), [
    (None, b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"),
    ("ctrl-x,x", b"\x18x"), ("ctrl-@", b"\x00"), ("ctrl-[", b"\x1b"), ("a,b,c", b"abc"),
    ("CTRL-Z", b"\x1a"),
])
def test_detach_keys_as_docker_spells_them(spec: str | None, keys: bytes) -> None:
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-1", "ctrl-", "ab", "", "ctrl-pq"])
def test_detach_keys_docker_refuses(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_detach_keys(spec)
