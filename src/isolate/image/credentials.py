"""Registry credentials where the Docker CLI keeps them: ``config.json`` and credential helpers.

Owns reading and writing the Docker client config (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``) and running ``docker-credential-<name>`` helpers (``get``, ``store``,
``erase``). No HTTP here: checking credentials against a registry is the registry client's job.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from typing import Any

from isolate import _json as json
from isolate import _record
from isolate.errors import ConfigError, ImageError, IsolateOSError
from isolate.image.reference import DEFAULT_REGISTRY, DOCKER_HUB_API_HOST, is_registry_host

__all__ = [
    "DOCKER_HUB_KEY",
    "HELPER_TIMEOUT",
    "CredentialHelperError",
    "Credentials",
    "credentials_for",
    "docker_config_path",
    "erase_credentials",
    "helper_for",
    "registry_key",
    "store_credentials",
]

# The key Docker files Docker Hub's credentials under (in "auths", "credHelpers" and helpers).
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({DEFAULT_REGISTRY, "index.docker.io", DOCKER_HUB_API_HOST})
# How long a helper may take; a keychain prompt the user ignores must not hang a pull forever.
HELPER_TIMEOUT = 30.0
# What docker-credential-helpers print (on stdout, exit 1) when they hold nothing for a server.
_NOT_FOUND = "credentials not found in native keychain"
# A helper's Username meaning "Secret is an identity token", not a password.
_TOKEN_USER = "<token>"


class CredentialHelperError(ImageError):
    """A credential helper is missing, hung, failed or answered nonsense.

    ``helper`` is the program (``docker-credential-NAME``), ``action`` what it was asked
    (``get``, ``store``, ``erase``), ``detail`` its own message (its stderr's last line, else
    its stdout's) or what went wrong running it.
    """

    def __init__(self, helper: str, action: str, detail: str) -> None:
        super().__init__(f"credential helper {helper} {action}: {detail}")
        self.helper = helper
        self.action = action
        self.detail = detail

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.helper, self.action, self.detail))


@_record.record
class Credentials:
    """A user name and password, or an identity token (an OAuth2 refresh token).

    An identity token is what a helper answers with the user name ``<token>``; the registry
    client trades it at the token server for access tokens (bearer auth only: a registry that
    asks for basic auth cannot take one).
    """

    username: str = ""
    password: str = _record.field(default="", repr=False)
    identity_token: str | None = _record.field(default=None, repr=False)


def docker_config_path() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _host_of(name: str) -> str:
    """A config key or user input reduced to the registry host[:port], hub names unified."""
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", name.strip()).split("/", 1)[0]
    host = host.lower()
    return DEFAULT_REGISTRY if host in _HUB_HOSTS else host


def registry_key(registry: str) -> str:
    """The key Docker files ``registry``'s credentials under.

    ``https://index.docker.io/v1/`` for Docker Hub (``docker.io``, ``index.docker.io``,
    ``registry-1.docker.io``), otherwise the ``host[:port]`` (a scheme and a path are dropped:
    ``https://reg.example:5000/v2/`` -> ``reg.example:5000``).

    Raises:
        ConfigError: ``registry`` is not a host[:port] or URL of one.
    """
    host = _host_of(registry)
    if not is_registry_host(host):
        raise ConfigError(f"registry: {registry!r} is not a registry host[:port] (a port is 1 "
                          "to 65535)")
    return DOCKER_HUB_KEY if host == DEFAULT_REGISTRY else host


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        raise ImageError(f"cannot read registry credentials from {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{path}: not a Docker config (the top level is not a JSON object)")
    return doc


def _lookup(table: Any, key: str) -> tuple[str, Any] | None:
    """The entry of ``table`` (auths or credHelpers) for ``key``: exact, else by host."""
    if not isinstance(table, dict):
        return None
    if key in table:
        return key, table[key]
    host = _host_of(key)
    for name, value in table.items():
        if _host_of(str(name)) == host:
            return str(name), value
    return None


def helper_for(registry: str, auth_file: str | None = None) -> str | None:
    """The credential helper name (``NAME`` of ``docker-credential-NAME``) the Docker config
    picks for ``registry``: ``credHelpers[registry]``, else ``credsStore``, else None.

    Raises:
        ConfigError: bad registry name.
        ImageError: the config file is unreadable or not JSON.
    """
    key = registry_key(registry)
    return _helper_in(_read_config(auth_file or docker_config_path()), key)


def _helper_in(doc: dict[str, Any], key: str) -> str | None:
    found = _lookup(doc.get("credHelpers"), key)
    name = found[1] if found is not None else doc.get("credsStore")
    if name is None or name == "":
        return None
    if not isinstance(name, str) or "/" in name or name.strip() != name:
        raise ImageError(f"Docker config: {name!r} is not a credential helper name")
    return name


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _run_helper(name: str, action: str, data: bytes, timeout: float) -> bytes | None:
    """Run ``docker-credential-NAME ACTION`` with ``data`` on stdin; its stdout, or None when
    it says it holds no credentials for the server."""
    prog = f"docker-credential-{name}"
    exe = shutil.which(prog)
    if exe is None:
        raise CredentialHelperError(prog, action, f"{prog} is not on PATH")
    try:
        # Its own session, so a timeout kills whatever the helper started too.
        proc = subprocess.Popen([exe, action], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise CredentialHelperError(prog, action, f"cannot run {exe}: {exc}") from exc
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except BaseException as exc:
        # The group we made (its leader is unreaped, so the id is still ours), then the
        # helper itself in case it left the group. A process that left the session may hold
        # our pipes forever: do not read them to the end, close them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise CredentialHelperError(prog, action, f"no answer within {timeout:g} s "
                                        "(killed)") from None
        raise
    if proc.returncode != 0:
        said = _last_line(err) or _last_line(out)
        if _NOT_FOUND in said:
            return None
        how = (f"exit status {proc.returncode}" if proc.returncode > 0 else
               f"killed by {signal.Signals(-proc.returncode).name}")
        raise CredentialHelperError(prog, action, f"{said or 'failed'} ({how})")
    return out


def credentials_for(registry: str, auth_file: str | None = None, *,
                    timeout: float = HELPER_TIMEOUT) -> Credentials | None:
    """The credentials for ``registry`` as the Docker CLI finds them, or None.

    Precedence as Docker's: the helper ``credHelpers[registry]``, else the ``credsStore``
    helper, else the ``auths`` entry. When a helper is configured it alone answers: its "not
    found" means no credentials (anonymous), whatever ``auths`` holds. Keys match by host, so
    ``https://reg:5000`` in the file is ``reg:5000``; Docker Hub is ``https://index.docker.io/v1/``.

    Raises:
        ConfigError: bad registry name.
        ImageError: the config file is unreadable or malformed.
        CredentialHelperError: the helper is not on PATH, failed, hung for ``timeout``
            seconds, or answered something that is not its JSON.
    """
    key = registry_key(registry)
    path = auth_file or docker_config_path()
    doc = _read_config(path)
    helper = _helper_in(doc, key)
    if helper is not None:
        return _helper_get(helper, key, timeout)
    found = _lookup(doc.get("auths"), key)
    if found is None or not isinstance(found[1], dict):
        return None
    name, entry = found
    if entry.get("identitytoken"):
        return Credentials(str(entry.get("username", "")), identity_token=str(
            entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, _, pw = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ImageError(f"{path}: bad 'auth' value for {name}") from None
        return Credentials(user, pw)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def _helper_get(helper: str, key: str, timeout: float) -> Credentials | None:
    out = _run_helper(helper, "get", key.encode(), timeout)
    if out is None:
        return None
    try:
        answer = json.loads(out)
        user, secret = answer.get("Username", ""), answer.get("Secret", "")
        if not isinstance(user, str) or not isinstance(secret, str):
            raise ValueError("Username and Secret must be strings")
    except (ValueError, AttributeError, RecursionError) as exc:
        raise CredentialHelperError(f"docker-credential-{helper}", "get",
                                    f"answered something that is not its JSON: {exc}"
                                    ) from None
    if not user and not secret:
        return None
    if user == _TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def _write_config(path: str, doc: dict[str, Any]) -> None:
    """Replace the config atomically (temp + fsync + rename), mode 0600; a symlinked config
    is written where the link points, so the link stays."""
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=folder)  # mode 0600
    except OSError as exc:
        raise IsolateOSError(exc.errno or 0, f"cannot write the Docker config {path}",
                             exc.filename, step="write config") from exc
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, real)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise IsolateOSError(exc.errno or 0, f"cannot write the Docker config {path}", real,
                             step="write config") from exc


def _drop_entries(doc: dict[str, Any], key: str) -> bool:
    """Remove every ``auths`` entry naming ``key``'s host (aliases too); True if any."""
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return False
    host = _host_of(key)
    stale = [name for name in auths if _host_of(str(name)) == host]
    for name in stale:
        del auths[name]
    return bool(stale)


def store_credentials(registry: str, creds: Credentials, *, auth_file: str | None = None,
                      timeout: float = HELPER_TIMEOUT) -> str:
    """Store ``creds`` for ``registry`` as ``docker login`` does; return where they went
    (``"docker-credential-NAME"`` or the config file's path).

    Through the helper the config picks for the registry (``credHelpers``, ``credsStore``)
    when there is one; otherwise as a base64 ``auth`` entry in ``config.json`` (an identity
    token as ``identitytoken``), replacing any entry for the same host. The file is rewritten
    atomically with mode 0600, every other key kept.

    Raises:
        ConfigError: bad registry name.
        ImageError: the config file is unreadable or not a JSON object.
        CredentialHelperError: the helper is missing, failed or hung.
        IsolateOSError: the config file cannot be written.
    """
    key = registry_key(registry)
    path = auth_file or docker_config_path()
    doc = _read_config(path)
    helper = _helper_in(doc, key)
    if helper is not None:
        user, secret = ((_TOKEN_USER, creds.identity_token) if creds.identity_token
                        else (creds.username, creds.password))
        payload = json.dumps({"ServerURL": key, "Username": user, "Secret": secret})
        _run_helper(helper, "store", payload.encode(), timeout)
        return f"docker-credential-{helper}"
    if not isinstance(doc.get("auths"), dict):
        doc["auths"] = {}
    _drop_entries(doc, key)
    if creds.identity_token:
        entry = {"identitytoken": creds.identity_token}
    else:
        entry = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()
                                          ).decode()}
    doc["auths"][key] = entry
    _write_config(path, doc)
    return path


def erase_credentials(registry: str, *, auth_file: str | None = None,
                      timeout: float = HELPER_TIMEOUT) -> bool:
    """Forget ``registry``'s credentials as ``docker logout`` does: ask the configured helper
    to erase them, and drop the ``auths`` entries for the host. True if anything was removed.

    Raises:
        ConfigError, ImageError, CredentialHelperError, IsolateOSError: as
            :func:`store_credentials`.
    """
    key = registry_key(registry)
    path = auth_file or docker_config_path()
    doc = _read_config(path)
    helper = _helper_in(doc, key)
    removed = False
    if helper is not None:
        removed = _run_helper(helper, "erase", key.encode(), timeout) is not None
    if _drop_entries(doc, key):
        _write_config(path, doc)
        removed = True
    return removed
