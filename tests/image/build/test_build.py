"""Builds end to end on a busybox base: every instruction and form, COPY/ADD rules, RUN
mounts, secrets, multi-stage, and the cache. RUN steps run in real containers."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from tests.sandbox_helpers import need_volatile_overlays, root_is_volatile

from isolate._container_runner import ContainerStepRunner
from isolate.errors import ImageError
from isolate.image import Image, Store
from isolate.image.build import (
    BuildCache,
    Builder,
    BuildError,
    BuildRequest,
    DockerfileError,
    RunOutcome,
    RunRequest,
    StepFailed,
)

from .conftest import BASE, Build, config_of, history_of, layer_bytes, read, snapshot

pytestmark = pytest.mark.root


def test_a_build_records_one_image_its_result(build: Build, store: Store,
                                              base: Image) -> None:
    # Each step runs on the image so far, and a stage is read by COPY --from; none of them
    # becomes an image record of its own (BuildKit leaves none: `images` shows no <none>).
    build.file("a", "a")
    result = build(f"""FROM {BASE} AS first
RUN echo one > /one
RUN echo two > /two
FROM {BASE}
COPY a /a
RUN cat /a > /b
COPY --from=first /one /one
RUN echo three > /three
""")
    assert sorted(i.id for i in store.images()) == sorted({base.id, result.image.id})
    assert read(store, result.image, "/one") == b"one\n"
    # The cache still answers the next build, from the step states alone.
    again = build(build.context.joinpath("Dockerfile").read_text())
    assert again.executed == 0 and again.image.id == result.image.id
    assert sorted(i.id for i in store.images()) == sorted({base.id, result.image.id})


def test_run_changes_become_a_layer_and_the_image_is_tagged(build: Build, store: Store,
                                                            base: Image) -> None:
    result = build(f"FROM {BASE}\nRUN echo extra >> /etc/motd && mkdir -p /srv/data\n",
                   tags=("test/a:1", "test/a:latest"))
    img = result.image
    assert set(img.tags) == {"docker.io/test/a:1", "docker.io/test/a:latest"}
    assert len(img.layers) == len(base.layers) + 1
    assert read(store, img, "/etc/motd") == b"welcome\nextra\n"
    assert snapshot(store, img)["srv/data"].kind == "dir"
    assert store.get("test/a:1").id == img.id


def test_run_runs_as_root_with_dockers_capabilities(build: Build, store: Store) -> None:
    img = build(f"FROM {BASE}\nRUN touch /f && chown 1000:50 /f && chmod 4750 /f && "
                "id -u > /uid\n").image
    snap = snapshot(store, img)
    assert (snap["f"].uid, snap["f"].gid, snap["f"].mode) == (1000, 50, 0o4750)
    assert read(store, img, "/uid") == b"0\n"


# Docker's default capability set (docker run alpine grep CapEff /proc/self/status).
DOCKER_CAPS = "00000000a80425fb"


def test_run_is_a_docker_container_not_a_sandbox(build: Build, store: Store) -> None:
    img = build(f"FROM {BASE}\n"
                "RUN grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status "
                "> /status && chroot / true && echo chrooted >> /status\n"
                "RUN echo kept > /tmp/left-by-a-step && hostname > /host && "
                "grep buildkitsandbox /etc/hosts > /hosts\n").image
    status = dict(line.split(":\t") for line in
                  (read(store, img, "/status") or b"").decode().splitlines()[:-1])
    # Docker's 14 capabilities, no no_new_privs, a seccomp filter that is Docker's profile:
    # chroot with CAP_SYS_CHROOT works there (isolate's sandbox profile refuses it).
    assert status == {"CapEff": DOCKER_CAPS, "CapBnd": DOCKER_CAPS, "NoNewPrivs": "0",
                      "Seccomp": "2"}
    assert (read(store, img, "/status") or b"").endswith(b"chrooted\n")
    # /tmp is the image's own: a file left there is in the step's layer, as with Docker.
    assert read(store, img, "/tmp/left-by-a-step") == b"kept\n"
    assert read(store, img, "/host") == b"buildkitsandbox\n"
    assert read(store, img, "/hosts") == b"127.0.0.1\tlocalhost buildkitsandbox\n"
    # Nothing of the container's own mounts is in a layer.
    assert [p for p in snapshot(store, img) if p.startswith(("dev/", "proc/", "sys/"))] == []


def test_a_run_steps_root_is_not_synced_at_its_end(build: Build, store: Store) -> None:
    """A step's upper dir is read into a layer (which the store syncs) and thrown away: its
    overlay is ``volatile``, so the step's end does not sync the store's filesystem."""
    need_volatile_overlays()
    img = build(f"FROM {BASE}\nRUN cat /proc/self/mountinfo > /mountinfo\n").image
    assert root_is_volatile((read(store, img, "/mountinfo") or b"").decode())


def test_run_gets_supplementary_groups_and_home_as_docker_sets_them(build: Build,
                                                                    store: Store) -> None:
    groups = "grep ^Groups: /proc/self/status | cut -f2"
    img = build(f"FROM {BASE}\nRUN {groups} > /root-groups && echo $HOME >> /root-groups\n"
                f"USER app\nRUN {groups} > /tmp/app && echo $HOME >> /tmp/app\n"
                f"USER app:app\nRUN {groups} > /tmp/explicit\n"
                f"USER 1000\nRUN {groups} > /tmp/numeric\n"
                "USER 4321\nRUN echo $HOME > /tmp/unknown\n").image
    # The primary group (the kernel sorts the list), as Docker and podman set them ...
    assert read(store, img, "/root-groups") == b"0 \n/root\n"
    # ... then, for a user named (or found by uid), every group that lists it (staff, 50);
    assert read(store, img, "/tmp/app") == b"50 1000 \n/home/app\n"
    assert read(store, img, "/tmp/numeric") == b"50 1000 \n"
    # an explicit group replaces them; a uid the image lacks has HOME /.
    assert read(store, img, "/tmp/explicit") == b"1000 \n"
    assert read(store, img, "/tmp/unknown") == b"/\n"


def test_user_and_workdir_apply_to_run(build: Build, store: Store) -> None:
    img = build(f"FROM {BASE}\nUSER app\nWORKDIR /home/app/work\nRUN id -u > uid && "
                "id -g >> uid && pwd >> uid && echo $HOME >> uid\nUSER root:staff\n"
                "RUN id -g > /g\n").image
    assert read(store, img, "/home/app/work/uid") == b"1000\n1000\n/home/app/work\n/home/app\n"
    snap = snapshot(store, img)
    # WORKDIR made the directory, owned by the USER of the moment, as Docker does
    assert (snap["home/app/work"].uid, snap["home/app/work"].mode) == (1000, 0o755)
    assert read(store, img, "/g") == b"50\n"
    assert config_of(store, img)["User"] == "root:staff"


def test_an_unknown_user_is_a_clear_error(build: Build) -> None:
    with pytest.raises(BuildError, match=r"Dockerfile:3:1: USER ghost: unable to find user"):
        build(f"FROM {BASE}\nUSER ghost\nRUN true\n")
    # A uid out of range is no uid (runc's rule, as `isolate run --user` reads it), said
    # before any container is made.
    with pytest.raises(BuildError, match=r"Dockerfile:3:1: USER 4294967296: unable to find "
                                         "user 4294967296"):
        build(f"FROM {BASE}\nUSER 4294967296\nRUN true\n")
    with pytest.raises(BuildError, match=r"COPY --chown=4294967296:0: unable to find user"):
        build.file("f", "f")
        build(f"FROM {BASE}\nCOPY --chown=4294967296:0 f /f\n")


def test_user_resolves_as_a_containers_user_does(build: Build, store: Store,
                                                 base: Image) -> None:
    # One resolver, isolate.image.users, for `isolate run --user`, USER and --chown.
    from isolate.image.users import resolve_user

    specs = ["app", "app:staff", "1000", "1000:50", "nobody", "0:app", "4321", "root"]
    steps = "".join(f"USER {spec}\nRUN echo $(id -u) $(id -g) $(id -G) $HOME > /tmp/{n}\n"
                    for n, spec in enumerate(specs))
    build.file("f", "f")
    img = build(f"FROM {BASE}\n{steps}USER root\nCOPY --chown=app f /f\n"
                "COPY --chown=app:staff f /g\n").image
    for n, spec in enumerate(specs):
        who = resolve_user(spec, (), store.layer_dirs(base))
        groups = [who.gid, *(g for g in who.additional_gids if g != who.gid)]
        want = f"{who.uid} {who.gid} {' '.join(map(str, groups))} {who.home}\n"
        assert read(store, img, f"/tmp/{n}") == want.encode(), spec
    s = snapshot(store, img)
    assert (s["f"].uid, s["f"].gid) == (1000, 1000) and (s["g"].uid, s["g"].gid) == (1000, 50)


def test_env_args_and_shell_reach_run(build: Build, store: Store) -> None:
    img = build(f"""FROM {BASE}
ARG WHO=world
ENV GREETING="hello there"
RUN echo "$GREETING $WHO" > /out
SHELL ["/bin/sh", "-ec"]
RUN echo "$0 $-" > /shell
RUN ["/bin/sh", "-c", "echo exec form > /exec"]
""", build_args={"WHO": "you"}).image
    assert read(store, img, "/out") == b"hello there you\n"
    assert b"e" in (read(store, img, "/shell") or b"").split()[1]
    assert read(store, img, "/exec") == b"exec form\n"
    assert "WHO" not in json.dumps(config_of(store, img)["Env"])  # args are not persisted


def test_every_config_field_lands_in_the_image(build: Build, store: Store) -> None:
    img = build(f"""FROM {BASE}
ENV A=1 B="x y"
LABEL org.example.v=1 other=two
EXPOSE 80 53/udp
VOLUME ["/data"]
USER app
WORKDIR /home/app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- localhost
SHELL ["/bin/sh", "-xc"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
MAINTAINER Ada
""", labels={"added": "by-cli"}).image
    cfg = config_of(store, img)
    assert cfg["Env"][-2:] == ["A=1", "B=x y"]
    assert cfg["Labels"] == {"org.example.v": "1", "other": "two", "added": "by-cli"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("app", "/home/app",
                                                                  "SIGINT")
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost"],
                                  "Interval": 30_000_000_000, "Timeout": 3_000_000_000,
                                  "Retries": 2}
    assert cfg["Shell"] == ["/bin/sh", "-xc"]
    assert cfg["OnBuild"] == ["RUN echo triggered"]
    assert cfg["Entrypoint"] == ["/bin/sh"] and cfg["Cmd"] == ["-c", "echo hi"]
    doc = json.loads(store.read_blob(img.id))
    assert doc["author"] == "Ada"
    # what ImageConfig models is seen by the rest of isolate too
    assert img.config.stop_signal == "SIGINT" and img.config.user == "app"


def test_history_has_an_entry_per_instruction(build: Build, store: Store, base: Image) -> None:
    img = build(f"FROM {BASE}\nENV A=1\nRUN echo > /x\nCOPY Dockerfile /\nRUN true\n").image
    history = history_of(store, img)
    base_history = history_of(store, base)
    mine = history[len(base_history):]
    assert [h["created_by"] for h in mine] == [
        "ENV A=1", "RUN /bin/sh -c echo > /x # buildkit", "COPY Dockerfile / # buildkit",
        "RUN /bin/sh -c true # buildkit"]
    assert [bool(h.get("empty_layer")) for h in mine] == [True, False, False, True]
    # one layer per step that changed files: the empty RUN made none
    assert len(img.layers) == len(base.layers) + 2
    assert sum(not h.get("empty_layer") for h in history) == len(img.layers)


# -- COPY ------------------------------------------------------------------------------------

def test_copy_rules(build: Build, store: Store) -> None:
    build.file("a.txt", "a", mode=0o640)
    build.file("d/b", "b")
    build.file("d/sub/c", "c", mode=0o600)
    os.chmod(build.context / "d" / "sub", 0o700)
    build.file("x1.log", "1")
    build.file("x2.log", "2")
    os.symlink("a.txt", build.context / "link")
    img = build(f"""FROM {BASE}
COPY a.txt /file-renamed
COPY a.txt /newdir/
COPY a.txt /etc
COPY d /copied
COPY d/ /etc/
COPY *.log /logs/
COPY link /l
WORKDIR /w
COPY a.txt .
COPY a.txt rel/
""").image
    s = snapshot(store, img)
    assert (s["file-renamed"].kind, s["file-renamed"].mode, s["file-renamed"].uid) == (
        "file", 0o640, 0)
    assert s["newdir"].kind == "dir" and s["newdir/a.txt"].kind == "file"
    assert s["etc/a.txt"].kind == "file"                     # into an existing directory
    assert s["etc"].mode == 0o755                            # which keeps its metadata
    assert {k for k in s if k.startswith("copied")} == {
        "copied", "copied/b", "copied/sub", "copied/sub/c"}   # contents, not the dir itself
    assert s["copied/sub"].mode == 0o700 and s["copied/sub/c"].mode == 0o600
    assert s["etc/b"].kind == "file" and s["etc/sub/c"].kind == "file"
    assert {k for k in s if k.startswith("logs/")} == {"logs/x1.log", "logs/x2.log"}
    assert s["l"].kind == "file" and read(store, img, "/l") == b"a"  # the link is followed
    assert s["w/a.txt"].kind == "file" and s["w/rel/a.txt"].kind == "file"


def test_copy_chown_and_chmod(build: Build, store: Store) -> None:
    build.file("f", "f", mode=0o644)
    build.file("d/g", "g")
    img = build(f"""FROM {BASE}
COPY --chown=app:staff f /opt/new/parents/
COPY --chown=1234 f /num/
COPY --chown=app d /owned
COPY --chmod=600 d /modes
COPY --chmod=0755 f /exe
""").image
    s = snapshot(store, img)
    assert (s["opt/new/parents/f"].uid, s["opt/new/parents/f"].gid) == (1000, 50)
    # the parent directories the copy made belong to the --chown user, as podman makes them
    assert (s["opt"].uid, s["opt/new"].gid, s["opt"].mode) == (1000, 50, 0o755)
    assert (s["num/f"].uid, s["num/f"].gid) == (1234, 1234)
    assert (s["owned/g"].uid, s["owned/g"].gid) == (1000, 1000)
    assert s["modes/g"].mode == 0o600 and s["modes"].mode == 0o755
    assert s["exe"].mode == 0o755


def test_chown_names_are_looked_up_in_the_image_never_the_host(build: Build) -> None:
    build.file("f", "f")
    # 'daemon' exists on the host (/etc/passwd) but not in the image
    with pytest.raises(BuildError, match="unable to find user daemon"):
        build(f"FROM {BASE}\nCOPY --chown=daemon f /f\n")
    with pytest.raises(BuildError, match="unable to find group nogrp"):
        build(f"FROM {BASE}\nCOPY --chown=app:nogrp f /f\n")


def test_chown_does_not_follow_an_image_passwd_symlink_to_the_host(
        build: Build, store: Store, tmp_path: Path, busybox_tree: Path) -> None:
    root = tmp_path / "evil"
    import shutil
    shutil.copytree(busybox_tree, root, symlinks=True)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("/etc/host-passwd-copy")
    (root / "etc" / "host-passwd-copy").write_text("app:x:4242:4242::/:/bin/sh\n")
    store.from_directory(root, "local/evil:1")
    build.file("f", "f")
    img = build("FROM local/evil:1\nCOPY --chown=app f /f\n").image
    # the absolute link resolves inside the image, to its own /etc/host-passwd-copy
    assert snapshot(store, img)["f"].uid == 4242


def test_copy_never_reads_outside_the_context(build: Build, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host secret")
    os.symlink(tmp_path / "secret", build.context / "abs-link")
    os.symlink("../secret", build.context / "rel-link")
    for source in ("../secret", "abs-link", "rel-link"):
        with pytest.raises(BuildError, match="outside the build context"):
            build(f"FROM {BASE}\nCOPY {source} /x\n")
    with pytest.raises(BuildError, match="file not found in build context"):
        build(f"FROM {BASE}\nCOPY /etc/hostname /x\n")


def test_a_symlink_inside_a_copied_directory_stays_a_symlink(build: Build, store: Store,
                                                              tmp_path: Path) -> None:
    build.file("d/real", "r")
    os.symlink("/etc/shadow", build.context / "d" / "to-host")
    img = build(f"FROM {BASE}\nCOPY d /d\n").image
    s = snapshot(store, img)
    assert s["d/to-host"] == s["d/to-host"].__class__("symlink", 0o777, 0, 0, "/etc/shadow")


def test_copy_into_a_symlinked_directory_follows_it_inside_the_image(
        build: Build, store: Store, tmp_path: Path, busybox_tree: Path) -> None:
    import shutil
    root = tmp_path / "merged-usr"
    shutil.copytree(busybox_tree, root, symlinks=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    store.from_directory(root, "local/mergedusr:1")
    build.file("tree/lib/libx.so", "x")
    build.file("x", "x")
    img = build("FROM local/mergedusr:1\nCOPY x /lib/\nCOPY tree/ /\n").image
    s = snapshot(store, img)
    assert s["lib"].kind == "symlink"                  # not replaced by a directory
    assert s["usr/lib/x"].kind == "file" and s["usr/lib/libx.so"].kind == "file"


def test_copy_heredoc(build: Build, store: Store) -> None:
    img = build(f"""FROM {BASE}
ARG WHO=you
COPY <<EOF /etc/greeting
hello $WHO
EOF
COPY <<'EOF' <<EOT /docs/
literal $WHO
EOF
second
EOT
""").image
    assert read(store, img, "/etc/greeting") == b"hello you\n"
    assert read(store, img, "/docs/EOF") == b"literal $WHO\n"
    assert read(store, img, "/docs/EOT") == b"second\n"


def test_dockerignored_files_cannot_be_copied(build: Build, store: Store) -> None:
    build.file(".dockerignore", "*.secret\ncache/\n")
    build.file("keep.txt", "k")
    build.file("x.secret", "s")
    build.file("cache/big", "b")
    img = build(f"FROM {BASE}\nCOPY . /ctx/\n").image
    files = {k for k in snapshot(store, img, "/ctx")}
    assert files == {".dockerignore", "Dockerfile", "keep.txt"}
    with pytest.raises(BuildError, match=r"excluded by \.dockerignore"):
        build(f"FROM {BASE}\nCOPY x.secret /\n")


# -- ADD -------------------------------------------------------------------------------------

def _tar(members: dict[str, bytes], compress: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o750
            else:
                info.size = len(data)
                info.mode = 0o640
                info.uid = info.gid = 7
            tf.addfile(info, io.BytesIO(data) if not name.endswith("/") else None)
    return buf.getvalue()


@pytest.mark.parametrize("compress", ["", "gz", "bz2", "xz"])
def test_add_unpacks_local_archives(build: Build, store: Store, compress: str) -> None:
    build.file("pkg.tar", _tar({"top/": b"", "top/file": b"inside", "./loose": b"l"},
                               compress))
    img = build(f"FROM {BASE}\nADD pkg.tar /opt/\n").image
    s = snapshot(store, img)
    assert read(store, img, "/opt/top/file") == b"inside"
    assert (s["opt/top/file"].uid, s["opt/top/file"].mode) == (7, 0o640)  # kept from the tar
    assert s["opt/top"].mode == 0o750 and s["opt/loose"].kind == "file"


def test_add_of_a_non_archive_copies_it(build: Build, store: Store) -> None:
    build.file("notes.tar", "not really a tar")
    img = build(f"FROM {BASE}\nADD notes.tar /n\nCOPY notes.tar /c\n").image
    assert read(store, img, "/n") == b"not really a tar"


def test_add_refuses_an_archive_that_climbs_out(build: Build) -> None:
    build.file("bad.tar", _tar({"../../escape": b"x"}))
    with pytest.raises(BuildError, match="leads out of the destination"):
        build(f"FROM {BASE}\nADD bad.tar /opt/\n")


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server on 127.0.0.1 serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(www), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_add_url_with_checksum(build: Build, store: Store,
                               http_files: tuple[str, Path]) -> None:
    import hashlib

    url, www = http_files
    (www / "tool.sh").write_bytes(b"#!/bin/sh\necho tool\n")
    digest = "sha256:" + hashlib.sha256(b"#!/bin/sh\necho tool\n").hexdigest()
    img = build(f"FROM {BASE}\nADD --checksum={digest} {url}/tool.sh /usr/local/bin/\n"
                f"ADD --chmod=755 {url}/tool.sh /t\n").image
    s = snapshot(store, img)
    assert s["usr/local/bin/tool.sh"].mode == 0o600  # Docker's mode for downloads
    assert s["t"].mode == 0o755
    assert read(store, img, "/t") == b"#!/bin/sh\necho tool\n"
    bad = "sha256:" + "0" * 64
    with pytest.raises(BuildError, match="checksum mismatch"):
        build(f"FROM {BASE}\nADD --checksum={bad} {url}/tool.sh /x\n")


# -- RUN forms and mounts --------------------------------------------------------------------

def test_run_heredocs(build: Build, store: Store) -> None:
    img = build(f"""FROM {BASE}
RUN <<EOF
echo one > /one
echo two >> /one
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
RUN cat <<A > /a && cat <<-B > /b
first
A
	second
	B
""").image
    assert read(store, img, "/one") == b"one\ntwo\n"
    assert read(store, img, "/script") == b"script /dev/pipes/EOF\n"
    assert read(store, img, "/a") == b"first\n" and read(store, img, "/b") == b"second\n"
    assert "pipes" not in snapshot(store, img, "/dev")


def test_run_network_none_has_only_loopback(build: Build, store: Store) -> None:
    img = build(f"FROM {BASE}\nRUN --network=none ls /sys/class/net > /nets\n").image
    assert read(store, img, "/nets") == b"lo\n"


def test_run_network_host_shares_the_hosts_network_namespace(build: Build,
                                                             store: Store) -> None:
    img = build(f"FROM {BASE}\nRUN --network=host readlink /proc/self/ns/net > /host && "
                "cat /etc/resolv.conf > /resolv\n"
                "RUN readlink /proc/self/ns/net > /default\n"
                "RUN --network=none readlink /proc/self/ns/net > /own\n").image
    ours = f"{os.readlink('/proc/self/ns/net')}\n".encode()
    assert read(store, img, "/host") == ours
    assert read(store, img, "/default") == ours  # the build's default network is host
    own = read(store, img, "/own")
    assert own is not None and own.startswith(b"net:[") and own != ours
    # The host's resolver was bound for that step only: it is not in the image.
    with open("/etc/resolv.conf", "rb") as f:
        assert read(store, img, "/resolv") == f.read()
    assert "etc/resolv.conf" not in snapshot(store, img)


def test_the_build_wide_network_option_applies_to_every_run(build: Build,
                                                            store: Store) -> None:
    img = build(f"FROM {BASE}\nRUN ls /sys/class/net > /nets\n"
                "RUN --network=host readlink /proc/self/ns/net > /ns\n", network="none").image
    assert read(store, img, "/nets") == b"lo\n"
    assert read(store, img, "/ns") == f"{os.readlink('/proc/self/ns/net')}\n".encode()


def test_cache_mounts_persist_between_builds_and_stay_out_of_layers(
        build: Build, store: Store) -> None:
    text = (f"FROM {BASE}\nARG N\nRUN --mount=type=cache,target=/root/.cache "
            "echo $N >> /root/.cache/log && cat /root/.cache/log > /root/seen\n")
    build(text, build_args={"N": "1"})
    img = build(text, build_args={"N": "2"}).image
    assert read(store, img, "/root/seen") == b"1\n2\n"
    s = snapshot(store, img)
    assert ".cache/log" not in "".join(s)
    # the mount point below /root did not turn the image's 0700 /root into 0755
    assert s["root"].mode == 0o700
    assert os.listdir(BuildCache(store).mounts)


def test_bind_mounts_from_the_context_and_a_stage_are_read_only(build: Build,
                                                                 store: Store) -> None:
    build.file("src/data.txt", "from context\n")
    img = build(f"""FROM {BASE} AS other
RUN echo from stage > /made
FROM {BASE}
RUN --mount=target=/src,source=src cat /src/data.txt > /got && \\
    (touch /src/x 2>/dev/null && echo writable || echo read-only) >> /got
RUN --mount=type=bind,from=other,source=/made,target=/m cat /m >> /got
RUN --mount=target=/rw,source=src,rw echo changed > /rw/data.txt && cat /rw/data.txt >> /got
""").image
    assert read(store, img, "/got") == b"from context\nread-only\nfrom stage\nchanged\n"
    assert (build.context / "src" / "data.txt").read_text() == "from context\n"
    assert "src" not in snapshot(store, img) and "m" not in snapshot(store, img)


def test_tmpfs_mount(build: Build, store: Store) -> None:
    img = build(f"FROM {BASE}\nRUN --mount=type=tmpfs,target=/scratch "
                "echo x > /scratch/f && grep -c ' /scratch tmpfs' /proc/mounts > /n\n").image
    assert read(store, img, "/n") == b"1\n"
    assert "scratch/f" not in snapshot(store, img)


def test_a_secret_is_visible_to_its_run_and_nowhere_in_the_image(
        build: Build, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "s3cr3t-" + os.urandom(8).hex()
    secret = tmp_path / "token"
    secret.write_text(value)
    monkeypatch.setenv("API_KEY", value + "-env")
    result = build(f"""FROM {BASE}
RUN --mount=type=secret,id=token \\
    --mount=type=secret,id=key,env=API_KEY \\
    cat /run/secrets/token > /seen-len.tmp && wc -c < /run/secrets/token > /len && \\
    stat -c '%a %u' /run/secrets/token >> /len && \\
    [ "$API_KEY" = "$(cat /run/secrets/token)-env" ] && echo env-ok >> /len && \\
    rm /seen-len.tmp
RUN ls /run/secrets 2>&1 > /after || true
""", secrets=[f"id=token,src={secret}", "id=key,env=API_KEY"])
    img = result.image
    assert read(store, img, "/len") == f"{len(value)}\n400 0\nenv-ok\n".encode()
    for blob in layer_bytes(store, img):
        assert value.encode() not in blob
    assert value not in store.read_blob(img.id).decode()
    for key in BuildCache(store).step_keys():
        with open(os.path.join(BuildCache(store).steps, key + ".json")) as f:
            assert value not in f.read()
    assert value.encode() not in build.last.output
    assert "token" not in (read(store, img, "/after") or b"").decode()


def test_a_required_secret_that_is_missing_is_an_error(build: Build) -> None:
    with pytest.raises(BuildError, match="secret 'nope' is required"):
        build(f"FROM {BASE}\nRUN --mount=type=secret,id=nope,required true\n")
    # an optional one is simply absent
    build(f"FROM {BASE}\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope\n")


# -- multi-stage -----------------------------------------------------------------------------

def test_multi_stage_copy_from_and_target(build: Build, store: Store) -> None:
    text = f"""FROM {BASE} AS builder
RUN mkdir -p /out && echo built > /out/app && chown 1000 /out/app
FROM {BASE} AS unused
RUN echo never
FROM {BASE}
COPY --from=builder /out/app /usr/bin/app
COPY --from={BASE} /etc/motd /motd-from-image
COPY --from=0 /out /out-dir
"""
    result = build(text)
    img = result.image
    s = snapshot(store, img)
    assert read(store, img, "/usr/bin/app") == b"built\n"
    assert s["usr/bin/app"].uid == 1000   # ownership from the stage is kept
    assert read(store, img, "/motd-from-image") == b"welcome\n"
    assert s["out-dir/app"].kind == "file"
    assert "RUN echo never" not in build.last.ran()
    assert result.plan.skipped == ("unused",)
    # --target stops at the stage asked for
    img = build(text, target="builder").image
    assert read(store, img, "/out/app") == b"built\n"


def _waiting_run(name: str, wait_for: str, log: str = "log", then: str = "") -> str:
    """A RUN that writes NAME-start to a cache mount shared by the build's stages, waits
    (at most 60 s) until WAIT_FOR is there too, and writes NAME-end (or runs THEN)."""
    return (f"RUN --mount=type=cache,id=shared,target=/shared "
            f"echo {name}-start >> /shared/{log} && i=0 && "
            f"while ! grep -q {wait_for} /shared/{log} && [ $i -lt 600 ]; "
            f"do sleep 0.1; i=$((i + 1)); done && {then or f'echo {name}-end >> /shared/{log}'}")


def test_independent_stages_are_built_at_the_same_time(build: Build, store: Store) -> None:
    # Each stage's step waits until the other one has started: built one after the other,
    # the first would give up waiting and end before the second started.
    text = f"""FROM {BASE} AS a
{_waiting_run("a", "b-start")}
RUN echo a > /a
FROM {BASE} AS b
{_waiting_run("b", "a-start")}
RUN echo b > /b
FROM {BASE}
COPY --from=a /a /a
COPY --from=b /b /b
RUN --mount=type=cache,id=shared,target=/shared cp /shared/log /log
"""
    img = build(text).image
    log = (read(store, img, "/log") or b"").decode().split()
    assert sorted(log[:2]) == ["a-start", "b-start"] and sorted(log[2:]) == ["a-end", "b-end"]
    assert read(store, img, "/a") == b"a\n" and read(store, img, "/b") == b"b\n"
    # Both stages' steps were recorded in the cache, safely: the next build does no work.
    again = build(text)
    assert again.image.id == img.id and again.executed == 0


def test_a_failing_stage_stops_the_stages_built_beside_it(build: Build, store: Store) -> None:
    # "slow" would run for a minute; "failing" fails once slow has started: slow is killed.
    text = f"""FROM {BASE} AS slow
{_waiting_run("slow", "never-written")}
FROM {BASE} AS failing
{_waiting_run("failing", "slow-start", then="exit 3")}
FROM {BASE}
COPY --from=slow /etc/motd /s
COPY --from=failing /etc/motd /f
"""
    with pytest.raises(StepFailed) as info:
        build(text)
    assert info.value.exit_code == 3 and str(info.value).startswith("Dockerfile:4:1:")
    log = (Path(BuildCache(store).mount_path("shared")) / "log").read_text().split()
    assert sorted(log) == ["failing-start", "slow-start"]  # slow never got to its end
    assert "COPY --from=slow /etc/motd /s" not in build.last.ran()
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_a_missing_base_image_is_a_clear_error(build: Build) -> None:
    with pytest.raises((BuildError, ImageError),
                       match=re.escape("Dockerfile:1:1: base image 127.0.0.1:1/no/such:1")):
        build("FROM 127.0.0.1:1/no/such:1\n")


def test_an_unknown_stage_is_a_clear_error(build: Build) -> None:
    with pytest.raises(BuildError, match=r"Dockerfile:2:1: COPY --from=127\.0\.0\.1:1/nope: "
                       "no build stage has that name"):
        build(f"FROM {BASE}\nCOPY --from=127.0.0.1:1/nope /x /y\n")


@pytest.mark.registry
def test_base_images_are_pulled_when_missing_and_always_with_pull(
        build: Build, store: Store, base: Image, registry: Any, busybox_tree: Path,
        tmp_path: Path) -> None:
    ref = f"{registry.host}/build/base:{os.urandom(4).hex()}"
    store.push(BASE, ref)
    other = Store(tmp_path / "other")
    img = build(f"FROM {ref}\nRUN echo pulled > /p\n").image  # not in the store: pulled
    assert read(store, img, "/p") == b"pulled\n"
    # the registry's image changes; without --pull the stored one is used, with it the new
    changed = tmp_path / "changed"
    import shutil
    shutil.copytree(busybox_tree, changed, symlinks=True)
    (changed / "etc" / "motd").write_text("new base\n")
    other.from_directory(changed, "local/changed:1")
    other.push("local/changed:1", ref)
    text = f"FROM {ref}\nRUN cat /etc/motd > /seen\n"
    assert read(store, build(text).image, "/seen") == b"welcome\n"
    assert read(store, build(text, pull=True).image, "/seen") == b"new base\n"


def test_onbuild_triggers_run_in_the_child_build(build: Build, store: Store) -> None:
    build(f"FROM {BASE}\nONBUILD RUN echo triggered > /trigger\n", tags=("test/parent:1",))
    img = build("FROM test/parent:1\nRUN cat /trigger > /child\n").image
    assert read(store, img, "/child") == b"triggered\n"
    assert not config_of(store, img).get("OnBuild")


# -- the cache -------------------------------------------------------------------------------

DF = f"""FROM {BASE}
ARG V=1
COPY app /app
RUN cat /app/* > /all
RUN echo $V > /v
"""


class _CountingRunner(ContainerStepRunner):
    """The real runner, counting the steps it is asked to run."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, request: RunRequest, output: Callable[[bytes], None]
            ) -> AbstractContextManager[RunOutcome]:
        self.calls += 1
        return super().run(request, output)


def _store_files(store: Store) -> dict[str, int]:
    """Every file of the store but its locks, with its mtime (ns)."""
    out = {}
    for dirpath, _dirs, files in os.walk(store.root):
        for name in files:
            path = os.path.join(dirpath, name)
            if "/locks" not in path[len(store.root):]:
                out[path] = os.lstat(path).st_mtime_ns
    return out


def test_a_second_build_does_no_work(build: Build, store: Store) -> None:
    build.file("app/a", "a")
    first = build(DF).image
    assert build.last.ran() == ["COPY app /app", "RUN cat /app/* > /all", "RUN echo $V > /v"]
    before = _store_files(store)
    runner = _CountingRunner()
    again = Builder(store, runner, progress=build.last).build(BuildRequest(
        context=str(build.context), tags=("test/built:1",)))
    # Nothing but lookups: no container, no layer, no cache entry, no record written.
    assert runner.calls == 0 and again.executed == 0 and again.cached == 3
    assert again.image.id == first.id
    assert _store_files(store) == before


def test_a_changed_file_reruns_from_its_copy(build: Build, store: Store) -> None:
    build.file("app/a", "a")
    build(DF)
    build.file("app/a", "changed")
    img = build(DF).image
    assert build.last.cached() == []
    assert build.last.ran() == ["COPY app /app", "RUN cat /app/* > /all", "RUN echo $V > /v"]
    assert read(store, img, "/all") == b"changed"


def test_a_changed_build_arg_reruns_from_its_first_use(build: Build, store: Store) -> None:
    build.file("app/a", "a")
    build(DF)
    img = build(DF, build_args={"V": "2"}).image
    # the COPY does not use V; the first RUN has it in its environment (as Docker's rule)
    assert build.last.cached() == ["COPY app /app"]
    assert read(store, img, "/v") == b"2\n"


def test_no_cache_reruns_everything_and_refreshes_the_cache(build: Build) -> None:
    build.file("app/a", "a")
    build(DF)
    build(DF, no_cache=True)
    assert build.last.cached() == []
    build(DF)
    assert build.last.ran() == []


def test_a_failing_run_keeps_the_cache_of_the_steps_before(build: Build) -> None:
    build.file("app/a", "a")
    text = DF + "RUN echo failing; exit 3\n"
    with pytest.raises(StepFailed) as info:
        build(text)
    assert info.value.exit_code == 3
    assert "exit 3" in info.value.command and info.value.location is not None
    assert info.value.location.line == 6
    assert "failing" in info.value.output_tail
    build(DF + "RUN true\n")
    assert build.last.cached() == ["COPY app /app", "RUN cat /app/* > /all",
                                   "RUN echo $V > /v"]


def test_a_command_that_cannot_run(build: Build) -> None:
    with pytest.raises(StepFailed) as info:
        build(f'FROM {BASE}\nRUN ["/no/such/program"]\n')
    assert info.value.exit_code == 127


def test_cache_entries_whose_layers_were_collected_are_dropped(build: Build,
                                                               store: Store) -> None:
    build.file("app/a", "a")
    build(DF, tags=())
    cache = BuildCache(store)
    assert len(cache.step_keys()) == 3
    report = store.gc()  # nothing references the image: its layers go
    assert report.images >= 1 and report.blobs >= 3  # the record and the three layers
    assert cache.drop_dangling() == 3 and cache.step_keys() == []
    build(DF, tags=())
    assert build.last.cached() == []


def test_gc_keeps_the_cache_of_images_that_are_tagged(build: Build, store: Store) -> None:
    build.file("app/a", "a")
    build(DF)
    store.gc()
    assert BuildCache(store).drop_dangling() == 0
    build(DF)
    assert build.last.ran() == []


def test_builder_prune_empties_the_cache(build: Build, store: Store) -> None:
    build.file("app/a", "a")
    build(f"FROM {BASE}\nRUN --mount=type=cache,target=/c echo > /c/x\nCOPY app /app\n")
    report = BuildCache(store).prune()
    assert report.entries == 2 and report.mounts == 1 and report.bytes_freed > 0
    assert BuildCache(store).step_keys() == [] and os.listdir(BuildCache(store).mounts) == []
    build(f"FROM {BASE}\nCOPY app /app\n")
    assert build.last.cached() == []


def test_errors_before_anything_runs(build: Build) -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2:1: unknown instruction: COPYY"):
        build(f"FROM {BASE}\nCOPYY a b\n")
    assert build.last.ran() == []


def test_gzip_layers_are_valid(build: Build, store: Store) -> None:
    build.file("f", "data")
    img = build(f"FROM {BASE}\nCOPY f /f\n").image
    with store.open_blob(img.layers[-1].digest) as f:
        data = gzip.decompress(f.read())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["f"]
