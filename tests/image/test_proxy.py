"""The registry client through a real HTTP proxy: Debian's tinyproxy on 127.0.0.1, in front of
the test registry, started here with a config of its own and stopped by pid.

The registry is addressed by a name other than ``localhost`` that resolves to a loopback
address (the machine's host name, usually): as Docker does, isolate never proxies
``localhost`` or a loopback IP, but a name is proxied unless NO_PROXY lists it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from isolate.errors import ConfigError, UnsupportedError
from isolate.image import RegistryUnreachable, Store
from isolate.image._proxy import ProxySettings

from .conftest import Registry, free_port

pytestmark = pytest.mark.registry

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
              "http_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")


@attrs.frozen
class Tinyproxy:
    url: str
    log: Path

    def seen(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_tinyproxy(work: Path, *, basic_auth: tuple[str, str] | None = None
                  ) -> Iterator[Tinyproxy]:
    exe = shutil.which("tinyproxy")
    if exe is None:
        pytest.skip("tinyproxy is not installed (Debian package tinyproxy)")
    port = free_port()
    work.mkdir()
    config = work / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", "LogLevel Info",
             "MaxClients 20", "Allow 127.0.0.1", "DisableViaHeader Yes"]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    # No ConnectPort line: CONNECT to any port (the registry's) is allowed.
    config.write_text("\n".join(lines) + "\n")
    log = work / "tinyproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-d", "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30  # a readiness wait, not a timing assertion
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tinyproxy exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=2):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"tinyproxy did not listen: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Tinyproxy(f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()  # by its pid: only the process this test started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    with run_tinyproxy(tmp_path / "proxy") as p:
        yield p


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def loopback_name() -> str:
    """A host name, not localhost, that resolves to a loopback address."""
    for name in (socket.gethostname(), "ip6-localhost", "ip6-loopback"):
        with contextlib.suppress(OSError):
            infos = socket.getaddrinfo(name, None, socket.AF_INET)
            if name != "localhost" and infos and all(
                    i[4][0].startswith("127.") for i in infos):
                return name
    pytest.skip("no host name other than localhost resolves to 127.x here")


@pytest.fixture
def named(registry: Registry, rootfs_tar: Path, tmp_path: Path,
          clean_env: pytest.MonkeyPatch) -> tuple[str, str]:
    """(registry host by name, an image pushed there): pushed directly, before any proxy."""
    host = f"{loopback_name()}:{registry.host.rsplit(':', 1)[1]}"
    store = Store(tmp_path / "seed")
    img = store.import_tarball(rootfs_tar, "local/proxied:1")
    ref = f"{host}/proxy/test:{os.urandom(3).hex()}"
    store.push(img, ref, insecure=[host])
    return host, ref


def test_pull_and_push_go_through_https_proxy_and_http_proxy(
        named: tuple[str, str], proxy: Tinyproxy, tmp_path: Path,
        clean_env: pytest.MonkeyPatch) -> None:
    host, ref = named
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv("http_proxy", proxy.url)  # lower case counts too
    store = Store(tmp_path / "through")
    img = store.pull(ref, insecure=[host])
    assert Path(store.layer_dirs(img)[0], "etc", "marker").exists()
    store.push(img, f"{host}/proxy/pushed:1", insecure=[host])
    seen = proxy.seen()
    # HTTPS is tried first through a CONNECT tunnel (the registry speaks plain HTTP, so the
    # TLS handshake fails inside it), then plain HTTP in absolute form, blobs included.
    assert f"CONNECT {host} HTTP" in seen
    assert f"GET http://{host}/v2/proxy/test/manifests/" in seen
    assert f"GET http://{host}/v2/proxy/test/blobs/sha256:" in seen
    assert f"POST http://{host}/v2/proxy/pushed/blobs/uploads/" in seen


def test_no_proxy_and_loopback_addresses_go_direct(
        named: tuple[str, str], tmp_path: Path, clean_env: pytest.MonkeyPatch,
        registry: Registry) -> None:
    host, ref = named
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a proxied request fails
    clean_env.setenv("HTTPS_PROXY", dead)
    clean_env.setenv("HTTP_PROXY", dead)
    store = Store(tmp_path / "s")
    with pytest.raises(RegistryUnreachable, match=f"through proxy {dead}"):
        store.pull(ref, insecure=[host])
    clean_env.setenv("NO_PROXY", f"example.org,{host.split(':')[0]}")
    assert store.pull(ref, insecure=[host]).tags
    clean_env.delenv("NO_PROXY")
    # The same registry as 127.0.0.1: never proxied, as in Docker.
    direct = ref.replace(host, registry.host)
    assert store.pull(direct).tags


def test_all_proxy_is_the_fallback_and_proxy_credentials_are_sent(
        named: tuple[str, str], tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    host, ref = named
    with run_tinyproxy(tmp_path / "authproxy", basic_auth=("pxuser", "pxpass")) as p:
        clean_env.setenv("ALL_PROXY", p.url)
        store = Store(tmp_path / "s")
        with pytest.raises(RegistryUnreachable):  # 407 from the proxy without credentials
            store.pull(ref, insecure=[host])
        clean_env.setenv("ALL_PROXY", p.url.replace("http://", "http://pxuser:pxpass@"))
        assert store.pull(ref, insecure=[host]).tags
        assert "/v2/proxy/test/" in p.seen()


def test_a_proxy_url_that_cannot_be_used_is_one_clear_error(
        named: tuple[str, str], tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    host, ref = named
    clean_env.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(UnsupportedError, match="only http:// proxies"):
        Store(tmp_path / "s").pull(ref, insecure=[host])
    clean_env.setenv("ALL_PROXY", "http://127.0.0.1:99999")
    with pytest.raises(ConfigError, match="port"):
        Store(tmp_path / "s").pull(ref, insecure=[host])


@pytest.mark.parametrize(("no_proxy", "host", "bypassed"), [
    ("", "reg.example.com", False),
    ("*", "reg.example.com", True),
    ("example.com", "reg.example.com", True),
    ("example.com", "example.com:5000", True),
    (".example.com", "example.com", False),
    (".example.com", "a.example.com", True),
    ("ample.com", "example.com", False),  # whole labels only
    ("reg.example.com:5000", "reg.example.com:5000", True),
    ("reg.example.com:5000", "reg.example.com:443", False),
    ("10.0.0.0/8", "10.1.2.3:5000", True),
    ("10.0.0.0/8", "11.1.2.3", False),
    (" other , reg.example.com ", "REG.example.com", True),
    ("", "localhost:5000", True),  # loopback: always direct
    ("", "127.0.0.1:5000", True),
    ("", "[::1]:5000", True),
])
def test_no_proxy_matching(no_proxy: str, host: str, bypassed: bool) -> None:
    settings = ProxySettings.from_environ({"HTTPS_PROXY": "http://proxy:3128",
                                           "NO_PROXY": no_proxy})
    assert settings.bypassed(host) is bypassed
    assert (settings.proxy_for("https", host) is None) is bypassed


def test_which_variable_serves_which_scheme() -> None:
    env = {"HTTPS_PROXY": "secure:3128", "http_proxy": "http://plain:8080",
           "ALL_PROXY": "http://all:1"}
    s = ProxySettings.from_environ(env)
    assert str(s.proxy_for("https", "r.example")) == "http://secure:3128"  # no scheme: http
    assert str(s.proxy_for("http", "r.example")) == "http://plain:8080"
    s = ProxySettings.from_environ({"ALL_PROXY": "http://all:1"})
    assert str(s.proxy_for("http", "r.example")) == str(s.proxy_for("https", "r.example"))
    # A CGI program must not take HTTP_PROXY from its client (httpoxy), as Go ignores it.
    s = ProxySettings.from_environ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"})
    assert s.proxy_for("http", "r.example") is None
    creds = ProxySettings.from_environ({"HTTPS_PROXY": "http://u%40x:p%3A@proxy:3128"})
    proxy = creds.proxy_for("https", "r.example")
    assert proxy is not None and proxy.headers == {
        "Proxy-Authorization": "Basic dUB4OnA6"}  # u@x:p: decoded, then base64
