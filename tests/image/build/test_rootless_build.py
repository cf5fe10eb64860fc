"""Builds as an ordinary user: the store under $XDG_DATA_HOME, each RUN in a container with a
user namespace of the rootless maps (our own id as root, or the subordinate ranges through
newuidmap), and a step whose user those maps lack refused with the reason."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

import rootless

pytestmark = [pytest.mark.root, pytest.mark.userns]

_SETUP = """
import json, os, shutil, subprocess
base = os.environ["XDG_DATA_HOME"]
tree = os.path.join(base, "tree")
for d in ("bin", "etc", "tmp", "root", "home/app", "proc", "sys", "dev"):
    os.makedirs(os.path.join(tree, d))
os.chmod(os.path.join(tree, "tmp"), 0o1777)
shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True,
                        text=True).stdout.split():
    if not os.path.lexists(os.path.join(tree, "bin", a)):
        os.symlink("busybox", os.path.join(tree, "bin", a))
with open(os.path.join(tree, "etc", "passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/home/app:/bin/sh\\n")
with open(os.path.join(tree, "etc", "group"), "w") as f:
    f.write("root:x:0:\\napp:x:1000:\\n")
ctx = os.path.join(base, "ctx")
os.makedirs(ctx)
with open(os.path.join(ctx, "hello.txt"), "w") as f:
    f.write("hello\\n")
from isolate.image import ImageConfig, Store
from isolate.image.build import ImageState
from isolate.image.build.tree import ImageTree
from isolate._container_runner import build
store = Store()
store.from_directory(tree, "local/rl:1", config=ImageConfig(env=["PATH=/bin"]))
def dockerfile(text):
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM local/rl:1\\n" + text)
def owners(image, n):  # (name, uid, gid) of each entry of layer n, as its tar records it
    import gzip, io, tarfile
    with store.open_blob(image.layers[n].digest) as f:
        data = f.read()
    if data[:2] == bytes([0x1f, 0x8b]):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted((m.name, m.uid, m.gid) for m in tar.getmembers())
def read(image, path):
    data = ImageTree(store.layer_dirs(image)).read(path)
    return None if data is None else data.decode()
"""


def _run(tmp_path: Path, body: str, **kw: object) -> dict[str, object]:
    return rootless.run_in_user_store(tmp_path, _SETUP + textwrap.dedent(body), **kw)


def test_an_ordinary_user_builds_with_its_own_id_as_root(tmp_path: Path) -> None:
    r = _run(tmp_path, """
        dockerfile("COPY hello.txt /hello.txt\\n"
                   "RUN echo appended >> /etc/passwd && id -u > /id && id -g >> /id && "
                   "tr -s ' ' < /proc/self/uid_map > /map && cat /hello.txt > /copy\\n"
                   "RUN --network=none ls /sys/class/net > /nets\\n"
                   "ENV DONE=1\\n")
        first = build(ctx, tags=["local/built:1"], store=store)
        again = build(ctx, tags=["local/built:1"], store=store)
        img = first.image
        dockerfile("USER app\\nRUN id -u > /id\\n")
        try:
            build(ctx, store=store)
            refused = None
        except Exception as exc:
            refused = [type(exc).__name__, str(exc)]
        print(json.dumps({
            "root": store.root, "layers": len(img.layers), "env": img.config.env,
            "passwd": read(img, "/etc/passwd"), "id": read(img, "/id"),
            "map": read(img, "/map"), "copy": read(img, "/copy"), "nets": read(img, "/nets"),
            "history": [h.get("created_by", "") for h in
                        ImageState.from_image(store, img).history],
            "again": [again.image.id == img.id, again.executed, again.cached],
            "refused": refused, "tmp": os.listdir(os.path.join(store.root, "tmp")),
            "owners": owners(img, 2)}))
    """)
    assert r["root"] == str(tmp_path / "xdg" / "isolate")
    # What the step's root made is root's in the layer, not the host uid that built it.
    owned = {tuple(o[1:]) for o in r["owners"]}  # type: ignore[union-attr]
    assert owned == {(0, 0)}, r["owners"]
    assert r["passwd"] == ("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh"
                           "\nappended\n")
    # Inside, the step is root; outside, it is the user that built (a single-id map).
    assert r["id"] == "0\n0\n" and str(r["map"]).split() == ["0", "65534", "1"]
    assert r["copy"] == "hello\n" and r["nets"] == "lo\n"
    assert r["layers"] == 4 and "DONE=1" in r["env"]  # type: ignore[operator]
    assert any("echo appended" in h for h in r["history"])  # type: ignore[union-attr]
    assert r["again"] == [True, 0, 3]  # a rebuild does no work but lookups, rootless too
    refused = r["refused"]
    assert isinstance(refused, list) and refused[0] == "UnsupportedError", refused
    assert "runs as uid 1000" in refused[1] and "/etc/subuid" in refused[1]
    assert r["tmp"] == []


@pytest.mark.skipif(shutil.which("newuidmap") is None, reason="newuidmap (uidmap) missing")
def test_subordinate_ranges_let_a_step_run_as_the_images_other_users(tmp_path: Path) -> None:
    sub, subgid = tmp_path / "subuid", tmp_path / "subgid"
    for f in (sub, subgid):
        f.write_text("nobody:300000:65536\n")
        f.chmod(0o644)
    r = _run(tmp_path, """
        dockerfile("USER app\\nRUN id -u > /tmp/id && tr -s ' ' < /proc/self/uid_map "
                   "> /tmp/map && touch /tmp/made && stat -c %u /tmp/made "
                   ">> /tmp/id\\n")
        img = build(ctx, tags=["local/app:1"], store=store).image
        print(json.dumps({"id": read(img, "/tmp/id"), "map": read(img, "/tmp/map"),
                          "tmp": os.listdir(os.path.join(store.root, "tmp")),
                          "owners": owners(img, 1)}))
    """, binds={str(sub): "/etc/subuid", str(subgid): "/etc/subgid"}, keep_bounding_set=True)
    lines = str(r["map"]).splitlines()
    assert lines[0].split() == ["0", "65534", "1"] and lines[1].split() == ["1", "300000",
                                                                             "65536"]
    assert r["id"] == "1000\n1000\n"
    assert r["tmp"] == []
    # As the step saw them: what app made is app's in the layer (not a subordinate host id).
    owners = {name: (uid, gid) for name, uid, gid in r["owners"]}  # type: ignore[attr-defined]
    assert owners["tmp/made"] == (1000, 1000) and owners["tmp/id"] == (1000, 1000)


def test_an_ordinary_users_step_on_a_bridge_reaches_a_server_through_the_rootless_netns(
        tmp_path: Path) -> None:
    # As uid 65534, the host played by a user and network namespace of ours with a server on
    # its loopback: the step's user and network namespaces are made inside the rootless
    # netns's user namespace, its veth on the bridge there, and pasta's host-loopback mapping
    # (the rootless netns's gateway) leads to the server. Afterwards nothing is left.
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent.parent / "net"))
    from net_helpers import staged_extras

    for program in ("pasta", "nft"):
        if shutil.which(program, path="/usr/bin:/usr/sbin:/bin:/sbin") is None:
            pytest.skip(f"{program} is not installed")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("this machine has no /dev/net/tun")
    with staged_extras() as env:
        r = _run(tmp_path, f"""
            import sys
            sys.path.insert(0, {env["extra"]!r})
            sys.path.insert(0, {env["tests"]!r})
            from isolate._container_runner import ContainerStepRunner
            from isolate.container import netdriver
            from isolate.image.build import Builder, BuildOptions, BuildRequest
            from isolate.namespaces import Namespace
            from isolate.net.rootless_netns import RECORD
            from net_helpers import make_host
            nss = Namespace.create("user")
            host = make_host(nss, default_route=True)
            world = os.path.join(base, "world")
            os.makedirs(world)
            with open(os.path.join(world, "index.html"), "w") as f:
                f.write("the host")
            null = os.open(os.devnull, os.O_RDWR)
            server = host.spawn(["busybox", "httpd", "-f", "-p", "127.0.0.1:8000", "-h",
                                 world], fds=(null, null, null))
            netdir = os.path.join(store.root, "networks")
            try:
                dockerfile("RUN --network=bridge for i in $(seq 100); do timeout 10 wget -q "
                           "-O - http://10.99.0.254:8000/ > /got && break; sleep 0.1; done; "
                           "ip -4 -o addr show eth0 | wc -l > /eth0 && "
                           "tr -s ' ' < /proc/self/uid_map > /map\\n")
                builder = Builder(store, ContainerStepRunner(network_host=host))
                img = builder.build(BuildRequest(context=ctx, options=BuildOptions())).image
                # build --network NAME: a user-defined network as the steps' default.
                with netdriver.open_networks(store.root, host) as nets:
                    subnet = nets.create("buildnet").subnet
                dockerfile("RUN ip -4 -o addr show eth0 > /addr\\n")
                named = builder.build(BuildRequest(
                    context=ctx, options=BuildOptions(network="buildnet"))).image
                with netdriver.open_networks(store.root, host) as nets:
                    left = [e.owner for e in nets.endpoints()]
                    nets.remove("buildnet")
                gone = not os.path.exists(os.path.join(netdir, RECORD))
            finally:
                server.kill(); server.wait(); server.close()
                host.close()
                nss.close()
            print(json.dumps({{"got": read(img, "/got"), "eth0": read(img, "/eth0"),
                              "map": read(img, "/map"), "left": left, "record_gone": gone,
                              "addr": read(named, "/addr"), "subnet": subnet,
                              "tmp": os.listdir(os.path.join(store.root, "tmp"))}}))
        """, binds={env["tun"]: "/dev/net/tun"}, keep_bounding_set=True, timeout=300)
    assert r["got"] == "the host" and r["eth0"] == "1\n", r
    # The step is root of a user namespace nested in the rootless netns's (whose root is the
    # user): the ids it sees map to the rootless netns's root, one to one.
    assert str(r["map"]).split() == ["0", "0", "1"], r
    assert r["left"] == [] and r["record_gone"] and r["tmp"] == [], r
    import ipaddress

    addr = str(r["addr"]).split()[3].split("/")[0]
    assert ipaddress.ip_address(addr) in ipaddress.ip_network(str(r["subnet"])), r
