"""A rootless container publishes a port through pasta (slirp4netns as the fallback): as an
ordinary user, entirely inside namespaces that user owns -- a user namespace with a network
namespace playing the host (the store's ``network_host``), and the container's user and network
namespaces made inside it by the network driver."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import rootless

sys.path.insert(0, str(Path(__file__).parent.parent / "net"))
from net_helpers import staged_extras

pytestmark = [pytest.mark.root, pytest.mark.userns, pytest.mark.network]


@pytest.fixture
def rootless_env() -> Iterator[dict[str, str]]:
    """What the unprivileged code needs (see :func:`net_helpers.staged_extras`)."""
    with staged_extras() as paths:
        yield paths

CODE = """
import json, os, shutil, subprocess, sys, time
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate.container import ContainerConfig, ContainerStore, netdriver
from isolate.image import ImageConfig, Store
from isolate.namespaces import Namespace
from net_helpers import OTHER, fetch, make_host

base = os.environ["XDG_DATA_HOME"]
tree = os.path.join(base, "tree")
for d in ("bin", "etc", "tmp"):
    os.makedirs(os.path.join(tree, d))
shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
for a in ("sh", "httpd", "cat", "ip"):
    os.symlink("busybox", os.path.join(tree, "bin", a))
with open(os.path.join(tree, "etc", "passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/sh\\n")
store = Store()
store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))

# The host: a user and network namespace of ours, with an uplink and a default route.
nss = Namespace.create("user")
host = make_host(nss, default_route=True)

cs = ContainerStore(network_host=host)
out = {{}}
c = cs.create(ContainerConfig("busybox", ["sh", "-c",
    "echo rootless $(id -u) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
    network={program!r}, ports=["9090:80", "127.0.0.1::80"]))
try:
    c.start()
    ports = netdriver.published_ports(c.dir)
    out["ports"] = [[p["host_ip"], p["container_port"]] for p in ports]
    out["loopback"] = fetch(host, "127.0.0.1", 9090)
    out["other"] = fetch(host, OTHER, 9090)
    out["ephemeral"] = fetch(host, "127.0.0.1", int(ports[1]["host_port"]))
    out["ps"] = netdriver.format_ports(ports).startswith("0.0.0.0:9090->80/tcp")
    code, text, _ = c.exec_run(["cat", "/etc/resolv.conf"])
    out["resolv"] = text.decode()
    helper = json.load(open(os.path.join(c.dir, "network.json")))["user_mode"]["process"]
    pid = int(helper["pid"])
    c.stop(timeout=1)
    out["helper_gone"] = not os.path.exists(f"/proc/{{pid}}") or \\
        open(f"/proc/{{pid}}/stat").read().split()[2] == "Z"
    out["facts_gone"] = not os.path.exists(os.path.join(c.dir, "network.json"))
finally:
    c.remove(force=True)
    host.close()
    nss.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("program", ["pasta", "slirp4netns"])
def test_a_rootless_container_publishes_a_port(tmp_path: Path,
                                               rootless_env: dict[str, str],
                                               program: str) -> None:
    if shutil.which(program, path="/usr/bin:/usr/sbin:/bin:/sbin") is None:
        pytest.skip(f"{program} is not installed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    home = rootless.xdg_home(tmp_path)
    code = textwrap.dedent(CODE).format(extra=rootless_env["extra"],
                                        tests=rootless_env["tests"], program=program)
    # An ordinary user's capability bounding set is full (the container's root binds port 80
    # with Docker's capabilities, which its exec keeps only within that set).
    proc = rootless.run_unprivileged(code, binds={rootless_env["tun"]: "/dev/net/tun"},
                                     extra_env={"XDG_DATA_HOME": str(home)},
                                     keep_bounding_set=True)
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["ports"] == [["", 80], ["127.0.0.1", 80]]
    assert r["loopback"] == r["other"] == r["ephemeral"] == "rootless 0\n"
    assert r["ps"] and r["helper_gone"] and r["facts_gone"]
    assert r["resolv"].startswith("nameserver ")
