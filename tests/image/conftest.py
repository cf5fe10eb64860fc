"""Fixtures for the image tests: a busybox root filesystem, stores, and real registries.

Registries are Debian's ``docker-registry`` (Distribution 2.8) on 127.0.0.1 with a temporary
storage directory; each is stopped and its files removed when its fixture ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import isolate
from isolate.image import Store

REGISTRY_BIN = "/usr/bin/docker-registry"
# Where the isolate under test was imported from (site-packages when installed, src/ in a
# development checkout): subprocesses must run that same build.
SRC = str(Path(isolate.__file__).resolve().parents[1])


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny root filesystem: static busybox with a few applet links and a marker file."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "true", "echo", "cat", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "marker").write_text("isolate test image\n")
    return root


@pytest.fixture(scope="session")
def rootfs_tar(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rootfs`` as a gzip tarball (what ``import_tarball`` takes)."""
    out = tmp_path_factory.mktemp("tarball") / "rootfs.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for entry in sorted(rootfs.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(rootfs)), recursive=False)
    return out


def unique_tar(tmp_path: Path, size: int = 1 << 20) -> Path:
    """A gzip tarball with ``size`` random bytes: a layer no other test shares (tests that
    corrupt a registry blob must not corrupt one other tests use)."""
    import io

    out = tmp_path / f"unique-{os.urandom(4).hex()}.tar.gz"
    data = os.urandom(size)
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.frozen
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    user: str | None = None
    password: str | None = None

    def blob_data_path(self, digest: str) -> Path:
        hexpart = digest.removeprefix("sha256:")
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")


def _wait_ready(proc: subprocess.Popen[bytes], host: str, log: Path) -> None:
    # Readiness poll, not a timing assertion: the deadline only bounds a broken start.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(host, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            if status in (200, 401):
                return
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not come up: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def run_registry(workdir: Path, auth: str = "") -> Iterator[str]:
    port = free_port()
    host = f"127.0.0.1:{port}"
    config = workdir / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / 'storage'}
  delete:
    enabled: true
http:
  addr: {host}
{auth}""")
    log = workdir / "registry.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=logf,
                                stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, host, log)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry on 127.0.0.1."""
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed")
    work = tmp_path_factory.mktemp("registry")
    with run_registry(work) as host:
        yield Registry(host, work / "storage")


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd (bcrypt) basic auth; user ``tester``, password ``s3cret``."""
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed")
    htpasswd = need("htpasswd")  # apache2-utils
    work = tmp_path_factory.mktemp("authregistry")
    subprocess.run([htpasswd, "-Bbc", str(work / "htpasswd"), "tester", "s3cret"], check=True,
                   capture_output=True)
    auth = f"""auth:
  htpasswd:
    realm: isolate-test
    path: {work / 'htpasswd'}
"""
    with run_registry(work, auth) as host:
        yield Registry(host, work / "storage", "tester", "s3cret")


def docker_config(tmp_path: Path, host: str, user: str, password: str) -> str:
    """Write a Docker config.json with inline credentials for ``host``; return its path."""
    import base64
    import json

    path = tmp_path / "docker-config.json"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return str(path)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    exe = need("skopeo")
    return subprocess.run([exe, "--insecure-policy", *args], check=True, capture_output=True,
                          text=True)


def python_child(code: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a Python child with this source tree importable (for multi-process tests)."""
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def world_readable_copy(tree: Path, work: Path) -> Path:
    """Copy ``tree`` into ``work/tree`` so that an unprivileged uid can read and run all of
    it (``work`` is made world-open too)."""
    os.chmod(work, 0o777)
    copy = work / "tree"
    shutil.copytree(tree, copy, symlinks=True)
    for dirpath, _dirs, files in os.walk(copy):
        os.chmod(dirpath, 0o755)
        for name in files:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o755)
    return copy


# A credential helper speaking Docker's protocol, keeping {server: [user, secret]} in a JSON
# file and logging "action server" lines. -IS: no site, so it starts fast and alone.
_HELPER = '''#!{python} -IS
import json, sys
STORE, LOG = {store!r}, {log!r}
action, data = sys.argv[1], sys.stdin.read()
try:
    with open(STORE) as f:
        creds = json.load(f)
except FileNotFoundError:
    creds = {{}}
server = json.loads(data)["ServerURL"] if action == "store" else data
with open(LOG, "a") as f:
    f.write(action + " " + server + "\\n")
def save():
    with open(STORE, "w") as f:
        json.dump(creds, f)
if action == "get" and server in creds:
    user, secret = creds[server]
    json.dump({{"ServerURL": server, "Username": user, "Secret": secret}}, sys.stdout)
elif action == "store":
    doc = json.loads(data)
    creds[server] = [doc["Username"], doc["Secret"]]
    save()
elif action == "erase" and server in creds:
    del creds[server]
    save()
elif action in ("get", "erase"):
    print("credentials not found in native keychain")
    sys.exit(1)
else:
    print("unknown action " + action, file=sys.stderr)
    sys.exit(2)
'''


@attrs.frozen
class CredHelper:
    """A ``docker-credential-NAME`` program on PATH and the file it keeps credentials in."""

    name: str
    store: Path
    log: Path

    def put(self, server: str, user: str, secret: str) -> None:
        creds = self.entries()
        creds[server] = [user, secret]
        self.store.write_text(json.dumps(creds))

    def entries(self) -> dict[str, list[str]]:
        return json.loads(self.store.read_text()) if self.store.exists() else {}

    def asked(self) -> list[str]:
        """The "action server" lines of every call so far."""
        return self.log.read_text().splitlines() if self.log.exists() else []


@attrs.frozen
class DockerHome:
    """A temporary ``$DOCKER_CONFIG`` and a directory on ``$PATH`` for credential helpers."""

    config_dir: Path
    bin_dir: Path

    @property
    def config(self) -> Path:
        return self.config_dir / "config.json"

    def write_config(self, doc: dict[str, object]) -> None:
        self.config.write_text(json.dumps(doc))

    def helper(self, name: str) -> CredHelper:
        """A working helper ``docker-credential-NAME`` with an empty store."""
        h = CredHelper(name, self.bin_dir / f"{name}.json", self.bin_dir / f"{name}.log")
        self.script(name, _HELPER.format(python=sys.executable, store=str(h.store),
                                         log=str(h.log)))
        return h

    def script(self, name: str, text: str) -> Path:
        """Install ``text`` as the program ``docker-credential-NAME``."""
        path = self.bin_dir / f"docker-credential-{name}"
        path.write_text(text)
        path.chmod(0o755)
        return path


@pytest.fixture
def docker_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DockerHome:
    """Points ``$DOCKER_CONFIG`` at a fresh directory (never the real ~/.docker) and puts a
    fresh helper directory first on ``$PATH``; both are restored after the test."""
    home = DockerHome(tmp_path / "dockercfg", tmp_path / "helpers")
    home.config_dir.mkdir()
    home.bin_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(home.config_dir))
    monkeypatch.setenv("PATH", f"{home.bin_dir}:{os.environ.get('PATH', '')}")
    return home
