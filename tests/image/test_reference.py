"""Reference and Platform parsing (Docker grammar and defaults)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isolate.errors import ConfigError
from isolate.image import Platform, Reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:v1", "localhost:5000", "a/b", "v1", None),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
        ("quay.io/org/img@" + D, "quay.io", "org/img", None, D),
        ("ghcr.io/o/i:t@" + D, "ghcr.io", "o/i", "t", D),
        ("[::1]:5000/img:tag", "[::1]:5000", "img", "tag", None),
        ("a__b/c-d.e/f---g", "docker.io", "a__b/c-d.e/f---g", "latest", None),
    ],
)
def test_parse_applies_docker_defaults(text: str, registry: str, repository: str,
                                       tag: str | None, digest: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag,
                                                                   digest)


@pytest.mark.parametrize(
    "text",
    ["", "Busybox", "busybox:", ":tag", "a//b", "/a", "a/", "busybox@sha256:abc",
     "busybox@md5:" + "a" * 32, "a:b:c", "-a", "a_-b", "busybox:-tag", "x:" + "t" * 129,
     " busybox", "bad host!/x", "a" * 256],
)
def test_parse_rejects_malformed_references(text: str) -> None:
    with pytest.raises(ConfigError):
        Reference.parse(text)


def test_familiar_and_str_forms() -> None:
    ref = Reference.parse("busybox")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.familiar == "busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/a:b").familiar == "localhost:5000/a:b"


_alnum = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
_component = st.builds(lambda a, sep, b: a + sep + b if sep is not None else a, _alnum,
                       st.sampled_from([None, ".", "_", "__", "-", "--"]), _alnum)
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_host = st.sampled_from(["", "localhost/", "localhost:5000/", "example.com/",
                         "127.0.0.1:1/", "reg-1.example.org:443/"])
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(st.none(), st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True))


@given(_host, _path, _tag, _digest)
def test_valid_references_parse_and_round_trip(host: str, path: str, tag: str | None,
                                               digest: str | None) -> None:
    text = host + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = Reference.parse(text)
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref
    assert ref.digest == digest
    assert ref.tag == (tag or (None if digest else "latest"))


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_config_error(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except ConfigError:
        return
    assert Reference.parse(str(ref)) == ref


def test_platform_parse_and_match() -> None:
    p = Platform.parse("linux/arm64/v8")
    assert (p.os, p.architecture, p.variant) == ("linux", "arm64", "v8")
    assert str(p) == "linux/arm64/v8"
    assert p.matches(Platform("linux", "arm64", None))  # arm64 without variant means v8
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/amd64").matches(Platform("linux", "arm64"))
    assert not Platform.parse("linux/arm/v7").matches(Platform("linux", "arm", "v6"))


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", "Linux/amd64", "/amd64"])
def test_platform_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError):
        Platform.parse(text)
