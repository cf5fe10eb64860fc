"""Registry client (OCI distribution spec): pull and push images, with Docker's auth flows.

Owns HTTP to registries (standard library ``http.client``: we need control over redirects so
credentials never follow a blob redirect to another host, and Range requests for resuming;
proxies from the environment, see :mod:`isolate.image._proxy`, tunnel HTTPS with CONNECT),
the WWW-Authenticate challenge (Basic and Bearer), credentials from the Docker config, and the
pull/push algorithms. Writes to disk only through the :class:`~isolate.image.store.Store`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import http.client
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from isolate import _json as json
from isolate import _record
from isolate.errors import ConfigError, DigestMismatch, ImageError, UnsupportedError
from isolate.image._proxy import Proxy, ProxySettings, is_loopback_host
from isolate.image.config import Image
from isolate.image.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    credentials_for,
    erase_credentials,
    registry_key,
    store_credentials,
)
from isolate.image.oci import (
    ACCEPT,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    media_type_of,
    parse_index,
    parse_manifest,
    require_layer_support,
    select_platform,
    sha256_digest,
)
from isolate.image.reference import DOCKER_HUB_API_HOST, Platform, Reference, is_registry_host

if TYPE_CHECKING:
    from isolate.image._storage import BlobStore

__all__ = [
    "ImageNotFound",
    "Progress",
    "RegistryClient",
    "RegistryUnreachable",
    "Unauthorized",
    "login",
    "logout",
    "pull_image",
    "push_image",
]

_CHUNK = 1 << 20
_MAX_MANIFEST = 4 << 20
_MAX_LINE = 65536


class ImageNotFound(ImageError):
    """The registry does not know the repository, tag or digest asked for."""


class Unauthorized(ImageError):
    """The registry refused access: no credentials, wrong ones, or no permission."""


class RegistryUnreachable(ImageError):
    """The registry could not be reached (refused, timed out, TLS failed, bad response)."""


@_record.record
class Progress:
    """One progress event of a pull or push.

    ``kind`` is ``"manifest"``, ``"config"`` or ``"layer"``; ``state`` one of ``"exists"``
    (already stored / already in the registry), ``"resumed"`` (``done`` bytes kept from an
    interrupted pull), ``"downloading"``/``"uploading"`` (``done`` of ``total`` bytes) and
    ``"done"``.
    """

    digest: str
    kind: str
    state: str
    done: int
    total: int


def _split_host(host: str) -> tuple[str, int | None]:
    parsed = urllib.parse.urlsplit("//" + host)
    return parsed.hostname or host, parsed.port


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', rest)}
    return scheme.lower(), params


def _error_text(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    return body[:200].decode("utf-8", "replace")


class _TunnelledHTTPS(http.client.HTTPSConnection):
    """HTTPS to a registry through an HTTP proxy: a CONNECT tunnel, then TLS end to end
    inside it, the certificate checked against the registry's name (not the proxy's).

    The CONNECT is isolate's own rather than ``set_tunnel``'s: that one leaves its response
    unclosed when the proxy refuses (a ResourceWarning later) and does not bracket IPv6
    hosts.
    """

    def __init__(self, proxy: Proxy, host: str, port: int, *, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._proxy = proxy
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._proxy.host, self._proxy.port), self.timeout)
        try:
            host = f"[{self.host}]" if ":" in self.host else self.host
            target = f"{host}:{self.port}"
            lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}",
                     *(f"{k}: {v}" for k, v in self._proxy.headers.items()), "", ""]
            sock.sendall("\r\n".join(lines).encode("latin-1"))
            # Unbuffered: not a byte past the proxy's answer may be taken from the socket.
            with sock.makefile("rb", buffering=0) as answer:
                status = answer.readline(_MAX_LINE)
                while answer.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # the headers of the proxy's answer: nothing we need
            parts = status.decode("latin-1").split(None, 2)
            if len(parts) < 2 or parts[1] != "200":
                raise OSError(f"the proxy refused CONNECT {target}: "
                              f"{status.decode('latin-1').strip() or 'no answer'}")
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class RegistryClient:
    """HTTP client for one registry host; thread-safe (a connection per request).

    ``insecure`` hosts (and loopback ones) may fall back to plain HTTP if HTTPS fails, as
    Docker does; every other host is HTTPS only, certificate checked.

    ``credentials`` are used as given; without them they are looked up (Docker config,
    credential helpers) the first time the registry asks for any, so an anonymous pull never
    runs a helper.
    """

    def __init__(self, host: str, *, insecure: tuple[str, ...] = (),
                 auth_file: str | None = None, timeout: float = 60.0,
                 credentials: Credentials | None = None,
                 proxies: ProxySettings | None = None) -> None:
        if not is_registry_host(host):
            raise ConfigError(f"registry: {host!r} is not a registry host[:port] (a port is 1 "
                              "to 65535)")
        self.host = host
        #: Proxies for this registry and its token server (default: from the environment).
        self.proxies = proxies if proxies is not None else ProxySettings.from_environ()
        self.allow_http = host in insecure or is_loopback_host(host)
        self.scheme: str | None = None
        self.timeout = timeout
        self._auth_file = auth_file
        self._creds = credentials
        self._creds_known = credentials is not None
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        self._lock = threading.Lock()
        self._creds_lock = threading.Lock()

    @property
    def creds(self) -> Credentials | None:
        """The credentials for this registry (looked up once, on first use).

        Raises:
            ImageError, CredentialHelperError: as :func:`credentials_for`.
        """
        with self._creds_lock:
            if not self._creds_known:
                self._creds = credentials_for(self.host, self._auth_file)
                self._creds_known = True
            return self._creds

    # -- transport -------------------------------------------------------------------------

    def _connect(self, scheme: str, host: str
                 ) -> tuple[http.client.HTTPConnection, Proxy | None]:
        """A connection for ``scheme://host``, and the proxy plain HTTP must be sent to in
        absolute form (None: direct, or an HTTPS tunnel through the proxy with CONNECT)."""
        hostname, port = _split_host(host)
        proxy = self.proxies.proxy_for(scheme, host)
        if scheme == "https":
            context = ssl.create_default_context()
            if proxy is None:
                return http.client.HTTPSConnection(hostname, port, timeout=self.timeout,
                                                   context=context), None
            return _TunnelledHTTPS(proxy, hostname, port or 443, timeout=self.timeout,
                                   context=context), None
        if proxy is None:
            return http.client.HTTPConnection(hostname, port, timeout=self.timeout), None
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=self.timeout), proxy

    def _via(self, url: str) -> str:
        """`` through proxy URL`` for messages about ``url``, if it goes through one."""
        parts = urllib.parse.urlsplit(url)
        try:
            proxy = self.proxies.proxy_for(parts.scheme, parts.netloc)
        except (ConfigError, UnsupportedError):
            return ""
        return f" (through proxy {proxy})" if proxy is not None else ""

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | IO[bytes] | None) -> tuple[http.client.HTTPConnection,
                                                         http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(url)
        conn, proxy = self._connect(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if proxy is not None:  # plain HTTP through a proxy: the request names the registry
            target = f"{parts.scheme}://{parts.netloc}{target}"
            headers = {**headers, **proxy.headers}
        try:
            conn.request(method, target, body=body, headers=headers)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _base(self) -> str:
        if self.scheme is None:
            with self._lock:
                if self.scheme is None:
                    self.scheme = self._probe()
        return f"{self.scheme}://{self.host}"

    def _probe(self) -> str:
        schemes = ("https", "http") if self.allow_http else ("https",)
        last: Exception | None = None
        for scheme in schemes:
            try:
                conn, resp = self._send("GET", f"{scheme}://{self.host}/v2/", {}, None)
                resp.read()
                conn.close()
                return scheme
            except (OSError, http.client.HTTPException) as exc:
                last = exc
        raise RegistryUnreachable(f"registry {self.host} is unreachable: {last}"
                                  f"{self._via(f'https://{self.host}/')}") from last

    @contextlib.contextmanager
    def request(self, method: str, path: str, *, scope: str,
                headers: dict[str, str] | None = None,
                body: bytes | Callable[[], IO[bytes]] | None = None,
                ok: tuple[int, ...] = (200,)) -> Iterator[http.client.HTTPResponse]:
        """Send a request (path under the registry or absolute URL), authenticating on 401
        and following redirects (without credentials to other hosts).

        Raises:
            Unauthorized, ImageNotFound, RegistryUnreachable, ImageError (other status).
        """
        url = path if "://" in path else self._base() + path
        hdrs = dict(headers or {})
        conn: http.client.HTTPConnection | None = None
        try:
            for attempt in range(8):
                send_auth = urllib.parse.urlsplit(url).netloc == self.host
                h = dict(hdrs)
                if send_auth and scope in self._auth:
                    h["Authorization"] = self._auth[scope]
                data = body() if callable(body) else body
                try:
                    conn, resp = self._send(method, url, h, data)
                except (OSError, http.client.HTTPException) as exc:
                    raise RegistryUnreachable(f"registry {self.host}: {method} {url} failed: "
                                              f"{exc}{self._via(url)}") from exc
                finally:
                    if callable(body) and data is not None and hasattr(data, "close"):
                        data.close()  # type: ignore[union-attr]
                if resp.status == 401 and send_auth and attempt == 0:
                    challenge = resp.getheader("WWW-Authenticate") or ""
                    resp.read()
                    conn.close()
                    self._authenticate(challenge, scope)
                    continue
                if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                    url = urllib.parse.urljoin(url, resp.getheader("Location") or "")
                    resp.read()
                    conn.close()
                    if resp.status == 303:
                        method, body = "GET", None
                    continue
                if resp.status == 407:
                    resp.read()
                    raise RegistryUnreachable(
                        f"registry {self.host}: the proxy wants credentials (407){self._via(url)}"
                        ": put them in the proxy's URL (http://user:password@host:port)")
                if resp.status not in ok:
                    text = _error_text(resp.read())
                    what = f"{method} {urllib.parse.urlsplit(url).path}"
                    if resp.status in (401, 403):
                        raise Unauthorized(f"registry {self.host} refused {what} "
                                           f"({resp.status}): {text}")
                    if resp.status == 404:
                        raise ImageNotFound(f"registry {self.host}: {what} not found: {text}")
                    raise ImageError(f"registry {self.host}: {what} answered {resp.status}: "
                                     f"{text}")
                yield resp
                return
            raise ImageError(f"registry {self.host}: too many redirects or auth rounds for "
                             f"{url}")
        finally:
            if conn is not None:
                conn.close()

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        creds = self.creds
        if scheme == "basic":
            if creds is None:
                raise Unauthorized(f"registry {self.host} needs a user name and password, and "
                                   "the Docker config has none for it")
            if creds.identity_token is not None:
                raise Unauthorized(f"registry {self.host} asks for a user name and password; "
                                   "the Docker config has only an identity token for it")
            self._auth[scope] = _basic(creds)
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(f"registry {self.host} asks for unsupported authentication "
                               f"{challenge!r}")
        query = {"service": params["service"]} if params.get("service") else {}
        if scope:
            query["scope"] = scope
        realm = params["realm"]
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme != "https" and not (parts.scheme == "http" and (
                is_loopback_host(parts.netloc) or parts.netloc == self.host or self.allow_http)):
            raise Unauthorized(f"registry {self.host}: refusing token realm {realm!r} over "
                               "plain HTTP")
        if creds is not None and creds.identity_token is not None:
            # An identity token is an OAuth2 refresh token: trade it by POST, as Docker does.
            form = urllib.parse.urlencode({**query, "grant_type": "refresh_token",
                                           "client_id": "isolate",
                                           "refresh_token": creds.identity_token}).encode()
            method, url, body = "POST", realm, form
            h = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            method, body = "GET", None
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            h = {"Authorization": _basic(creds)} if creds is not None else {}
        try:
            conn, resp = self._send(method, url, h, body)
            data = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryUnreachable(f"token server {realm} for {self.host} is unreachable: "
                                      f"{exc}{self._via(url)}") from exc
        if resp.status != 200:
            raise Unauthorized(f"token server {realm} refused {scope or 'login'!r} "
                               f"({resp.status}): {_error_text(data)}")
        token: Any = None
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            doc = json.loads(data)
            token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"token server {realm} answered without a token")
        self._auth[scope] = f"Bearer {token}"

    # -- distribution API ------------------------------------------------------------------

    def get_manifest(self, ref: Reference, target: str, *,
                     scope: str) -> tuple[bytes, str, str]:
        """Fetch a manifest or index by tag or digest; return (bytes, media type, digest).

        Raises:
            DigestMismatch: fetched by digest and the bytes hash to something else.
            plus what :meth:`request` raises.
        """
        path = f"/v2/{ref.repository}/manifests/{target}"
        try:
            with self.request("GET", path, scope=scope,
                              headers={"Accept": ", ".join(ACCEPT)}) as resp:
                data = resp.read(_MAX_MANIFEST + 1)
                header_type = resp.getheader("Content-Type")
        except ImageNotFound as exc:
            raise ImageNotFound(f"unknown image {ref.name}:{target} on {self.host}"
                                f" ({exc})") from None
        if len(data) > _MAX_MANIFEST:
            raise ImageError(f"manifest {ref.name}:{target} is larger than {_MAX_MANIFEST}")
        digest = sha256_digest(data)
        if target.startswith("sha256:") and digest != target:
            raise DigestMismatch(f"manifest {ref.name}@{target} from {self.host} hashes to "
                                 f"{digest}", expected=target, actual=digest)
        return data, media_type_of(data, header_type), digest


def _verify_file(path: str, digest: str, size: int | None, what: str) -> None:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    actual = "sha256:" + h.hexdigest()
    if actual != digest or (size is not None and n != size):
        os.unlink(path)
        raise DigestMismatch(f"{what} {digest}: downloaded {n} bytes hashing to {actual}",
                             expected=digest, actual=actual)


def _fetch_blob(client: RegistryClient, store: BlobStore, ref: Reference, desc: Descriptor,
                kind: str, scope: str, progress: Callable[[Progress], None] | None) -> None:
    """Download one blob into the store under its lock, resuming a partial download."""
    def report(state: str, done: int) -> None:
        if progress is not None:
            progress(Progress(desc.digest, kind, state, done, desc.size))

    if store.has_blob(desc.digest):
        report("exists", desc.size)
        return
    with store.blob_lock(desc.digest).hold():
        if store.has_blob(desc.digest):  # another process fetched it while we waited
            report("exists", desc.size)
            return
        partial = store.partial_path(desc.digest)
        offset = os.path.getsize(partial) if os.path.exists(partial) else 0
        if offset > desc.size:
            os.unlink(partial)
            offset = 0
        if offset:
            report("resumed", offset)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset < desc.size or desc.size == 0:
            with client.request("GET", f"/v2/{ref.repository}/blobs/{desc.digest}",
                                scope=scope, headers=headers, ok=(200, 206)) as resp:
                if resp.status == 200:
                    offset = 0  # the server ignored Range: start over
                with open(partial, "ab" if offset else "wb") as out:
                    done = offset
                    while True:
                        try:
                            chunk = resp.read(_CHUNK // 4)
                        except (OSError, http.client.HTTPException) as exc:
                            raise RegistryUnreachable(
                                f"registry {client.host}: download of {desc.digest} broke off "
                                f"at {done} bytes: {exc} (pull again to resume)") from exc
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        if done > desc.size:
                            break
                        report("downloading", done)
                    out.flush()
                    os.fsync(out.fileno())
        _verify_file(partial, desc.digest, desc.size, f"{kind} blob")
        store.commit_file(partial, desc.digest)
        report("done", desc.size)


def pull_image(store: BlobStore, ref: Reference, *, platform: Platform,
               insecure: tuple[str, ...], progress: Callable[[Progress], None] | None,
               auth_file: str | None, max_workers: int = 4) -> Image:
    """Pull ``ref`` into ``store`` (see :meth:`isolate.image.Store.pull`)."""
    client = RegistryClient(ref.api_host, insecure=insecure, auth_file=auth_file)
    scope = f"repository:{ref.repository}:pull"
    target = ref.digest or ref.tag or "latest"
    data, media_type, digest = client.get_manifest(ref, target, scope=scope)
    index = None
    if media_type in INDEX_TYPES:
        chosen = select_platform(parse_index(data), platform)
        index = data
        data, media_type, digest = client.get_manifest(ref, chosen.digest, scope=scope)
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"{ref}: unsupported manifest type {media_type!r}")
    if progress is not None:
        progress(Progress(digest, "manifest", "done", len(data), len(data)))
    manifest = parse_manifest(data, media_type)
    require_layer_support(manifest.layers, str(ref))
    with store.using():
        _fetch_blob(client, store, ref, manifest.config, "config", scope, progress)
        if index is None:
            _, plat, _, _ = _config_facts(store, manifest.config.digest)
            # A single-platform image: only a different os/architecture is a mismatch.
            if (platform.os, platform.architecture) != (plat.os, plat.architecture):
                raise ImageError(f"{ref} is for {plat}, not {platform}")
        workers = max(1, min(max_workers, len(manifest.layers)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(_fetch_blob, client, store, ref, d, "layer", scope, progress)
                       for d in manifest.layers]
            try:
                for fut in futures:
                    fut.result()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        tags = [ref]
        if ref.tag is not None:
            tags.append(ref.with_digest(digest))
        return store.commit_image(data, media_type, tags=tags, index=index)


def _config_facts(store: BlobStore, digest: str) -> Any:
    from isolate.image.config import parse_config_blob
    return parse_config_blob(store.read_blob(digest))


def push_image(store: BlobStore, image: Image, ref: Reference, *, insecure: tuple[str, ...],
               progress: Callable[[Progress], None] | None, auth_file: str | None) -> str:
    """Push ``image`` as ``ref`` (see :meth:`isolate.image.Store.push`); return the digest."""
    client = RegistryClient(ref.api_host, insecure=insecure, auth_file=auth_file)
    scope = f"repository:{ref.repository}:pull,push"
    data = store.read_blob(image.manifest_digest)
    config = parse_manifest(data, image.manifest_media_type).config
    for kind, desc in [("layer", d) for d in image.layers] + [("config", config)]:
        _push_blob(client, store, ref, desc, kind, scope, progress)
    target = ref.digest or ref.tag or "latest"
    with client.request("PUT", f"/v2/{ref.repository}/manifests/{target}", scope=scope,
                        headers={"Content-Type": image.manifest_media_type,
                                 "Content-Length": str(len(data))},
                        body=data, ok=(200, 201)) as resp:
        resp.read()
        digest = resp.getheader("Docker-Content-Digest") or sha256_digest(data)
    if progress is not None:
        progress(Progress(digest, "manifest", "done", len(data), len(data)))
    return digest


def _push_blob(client: RegistryClient, store: BlobStore, ref: Reference, desc: Descriptor,
               kind: str, scope: str, progress: Callable[[Progress], None] | None) -> None:
    try:
        with client.request("HEAD", f"/v2/{ref.repository}/blobs/{desc.digest}",
                            scope=scope) as resp:
            resp.read()
        if progress is not None:
            progress(Progress(desc.digest, kind, "exists", desc.size, desc.size))
        return
    except ImageNotFound:
        pass
    with client.request("POST", f"/v2/{ref.repository}/blobs/uploads/", scope=scope,
                        headers={"Content-Length": "0"}, ok=(202,)) as resp:
        resp.read()
        location = resp.getheader("Location")
    if not location:
        raise ImageError(f"registry {client.host} started an upload without a Location")
    sep = "&" if "?" in location else "?"
    url = urllib.parse.urljoin(client._base() + "/", location) + sep + urllib.parse.urlencode(
        {"digest": desc.digest})
    size = os.path.getsize(store.blob_path(desc.digest))
    with client.request("PUT", url, scope=scope,
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Length": str(size)},
                        body=lambda: store.open_blob(desc.digest), ok=(201, 204)) as resp:
        resp.read()
    if progress is not None:
        progress(Progress(desc.digest, kind, "done", size, size))


def _login_host(registry: str) -> tuple[str, str]:
    """(Docker's key, the host to talk the API to) for a registry name a user typed."""
    key = registry_key(registry)
    return key, DOCKER_HUB_API_HOST if key == DOCKER_HUB_KEY else key


def login(registry: str, username: str, password: str, *, auth_file: str | None = None,
          insecure: Iterable[str] = (), timeout: float = 60.0) -> str:
    """Check ``username``/``password`` against ``registry`` and store them as ``docker login``
    does; return where they went (``"docker-credential-NAME"`` or the config file's path).

    The check is a ``GET /v2/`` that must succeed with these credentials, through the same
    authentication as a pull (basic, or a token from the registry's token server). They are
    stored through the credential helper the Docker config picks for the registry
    (``credHelpers``, ``credsStore``), else as an ``auth`` entry in ``auth_file`` (default
    ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), written atomically with
    mode 0600 and every other key kept. Nothing is stored when the check fails.
    ``registry`` is a host[:port] (a URL is reduced to one); ``docker.io`` is Docker Hub.

    Raises:
        ConfigError: bad registry name, or an empty user name or password.
        Unauthorized: the registry refused the credentials ("login to HOST failed:
            unauthorized"; the registry's answer is the ``__cause__``).
        RegistryUnreachable: the registry or its token server could not be reached.
        CredentialHelperError: the configured helper is missing, failed or hung.
        ImageError: the config file is unreadable, or the registry answered oddly.
        IsolateOSError: the config file cannot be written.
    """
    key, host = _login_host(registry)
    if not username:
        raise ConfigError("login: the user name is empty")
    if not password:
        raise ConfigError("login: the password is empty")
    client = RegistryClient(host, insecure=tuple(insecure), timeout=timeout,
                            credentials=Credentials(username, password))
    try:
        with client.request("GET", "/v2/", scope="") as resp:
            resp.read()
    except Unauthorized as exc:
        shown = "docker.io" if key == DOCKER_HUB_KEY else key
        raise Unauthorized(f"login to {shown} failed: unauthorized") from exc
    return store_credentials(key, Credentials(username, password), auth_file=auth_file)


def logout(registry: str, *, auth_file: str | None = None) -> bool:
    """Forget the stored credentials of ``registry`` as ``docker logout`` does (through the
    configured helper's ``erase``, and from the config's ``auths``); True if there were any.

    Raises:
        ConfigError: bad registry name.
        CredentialHelperError: the configured helper is missing, failed or hung.
        ImageError: the config file is unreadable.
        IsolateOSError: the config file cannot be written.
    """
    key, _host = _login_host(registry)
    return erase_credentials(key, auth_file=auth_file)
