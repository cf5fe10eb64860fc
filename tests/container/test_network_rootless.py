"""A rootless container publishes a port through pasta (slirp4netns as the fallback): as an
ordinary user, entirely inside namespaces that user owns -- a user namespace with a network
namespace playing the host (the store's ``network_host``), and the container's user and network
namespaces made inside it by the network driver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

# As the user: a busybox image in the user's own store (XDG_DATA_HOME).
IMAGE = """
base = os.environ["XDG_DATA_HOME"]
tree = os.path.join(base, "tree")
for d in ("bin", "etc", "tmp"):
    os.makedirs(os.path.join(tree, d))
shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
for a in ("sh", "httpd", "cat", "wget", "ip", "sleep"):
    os.symlink("busybox", os.path.join(tree, "bin", a))
with open(os.path.join(tree, "etc", "passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/sh\\n")
store = Store()
store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
"""

# The imports, the image, and the host: a user and network namespace of ours, with an uplink
# and a default route.
PRELUDE = """
from isolate.container import ContainerConfig, ContainerStore, netdriver
from isolate.image import ImageConfig, Store
from isolate.namespaces import Namespace
from net_helpers import OTHER, fetch, make_host
""" + IMAGE + """
nss = Namespace.create("user")
host = make_host(nss, default_route=True)
"""

CODE = """
import json, os, shutil, subprocess, sys, time
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
{prelude}

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


def _needs(*programs: str) -> None:
    """Skip unless ``programs``, /dev/net/tun and busybox-static are there."""
    for program in programs:
        if shutil.which(program, path="/usr/bin:/usr/sbin:/bin:/sbin") is None:
            pytest.skip(f"{program} is not installed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")


@pytest.mark.parametrize("program", ["pasta", "slirp4netns"])
def test_a_rootless_container_publishes_a_port(tmp_path: Path,
                                               rootless_env: dict[str, str],
                                               program: str) -> None:
    _needs(program)
    home = rootless.xdg_home(tmp_path)
    code = textwrap.dedent(CODE).format(extra=rootless_env["extra"],
                                        tests=rootless_env["tests"], program=program,
                                        prelude=PRELUDE)
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


# As uid 65534: bridge networks of an ordinary user, in its rootless netns (made by the first
# network operation under the store's network_host -- here a user and network namespace of ours
# playing the machine -- and gone with the last container).
BRIDGE_CODE = """
import json, os, shutil, subprocess, sys, time
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate.net._helpers import HelperProcess
from isolate.net.rootless_netns import RECORD
{prelude}
null = os.open(os.devnull, os.O_RDWR)
world = os.path.join(base, "world")
os.makedirs(world)
with open(os.path.join(world, "index.html"), "w") as f:
    f.write("the host")
# A server on the machine's loopback: pasta maps the rootless netns's gateway to it.
outside = host.spawn(["busybox", "httpd", "-f", "-p", "127.0.0.1:8000", "-h", world],
                     fds=(null, null, null))
netdir = os.path.join(store.root, "networks")
out = {{}}
cs = ContainerStore(network_host=host)
with netdriver.open_networks(store.root, host) as nets:
    net = nets.create("app")
out["idle_after_create"] = not os.path.exists(os.path.join(netdir, RECORD))
web = cs.create(ContainerConfig("busybox", ["sh", "-c",
    "echo web $(id -u) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
    network="app", ports=["9090:80"], name="web"))
client = cs.create(ContainerConfig("busybox", ["sleep", "1000"], network="app",
                                   name="client"))
try:
    web.start()
    client.start()
    record = json.load(open(os.path.join(netdir, RECORD)))
    holder = HelperProcess.from_json(record["holder"])
    out["holder"] = holder.alive()
    out["published"] = fetch(host, "127.0.0.1", 9090)
    out["other"] = fetch(host, OTHER, 9090)
    out["ps"] = netdriver.format_ports(netdriver.published_ports(web.dir))
    # The host port is taken (by web): a clear error before anything is made.
    busy = cs.create(ContainerConfig("busybox", ["true"], network="app", ports=["9090:80"],
                                     name="busy"))
    try:
        busy.start()
        out["busy"] = "started"
    except Exception as exc:
        out["busy"] = [type(exc).__name__, "in use" in str(exc)]
    busy.remove(force=True)
    def run(cmd):
        for _ in range(100):
            code, text, _ = client.exec_run(["sh", "-c", cmd])
            if code == 0:
                return text.decode()
            time.sleep(0.1)
        return f"failed {{code}}: {{text!r}}"
    out["by_name"] = run("wget -q -O - http://web/")
    out["resolv"] = run("cat /etc/resolv.conf").split()[:2]
    gateway = run("ip route | grep default").split()[2]
    # pasta's host-loopback mapping: the rootless netns's default gateway is the host's lo.
    out["outbound"] = run("wget -q -O - http://10.99.0.254:8000/")
    out["gateway_is_network"] = gateway == net.gateway
    web.stop(timeout=1)
    client.stop(timeout=1)
    out["holder_gone"] = not holder.alive()
    out["record_gone"] = not os.path.exists(os.path.join(netdir, RECORD))
    out["facts_gone"] = not os.path.exists(os.path.join(web.dir, "network.json"))
    try:
        fetch(host, "127.0.0.1", 9090, timeout=1)
        out["port_closed"] = False
    except OSError:
        out["port_closed"] = True
    # A second start makes the namespace (and the network's bridge in it) again.
    web.start()
    out["again"] = fetch(host, "127.0.0.1", 9090)
finally:
    for c in (web, client):
        c.remove(force=True)
    with netdriver.open_networks(store.root, host) as nets:
        out["left"] = [e.owner for e in nets.endpoints()]
        nets.remove("app")
    out["record_gone_at_end"] = not os.path.exists(os.path.join(netdir, RECORD))
    outside.kill(); outside.wait(); outside.close()
    host.close()
    nss.close()
print(json.dumps(out))
"""


def _run_as_user(template: str, tmp_path: Path, rootless_env: dict[str, str]
                 ) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``template`` (with the prelude and paths filled in) as uid 65534 with the tun
    device, in the user's own store under ``tmp_path``; its last line's JSON and the run."""
    _needs("pasta", "nft")
    home = rootless.xdg_home(tmp_path)
    code = textwrap.dedent(template).format(extra=rootless_env["extra"],
                                            tests=rootless_env["tests"], prelude=PRELUDE,
                                            www=rootless_env["www"])
    proc = rootless.run_unprivileged(code, binds={rootless_env["tun"]: "/dev/net/tun"},
                                     extra_env={"XDG_DATA_HOME": str(home)},
                                     keep_bounding_set=True, timeout=300)
    return json.loads(proc.stdout.splitlines()[-1]), proc


def test_rootless_containers_on_a_bridge_network_in_the_users_rootless_netns(
        tmp_path: Path, rootless_env: dict[str, str]) -> None:
    r, proc = _run_as_user(BRIDGE_CODE, tmp_path, rootless_env)
    assert r == {
        "idle_after_create": True, "holder": True, "published": "web 0\n",
        "other": "web 0\n", "ps": "0.0.0.0:9090->80/tcp", "busy": ["ConfigError", True],
        "by_name": "web 0\n",
        "resolv": ["nameserver", r["resolv"][1]], "outbound": "the host",
        "gateway_is_network": True, "holder_gone": True, "record_gone": True,
        "facts_gone": True, "port_closed": True, "again": "web 0\n", "left": [],
        "record_gone_at_end": True}, proc.stderr


# As uid 65534 with a subordinate range, in the machine's own namespace as the host (pasta
# opens sockets there as the user, the port is published on 127.0.0.1 only, and the only
# traffic is on its loopback): the rootless netns is made with newuidmap (the user's id and its
# range), and a container in it maps both.
MACHINE_CODE = """
import json, os, shutil, socket, sys, threading, time
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate.container import ContainerConfig, ContainerStore, netdriver
from isolate.image import ImageConfig, Store
from isolate.net import NetNamespace
from isolate.net._helpers import HelperProcess
from isolate.net.rootless_netns import RECORD
from net_helpers import fetch, loopback_server
{image}
srv = loopback_server(b"the machine")
netdir = os.path.join(store.root, "networks")
out = {{}}
cs = ContainerStore()
with netdriver.open_networks(store.root) as nets:
    nets.create("lab")
web = cs.create(ContainerConfig("busybox", ["sh", "-c",
    "echo web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
    network="lab", ports=["127.0.0.1::80"], name="web"))
try:
    web.start()
    record = json.load(open(os.path.join(netdir, RECORD)))
    holder = HelperProcess.from_json(record["holder"])
    out["holder_map"] = open(f"/proc/{{holder.pid}}/uid_map").read().split()
    port = int(netdriver.published_ports(web.dir)[0]["host_port"])
    with NetNamespace.of() as here:
        out["published"] = fetch(here, "127.0.0.1", port)
    code, text, _ = web.exec_run(["cat", "/proc/self/uid_map"])
    out["container_map"] = text.decode().split()
    # pasta maps the machine's default gateway (copied into the rootless netns) to the
    # machine's loopback: the container gets there through its bridge and masquerade.
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            gateway = socket.inet_ntoa(int(f[2], 16).to_bytes(4, "little"))
            break
    code, text, err = web.exec_run(["sh", "-c",
        "for i in $(seq 50); do wget -q -O - "
        f"http://{{gateway}}:{{srv.getsockname()[1]}}/ && exit 0; sleep 0.2; done; exit 1"])
    out["outbound"] = text.decode() or f"{{code}} {{err!r}} {{gateway}}"
    # A sandbox of the user's (its maps with the range too) on the network, by name.
    from isolate import Sandbox
    with Sandbox(network="lab", store=store) as sb:
        got = sb.run(["sh", "-c", "for i in $(seq 100); do busybox wget -q -O - http://web/ "
                      "&& exit 0; sleep 0.1; done; exit 1"], capture_output=True, text=True)
        out["sandbox"] = got.stdout or got.stderr
        out["sandbox_map"] = sb.run(["cat", "/proc/self/uid_map"], capture_output=True,
                                    text=True).stdout.split()
    # And the CLI's: isolate run --network NAME -- CMD.
    import subprocess
    got = subprocess.run([sys.executable, "-m", "isolate", "run", "--network", "lab", "--",
                          "sh", "-c", "for i in $(seq 100); do busybox wget -q -O - "
                          "http://web/ && exit 0; sleep 0.1; done; exit 1"],
                         capture_output=True, text=True, timeout=120,
                         env={{**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}})
    out["cli"] = [got.returncode, got.stdout or got.stderr]
    web.stop(timeout=1)
    out["holder_gone"] = not holder.alive()
    out["record_gone"] = not os.path.exists(os.path.join(netdir, RECORD))
finally:
    web.remove(force=True)
    with netdriver.open_networks(store.root) as nets:
        nets.remove("lab")
    out["record_gone_at_end"] = not os.path.exists(os.path.join(netdir, RECORD))
print(json.dumps(out))
"""


def test_a_rootless_netns_with_a_subordinate_range_in_the_machines_namespace(
        tmp_path: Path, rootless_env: dict[str, str]) -> None:
    _needs("pasta", "nft")
    home = rootless.xdg_home(tmp_path)
    code = textwrap.dedent(MACHINE_CODE).format(
        extra=rootless_env["extra"], tests=rootless_env["tests"],
        image=IMAGE)
    proc = rootless.run_unprivileged(code, binds={rootless_env["tun"]: "/dev/net/tun"},
                                     extra_env={"XDG_DATA_HOME": str(home)}, subids=True,
                                     timeout=300)
    r = json.loads(proc.stdout.splitlines()[-1])
    start, count = rootless.SUBID_START, rootless.SUBID_COUNT
    assert r["holder_map"] == ["0", "65534", "1", "1", str(start), str(count)], proc.stderr
    # The container's map, as it sees it: its ids are the holder's, one to one.
    assert r["container_map"] == ["0", "0", "1", "1", "1", str(count)], proc.stderr
    # The sandbox's too: its user namespace is nested in the holder's, as a container's.
    assert r["sandbox_map"] == r["container_map"], proc.stderr
    assert r == {**r, "published": "web\n", "outbound": "the machine", "holder_gone": True,
                 "sandbox": "web\n", "cli": [0, "web\n"],
                 "record_gone": True,
                 "record_gone_at_end": True}, proc.stderr


# The start of the scripts below: as the user, a store with the image, the host, a container
# store on it and a user-defined network "app" (``net``); ``out`` collects the results.
APP_NETWORK = """
import contextlib, io, json, os, shutil, signal, subprocess, sys, time
sys.path.insert(0, {extra!r})
sys.path.insert(0, {tests!r})
from isolate import Sandbox
from isolate.cli import main
from isolate.net._helpers import HelperProcess
from isolate.net.rootless_netns import RECORD
{prelude}
netdir = os.path.join(store.root, "networks")
out = {{}}
cs = ContainerStore(network_host=host)
with netdriver.open_networks(store.root, host) as nets:
    net = nets.create("app")
"""


# As uid 65534: a sandbox of the user's on a user-defined network (its user and network
# namespaces made inside the rootless netns's user namespace, as the containers' are) reaches
# a rootless container on it by name; after both are gone, nothing is left (holder, pasta,
# endpoints, the record).
SANDBOX_CODE = APP_NETWORK + """
web = cs.create(ContainerConfig("busybox", ["sh", "-c",
    "echo web $(id -u) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
    network="app", name="web"))
try:
    web.start()
    record = json.load(open(os.path.join(netdir, RECORD)))
    holder = HelperProcess.from_json(record["holder"])
    pasta = int(record["link"]["process"]["pid"])
    with Sandbox(network="app", network_host=host, store=store, hostname="box") as sb:
        got = sb.run(["sh", "-c", "for i in $(seq 100); do busybox wget -q -O - http://web/ "
                      "&& exit 0; sleep 0.1; done; exit 1"], capture_output=True, text=True)
        out["by_name"] = got.stdout or got.stderr
        out["eth0"] = "eth0" in sb.run(["busybox", "ip", "-o", "link"], capture_output=True,
                                       text=True).stdout
        out["hostname"] = sb.run(["hostname"], capture_output=True, text=True).stdout
        with netdriver.open_networks(store.root, host) as nets:
            out["endpoints"] = len(nets.endpoints())
    with netdriver.open_networks(store.root, host) as nets:
        out["after_sandbox"] = len(nets.endpoints())
    # One of the image's (its root an overlay mounted in the nested user namespace).
    with Sandbox(image="busybox:latest", network="app", network_host=host,
                 store=store) as sb:
        got = sb.run(["sh", "-c", "for i in $(seq 100); do wget -q -O - http://web/ "
                      "&& exit 0; sleep 0.1; done; exit 1"], capture_output=True, text=True)
        out["image"] = got.stdout or got.stderr
    out["holder_while_web"] = holder.alive()
    web.stop(timeout=1)
    out["holder_gone"] = not holder.alive()
    out["pasta_gone"] = not os.path.exists(f"/proc/{{pasta}}") or \\
        open(f"/proc/{{pasta}}/stat").read().split()[2] == "Z"
    out["record_gone"] = not os.path.exists(os.path.join(netdir, RECORD))
    # A sandbox alone on the network makes the rootless netns, publishes a port on the host
    # (a proxy in the rootless netns), and takes it all down on exit.
    with Sandbox(network="app", network_host=host, store=store, ports=["127.0.0.1::8080"],
                 binds=[{www!r} + ":/www:ro"]) as sb:
        sb.popen(["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
        port = int(sb.ports[0]["host_port"])
        out["alone_ports"] = [[p["host_ip"], p["container_port"]] for p in sb.ports]
        out["alone_published"] = fetch(host, "127.0.0.1", port)
    out["record_gone_alone"] = not os.path.exists(os.path.join(netdir, RECORD))
    try:
        fetch(host, "127.0.0.1", port, timeout=1)
        out["alone_closed"] = False
    except OSError:
        out["alone_closed"] = True
    # An unknown network: a clear error, and the rootless netns made for it is gone again.
    try:
        with Sandbox(network="nosuch", network_host=host, store=store):
            out["unknown"] = "entered"
    except Exception as exc:
        out["unknown"] = [type(exc).__name__, "nosuch" in str(exc)]
    out["record_gone_unknown"] = not os.path.exists(os.path.join(netdir, RECORD))
finally:
    web.remove(force=True)
    with netdriver.open_networks(store.root, host) as nets:
        out["left"] = [e.owner for e in nets.endpoints()]
        nets.remove("app")
    out["record_gone_at_end"] = not os.path.exists(os.path.join(netdir, RECORD))
    host.close()
    nss.close()
print(json.dumps(out))
"""


def test_a_rootless_sandbox_reaches_a_rootless_container_by_name_on_a_network(
        tmp_path: Path, rootless_env: dict[str, str]) -> None:
    r, proc = _run_as_user(SANDBOX_CODE, tmp_path, rootless_env)
    assert r == {"by_name": "web 0\n", "eth0": True, "hostname": "box\n", "endpoints": 2,
                 "after_sandbox": 1, "image": "web 0\n", "holder_while_web": True,
                 "holder_gone": True, "pasta_gone": True, "record_gone": True,
                 "alone_ports": [["127.0.0.1", 8080]], "alone_published": "rootless",
                 "record_gone_alone": True, "alone_closed": True,
                 "unknown": ["ConfigError", True], "record_gone_unknown": True, "left": [],
                 "record_gone_at_end": True}, proc.stderr


# As uid 65534: ``network ls``/``inspect`` read the records only (no rootless netns made for
# them), and a published port's proxy on the host, left running by a supervisor SIGKILLed, is
# stopped by the networks' prune although nothing released the container.
RECORDS_CODE = APP_NETWORK + """
# pasta and slirp4netns replaced by programs that only say that they ran: making the rootless
# netns would run one of them (and fail).
spy = os.path.join(base, "spy")
os.makedirs(spy)
ran = os.path.join(base, "ran")
for program in ("pasta", "slirp4netns"):
    with open(os.path.join(spy, program), "w") as f:
        f.write(f"#!/bin/sh\\necho $0 >> {{ran}}\\nexit 1\\n")
    os.chmod(os.path.join(spy, program), 0o755)
before = os.stat(os.path.join(netdir, "namespace.json")).st_ino
path = os.environ["PATH"]
os.environ["PATH"] = spy + ":" + path
def cli(*argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()
out["ls"] = cli("network", "ls", "--format", "{{{{.Name}}}} {{{{.Driver}}}}")
code, text = cli("network", "inspect", "app")
out["inspect"] = [code, json.loads(text)[0]["Id"] == net.id if code == 0 else text]
os.environ["PATH"] = path
out["nothing_ran"] = not os.path.exists(ran)
out["no_netns"] = not os.path.exists(os.path.join(netdir, RECORD)) and \\
    os.stat(os.path.join(netdir, "namespace.json")).st_ino == before
web = cs.create(ContainerConfig("busybox", ["sh", "-c",
    "echo web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"],
    network="app", ports=["9090:80"], name="web"))
def gone(helper):
    try:
        with open(f"/proc/{{helper.pid}}/stat") as f:
            return not helper.alive() or f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True
try:
    web.start()
    out["published"] = fetch(host, "127.0.0.1", 9090)
    facts = json.load(open(os.path.join(web.dir, "network.json")))
    proxy = HelperProcess.from_json(facts["rootless_proxy"])
    out["proxy"] = proxy.alive()
    os.kill(web.state.supervisor_pid, signal.SIGKILL)
    # The container dies with its supervisor (the lock the supervisor's processes hold goes
    # with the last of them).
    alive = netdriver.container_alive(cs.root)
    deadline = time.monotonic() + 60
    while alive(netdriver.owner_of(web.id)) and time.monotonic() < deadline:
        time.sleep(0.02)
    # No one settles the container (no ps, no inspect): the networks' prune finds its
    # endpoint's owner gone, and with it the proxy.
    with netdriver.open_networks(store.root, host) as nets:
        pruned = nets.prune()
    out["pruned"] = [any("endpoint" in d for d in pruned),
                     any("port proxy" in d for d in pruned)]
    out["proxy_gone"] = gone(proxy)
    try:
        fetch(host, "127.0.0.1", 9090, timeout=1)
        out["port_closed"] = False
    except OSError:
        out["port_closed"] = True
finally:
    web.remove(force=True)
    with netdriver.open_networks(store.root, host) as nets:
        out["left"] = [e.owner for e in nets.endpoints()]
        out["helpers_left"] = os.listdir(os.path.join(netdir, "helpers")) \\
            if os.path.isdir(os.path.join(netdir, "helpers")) else []
        nets.remove("app")
    out["record_gone_at_end"] = not os.path.exists(os.path.join(netdir, RECORD))
    host.close()
    nss.close()
print(json.dumps(out))
"""


def test_rootless_ls_inspect_read_records_and_prune_stops_an_orphaned_port_proxy(
        tmp_path: Path, rootless_env: dict[str, str]) -> None:
    r, proc = _run_as_user(RECORDS_CODE, tmp_path, rootless_env)
    assert r == {
        "ls": [0, "app bridge\n"], "inspect": [0, True], "nothing_ran": True,
        "no_netns": True, "published": "web\n", "proxy": True, "pruned": [True, True],
        "proxy_gone": True, "port_closed": True, "left": [], "helpers_left": [],
        "record_gone_at_end": True}, proc.stderr
