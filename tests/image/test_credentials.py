"""Credentials as the Docker CLI finds them: credential helpers (real programs on PATH, speaking
Docker's protocol), their precedence over ``auths``, and ``login``/``logout`` against a real
basic-auth registry. Every test uses a temporary ``$DOCKER_CONFIG`` (the ``docker_home``
fixture), never the real ``~/.docker``."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from isolate.cli import main
from isolate.errors import ConfigError
from isolate.image import (
    CredentialHelperError,
    Credentials,
    ImageConfig,
    Store,
    Unauthorized,
    login,
    logout,
)
from isolate.image.credentials import (
    DOCKER_HUB_KEY,
    credentials_for,
    helper_for,
    registry_key,
    store_credentials,
)

from .conftest import SRC, DockerHome, Registry, need, skopeo, unique_tar

pytestmark = pytest.mark.registry


def _basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def private_image(auth_registry: Registry, tmp_path: Path) -> str:
    """A fresh image in the basic-auth registry (pushed with inline credentials); its ref."""
    assert auth_registry.user is not None and auth_registry.password is not None
    cfg = tmp_path / "push-config.json"
    cfg.write_text(json.dumps({"auths": {auth_registry.host: _basic(auth_registry.user,
                                                                    auth_registry.password)}}))
    src = Store(str(tmp_path / "src"))
    img = src.import_tarball(unique_tar(tmp_path, 4096), "c/c:1", config=ImageConfig(cmd=["c"]))
    ref = f"{auth_registry.host}/creds/{os.urandom(4).hex()}:1"
    src.push(img, ref, auth_file=str(cfg))
    return ref


# -- reading: helpers and precedence -----------------------------------------------------------

def test_pull_with_credentials_only_in_the_credsstore_helper(
        docker_home: DockerHome, auth_registry: Registry, private_image: str,
        tmp_path: Path) -> None:
    helper = docker_home.helper("isotest")
    helper.put(auth_registry.host, "tester", "s3cret")
    docker_home.write_config({"credsStore": "isotest"})
    img = Store(str(tmp_path / "dst")).pull(private_image)
    assert img.config.cmd == ("c",)
    assert f"get {auth_registry.host}" in helper.asked()


def test_cred_helpers_beat_creds_store_beat_auths(docker_home: DockerHome,
                                                  auth_registry: Registry) -> None:
    host = auth_registry.host
    per_registry, default = docker_home.helper("isoa"), docker_home.helper("isob")
    per_registry.put(host, "from-credhelpers", "a")
    default.put(host, "from-credsstore", "b")
    auths = {"auths": {host: _basic("from-auths", "c")}}
    docker_home.write_config({**auths, "credsStore": "isob", "credHelpers": {host: "isoa"}})
    assert credentials_for(host) == Credentials("from-credhelpers", "a")
    assert default.asked() == []
    docker_home.write_config({**auths, "credsStore": "isob",
                              "credHelpers": {"other.example": "isoa"}})
    assert credentials_for(host) == Credentials("from-credsstore", "b")
    docker_home.write_config(auths)
    assert credentials_for(host) == Credentials("from-auths", "c")
    # A credHelpers key written as a URL names the same host.
    docker_home.write_config({"credHelpers": {f"https://{host}": "isoa"}})
    assert helper_for(host) == "isoa"


def test_winning_helper_alone_authenticates_a_real_push(docker_home: DockerHome,
                                                        auth_registry: Registry,
                                                        tmp_path: Path) -> None:
    host = auth_registry.host
    docker_home.helper("isoa").put(host, "tester", "s3cret")
    docker_home.helper("isob").put(host, "tester", "wrong")
    docker_home.write_config({"auths": {host: _basic("tester", "wrong")},
                              "credsStore": "isob", "credHelpers": {host: "isoa"}})
    store = Store(str(tmp_path / "s"))
    img = store.import_tarball(unique_tar(tmp_path, 4096), "w/w:1")
    store.push(img, f"{host}/creds/winner:1")
    docker_home.write_config({"auths": {host: _basic("tester", "s3cret")},
                              "credsStore": "isob"})
    with pytest.raises(Unauthorized, match="refused"):
        store.push(img, f"{host}/creds/loser:1")


def test_helper_not_found_means_anonymous_then_unauthorized(
        docker_home: DockerHome, auth_registry: Registry, private_image: str,
        tmp_path: Path) -> None:
    helper = docker_home.helper("isotest")  # holds nothing
    # As in Docker, a configured helper alone answers: the auths entry is not a fallback.
    docker_home.write_config({"credsStore": "isotest",
                              "auths": {auth_registry.host: _basic("tester", "s3cret")}})
    assert credentials_for(auth_registry.host) is None
    with pytest.raises(Unauthorized, match="needs a user name"):
        Store(str(tmp_path / "dst")).pull(private_image)
    assert f"get {auth_registry.host}" in helper.asked()


def test_anonymous_registry_never_runs_the_helper(docker_home: DockerHome, registry: Registry,
                                                  tmp_path: Path) -> None:
    docker_home.script("isobroken", "#!/bin/sh\necho 'should not run' >&2\nexit 1\n")
    docker_home.write_config({"credsStore": "isobroken"})
    store = Store(str(tmp_path / "s"))
    img = store.import_tarball(unique_tar(tmp_path, 4096), "a/a:1")
    store.push(img, f"{registry.host}/creds/anon:1")
    assert Store(str(tmp_path / "d")).pull(f"{registry.host}/creds/anon:1").id == img.id


def test_failing_helper_is_a_typed_error_with_its_message(
        docker_home: DockerHome, auth_registry: Registry, private_image: str,
        tmp_path: Path) -> None:
    docker_home.script("isofail", "#!/bin/sh\necho 'some progress'\n"
                       "echo 'isofail: the keyring is locked' >&2\nexit 3\n")
    docker_home.write_config({"credHelpers": {auth_registry.host: "isofail"}})
    with pytest.raises(CredentialHelperError) as info:
        Store(str(tmp_path / "dst")).pull(private_image)
    assert info.value.helper == "docker-credential-isofail"
    assert info.value.action == "get"
    assert "the keyring is locked" in str(info.value) and "exit status 3" in str(info.value)


def test_helper_answering_garbage_is_a_typed_error(docker_home: DockerHome) -> None:
    docker_home.script("isogarbage", "#!/bin/sh\necho 'not json'\n")
    docker_home.write_config({"credsStore": "isogarbage"})
    with pytest.raises(CredentialHelperError, match=r"docker-credential-isogarbage get: .*JSON"):
        credentials_for("reg.example")


def test_missing_helper_binary_is_named(docker_home: DockerHome) -> None:
    docker_home.write_config({"credsStore": "isolate-no-such-helper"})
    with pytest.raises(CredentialHelperError,
                       match="docker-credential-isolate-no-such-helper is not on PATH"):
        credentials_for("reg.example")


def test_hung_helper_and_its_children_are_killed_after_the_timeout(
        docker_home: DockerHome, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    docker_home.script("isohang", f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nwait\n")
    docker_home.write_config({"credsStore": "isohang"})
    with pytest.raises(CredentialHelperError, match=r"isohang get: no answer within 0\.5 s"):
        credentials_for("reg.example", timeout=0.5)
    child = int(pidfile.read_text())
    try:
        pidfd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # already gone (and reaped)
    try:
        # Readable once the process has exited; the bound only keeps a broken kill from
        # hanging the run.
        ready, _, _ = select.select([pidfd], [], [], 30)
        if not ready:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert ready, "the helper's child outlived the helper"
    finally:
        os.close(pidfd)


def test_helper_identity_token_is_not_a_password(docker_home: DockerHome,
                                                 auth_registry: Registry,
                                                 private_image: str, tmp_path: Path) -> None:
    helper = docker_home.helper("isotest")
    helper.put(auth_registry.host, "<token>", "refresh-me")
    docker_home.write_config({"credsStore": "isotest"})
    assert credentials_for(auth_registry.host) == Credentials(identity_token="refresh-me")
    # A basic-auth registry cannot take an identity token; never sent as a password.
    with pytest.raises(Unauthorized, match="only an identity token"):
        Store(str(tmp_path / "dst")).pull(private_image)


def test_docker_hub_is_keyed_as_docker_does(docker_home: DockerHome) -> None:
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY):
        assert registry_key(name) == DOCKER_HUB_KEY
    assert registry_key("https://Reg.Example:5000/v2/") == "reg.example:5000"
    with pytest.raises(ConfigError, match="not a registry host"):
        registry_key("no such host!")
    helper = docker_home.helper("isohub")
    helper.put(DOCKER_HUB_KEY, "hubuser", "hubpw")
    docker_home.write_config({"credHelpers": {DOCKER_HUB_KEY: "isohub"}})
    # The client talks to registry-1.docker.io; the helper is asked for Docker's key.
    assert credentials_for("registry-1.docker.io") == Credentials("hubuser", "hubpw")
    assert helper.asked() == [f"get {DOCKER_HUB_KEY}"]
    docker_home.write_config({})
    store_credentials("docker.io", Credentials("u", "p"))
    assert list(json.loads(docker_home.config.read_text())["auths"]) == [DOCKER_HUB_KEY]


# -- login / logout ----------------------------------------------------------------------------

def test_login_writes_config_json_atomically_keeping_other_keys(
        docker_home: DockerHome, auth_registry: Registry, private_image: str,
        tmp_path: Path) -> None:
    host = auth_registry.host
    other = {"auths": {"other.example:5000": _basic("x", "y"),
                       f"http://{host}": _basic("stale", "entry")},
             "psFormat": "table {{.ID}}", "HttpHeaders": {"X-Test": "1"}}
    docker_home.write_config(other)
    docker_home.config.chmod(0o644)
    assert login(host, "tester", "s3cret") == str(docker_home.config)
    doc = json.loads(docker_home.config.read_text())
    assert stat.S_IMODE(docker_home.config.stat().st_mode) == 0o600
    assert doc["psFormat"] == other["psFormat"] and doc["HttpHeaders"] == other["HttpHeaders"]
    assert doc["auths"] == {"other.example:5000": _basic("x", "y"),
                            host: _basic("tester", "s3cret")}  # the stale alias is gone
    assert [p.name for p in docker_home.config_dir.iterdir()] == ["config.json"]
    assert Store(str(tmp_path / "d1")).pull(private_image).config.cmd == ("c",)
    # skopeo (containers/image) reads the same file format.
    skopeo("inspect", "--tls-verify=false", "--authfile", str(docker_home.config),
           f"docker://{private_image}")

    assert logout(host) is True
    doc = json.loads(docker_home.config.read_text())
    assert doc["auths"] == {"other.example:5000": _basic("x", "y")}
    assert doc["psFormat"] == other["psFormat"]
    assert logout(host) is False
    with pytest.raises(Unauthorized):
        Store(str(tmp_path / "d2")).pull(private_image)


def test_login_creates_the_config_when_there_is_none(docker_home: DockerHome,
                                                     auth_registry: Registry) -> None:
    target = docker_home.config_dir / "new" / "config.json"
    login(auth_registry.host, "tester", "s3cret", auth_file=str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {
        "auths": {auth_registry.host: _basic("tester", "s3cret")}}
    assert not docker_home.config.exists()


def test_login_and_logout_go_through_the_configured_helper(
        docker_home: DockerHome, auth_registry: Registry, private_image: str,
        tmp_path: Path) -> None:
    host = auth_registry.host
    helper = docker_home.helper("isotest")
    docker_home.write_config({"credHelpers": {host: "isotest"}, "psFormat": "x"})
    before = docker_home.config.read_bytes()
    assert login(host, "tester", "s3cret") == "docker-credential-isotest"
    assert helper.entries() == {host: ["tester", "s3cret"]}
    assert docker_home.config.read_bytes() == before  # no password in the file
    assert Store(str(tmp_path / "d1")).pull(private_image).config.cmd == ("c",)
    assert logout(host) is True
    assert helper.entries() == {}
    assert f"erase {host}" in helper.asked()
    assert logout(host) is False  # the helper's "not found" is no error


def test_login_with_a_wrong_password_fails_and_stores_nothing(
        docker_home: DockerHome, auth_registry: Registry) -> None:
    host = auth_registry.host
    refused = rf"^login to {re.escape(host)} failed: unauthorized$"
    with pytest.raises(Unauthorized, match=refused) as info:
        login(host, "tester", "wrong")
    assert isinstance(info.value.__cause__, Unauthorized)  # the registry's own answer
    assert not docker_home.config.exists()
    helper = docker_home.helper("isotest")
    docker_home.write_config({"credsStore": "isotest"})
    with pytest.raises(Unauthorized):
        login(host, "tester", "wrong")
    assert helper.entries() == {} and helper.asked() == []
    with pytest.raises(ConfigError, match="password is empty"):
        login(host, "tester", "")


# -- the CLI -----------------------------------------------------------------------------------

def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str,
         *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_login_logout(docker_home: DockerHome, auth_registry: Registry,
                          capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    host = auth_registry.host
    code, out, err = _cli(capsys, monkeypatch, "wrong\n", "login", "-u", "tester",
                          "--password-stdin", host)
    assert (code, out, err) == (1, "", f"isolate: login to {host} failed: unauthorized\n")
    assert not docker_home.config.exists()

    code, out, err = _cli(capsys, monkeypatch, "s3cret\n", "login", "-u", "tester",
                          "--password-stdin", host)
    assert (code, out) == (0, "Login Succeeded\n"), err
    assert json.loads(docker_home.config.read_text())["auths"] == {
        host: _basic("tester", "s3cret")}

    code, out, err = _cli(capsys, monkeypatch, "", "logout", host)
    assert (code, out) == (0, f"Removing login credentials for {host}\n"), err
    assert json.loads(docker_home.config.read_text())["auths"] == {}
    code, out, err = _cli(capsys, monkeypatch, "", "logout", host)
    assert (code, out) == (0, f"Not logged in to {host}\n"), err


def test_cli_login_without_a_terminal_needs_password_stdin(
        docker_home: DockerHome, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _cli(capsys, monkeypatch, "s3cret\n", "login", "--password-stdin",
                        "reg.example")
    assert code == 125 and err == "isolate login: --password-stdin needs --username\n"
    code, _, err = _cli(capsys, monkeypatch, "", "login", "-u", "tester", "reg.example")
    assert code == 125 and "use --password-stdin" in err and len(err.splitlines()) == 1
    assert not docker_home.config.exists()


def test_cli_login_prompts_on_the_terminal_without_echo(docker_home: DockerHome,
                                                        auth_registry: Registry) -> None:
    setsid = need("setsid")
    primary, secondary = pty.openpty()
    env = dict(os.environ, PYTHONPATH=SRC)
    try:
        # setsid --ctty: the pty becomes the login's controlling terminal, where getpass asks.
        proc = subprocess.Popen([setsid, "--ctty", sys.executable, "-m", "isolate.cli", "login",
                                 "-u", "tester", auth_registry.host], env=env,
                                stdin=secondary, stdout=secondary, stderr=secondary)
    finally:
        os.close(secondary)
    seen = b""
    try:
        while b"Password:" not in seen:  # getpass flushes earlier input: answer after asking
            chunk = os.read(primary, 4096)
            assert chunk, seen
            seen += chunk
        os.write(primary, b"s3cret\n")
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        assert proc.wait(timeout=120) == 0, seen
    assert b"Login Succeeded" in seen and b"s3cret" not in seen
    assert json.loads(docker_home.config.read_text())["auths"] == {
        auth_registry.host: _basic("tester", "s3cret")}
