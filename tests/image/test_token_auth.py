"""Bearer-token auth: a registry that trusts a tiny token server started by the test."""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from isolate.image import ImageConfig, Store, Unauthorized, login

from .conftest import REGISTRY_BIN, DockerHome, Registry, docker_config, run_registry

pytestmark = pytest.mark.registry
crypto = pytest.importorskip("cryptography", reason="the token server signs with cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

SERVICE, ISSUER = "isolate-test-registry", "isolate-test-issuer"
IDENTITY_TOKEN = "refresh-tester"  # the token server's refresh token for "tester"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues ES256 JWTs (x5c header) to ``tester:s3cret`` (GET with basic auth) or to the
    holder of ``IDENTITY_TOKEN`` (POST, refresh-token grant) for the scopes asked; records asks."""

    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "isolate test tokens")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[tuple[str | None, str]] = []  # (user, scope)

    def token(self, scope: str) -> str:
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(
                      serialization.Encoding.DER)).decode()]}
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": _b64(now.to_bytes(8, "big")),
                  "access": access}
        signing_input = (_b64(json.dumps(header).encode()) + "." +
                         _b64(json.dumps(claims).encode()))
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scope = query.get("scope", [""])[0]
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    user_pw = base64.b64decode(auth[6:]).decode()
                    user = user_pw.split(":")[0] if user_pw == "tester:s3cret" else "BAD"
                server.requests.append((user, scope))
                if user != "tester":
                    self.send_response(401)
                    self.end_headers()
                    return
                self._answer({"token": server.token(scope)})

            def do_POST(self) -> None:
                # OAuth2 refresh-token grant: what a client does with an identity token.
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                scope = form.get("scope", [""])[0]
                ok = (form.get("grant_type") == ["refresh_token"]
                      and form.get("refresh_token") == [IDENTITY_TOKEN])
                server.requests.append(("<token>" if ok else "BAD", scope))
                if not ok:
                    self.send_response(401)
                    self.end_headers()
                    return
                self._answer({"access_token": server.token(scope)})

            def _answer(self, doc: dict[str, str]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Registry, TokenServer]]:
    import os
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed")
    work = tmp_path_factory.mktemp("tokenregistry")
    tokens = TokenServer(work)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), tokens.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        auth = f"""auth:
  token:
    realm: http://127.0.0.1:{httpd.server_address[1]}/token
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {tokens.bundle}
"""
        with run_registry(work, auth) as host:
            yield Registry(host, work / "storage", "tester", "s3cret"), tokens
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_bearer_token_push_and_pull(token_registry: tuple[Registry, TokenServer],
                                    rootfs_tar: Path, tmp_path: Path) -> None:
    registry, tokens = token_registry
    good = docker_config(tmp_path, registry.host, "tester", "s3cret")
    store = Store(str(tmp_path / "s"))
    img = store.import_tarball(rootfs_tar, "t/t:1", config=ImageConfig(cmd=["token"]))
    ref = f"{registry.host}/test/tokened:1"
    store.push(img, ref, auth_file=good)
    assert ("tester", "repository:test/tokened:pull,push") in tokens.requests
    other = Store(str(tmp_path / "o"))
    assert other.pull(ref, auth_file=good).id == img.id
    assert ("tester", "repository:test/tokened:pull") in tokens.requests


def test_bearer_token_refused_without_credentials(token_registry: tuple[Registry, TokenServer],
                                                  tmp_path: Path) -> None:
    registry, _tokens = token_registry
    with pytest.raises(Unauthorized, match="token server"):
        Store(str(tmp_path / "s")).pull(f"{registry.host}/test/tokened:1",
                                        auth_file=str(tmp_path / "none.json"))


def test_identity_token_from_a_helper_is_traded_for_access(
        token_registry: tuple[Registry, TokenServer], docker_home: DockerHome,
        rootfs_tar: Path, tmp_path: Path) -> None:
    registry, tokens = token_registry
    helper = docker_home.helper("isotest")
    helper.put(registry.host, "<token>", IDENTITY_TOKEN)
    docker_home.write_config({"credsStore": "isotest"})
    store = Store(str(tmp_path / "s"))
    img = store.import_tarball(rootfs_tar, "t/t:1", config=ImageConfig(cmd=["idtoken"]))
    store.push(img, f"{registry.host}/test/idtoken:1")
    assert ("<token>", "repository:test/idtoken:pull,push") in tokens.requests
    helper.put(registry.host, "<token>", "not-the-token")
    with pytest.raises(Unauthorized, match=r"token server .* refused"):
        Store(str(tmp_path / "o")).pull(f"{registry.host}/test/idtoken:1")


def test_login_through_a_token_server(token_registry: tuple[Registry, TokenServer],
                                      docker_home: DockerHome) -> None:
    registry, tokens = token_registry
    with pytest.raises(Unauthorized, match="failed: unauthorized"):
        login(registry.host, "tester", "wrong")
    assert not docker_home.config.exists()
    login(registry.host, "tester", "s3cret")
    assert ("tester", "") in tokens.requests  # login asks for no scope, as docker login
    assert json.loads(docker_home.config.read_text())["auths"] == {registry.host: {
        "auth": base64.b64encode(b"tester:s3cret").decode()}}
