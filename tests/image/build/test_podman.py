"""The same Dockerfiles built by isolate and by ``podman build`` give the same files (type,
mode, owner, content) and the same config. podman runs with a configuration of the test's
own and ``--network=none`` only; its image is saved and read back through an isolate store,
so both are compared the same way."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from isolate.image import Image, Store

from .conftest import BASE, Build, FileInfo, Podman, config_of, history_of, read, snapshot

pytestmark = [pytest.mark.root, pytest.mark.slow]

# What podman (buildah) leaves in its layers and isolate does not: the empty files it mounts
# over (/etc/hostname, /etc/hosts, /etc/resolv.conf) and /run/.containerenv. Their absence is
# Docker's behaviour too.
PODMAN_ONLY = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv"}
# Config fields both must agree on (podman adds its own label, dropped before comparing).
FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
          "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild")


def compare_trees(ours: dict[str, FileInfo], theirs: dict[str, FileInfo],
                  ignore: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    skip = PODMAN_ONLY | set(ignore)
    problems = []
    for path in sorted(set(ours) | set(theirs)):
        if path in skip or any(path.startswith(s + "/") for s in skip):
            continue
        a, b = ours.get(path), theirs.get(path)
        if a is None:
            problems.append(f"only podman has {path}: {b}")
        elif b is None:
            problems.append(f"only isolate has {path}: {a}")
        elif a != b:
            problems.append(f"{path}: isolate {a} != podman {b}")
    return problems


def compare_configs(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    theirs = dict(theirs)
    labels = dict(theirs.get("Labels") or {})
    labels.pop("io.buildah.version", None)
    theirs["Labels"] = labels or None
    problems = []
    for field in FIELDS:
        a, b = ours.get(field) or None, theirs.get(field) or None
        if a != b:
            problems.append(f"{field}: isolate {a!r} != podman {b!r}")
    return problems


@pytest.fixture
def podman_base(podman: Podman, store: Store, base: Image, tmp_path: Path) -> str:
    archive = tmp_path / "base.tar"
    store.save(BASE, archive)
    podman("load", "-i", str(archive))
    archive.unlink()
    return BASE


def build_both(build: Build, podman: Podman, dockerfile: str, tmp_path: Path,
               tag: str) -> tuple[Image, Image, Store]:
    ours = build(dockerfile, tags=(tag,)).image
    podman.build(build.context, tag, "--format", "docker")
    theirs_store = Store(tmp_path / "podman-images")
    theirs = podman.load_into(theirs_store, tag, tmp_path)
    return ours, theirs, theirs_store


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o640, 7, 8
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


DOCKERFILE = f"""FROM {BASE}
ARG A=1
ENV E1=x E2="y z"
LABEL l1=v1 "l 2"="v 2"
COPY a.txt /opt/a.txt
COPY --chown=app:staff d /opt/d
COPY --chown=1234 a.txt /opt/n/
COPY --chmod=640 d/b /opt/b-mode
COPY d /etc/
COPY *.log /logs/
ADD pkg.tar.gz /opt/pkg/
RUN echo appended >> /etc/motd && mkdir -p /var/lib/app && chown app /var/lib/app
RUN rm /bin/vi && mkdir /data && chmod 2775 /data && ln -s /data /data-link
RUN echo $A $E2 > /args
USER app
WORKDIR /home/app
RUN echo hi > note && id -u > uid
USER root
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD true
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo hi
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
"""


def test_a_busybox_dockerfile_gives_the_same_files_and_config(
        build: Build, podman: Podman, podman_base: str, store: Store, base: Image,
        tmp_path: Path) -> None:
    build.file("a.txt", "a\n", mode=0o644)
    build.file("d/b", "b\n", mode=0o600)
    build.file("d/sub/c", "c\n")
    build.file("x1.log", "1")
    build.file("x2.log", "2")
    build.file("pkg.tar.gz", _tar_gz({"inner/file": b"inside"}))
    ours, theirs, theirs_store = build_both(build, podman, DOCKERFILE, tmp_path,
                                            "test/compare:1")
    problems = compare_trees(snapshot(store, ours), snapshot(theirs_store, theirs))
    assert not problems, "\n".join(problems)
    problems = compare_configs(config_of(store, ours), config_of(theirs_store, theirs))
    assert not problems, "\n".join(problems)
    # a history entry per instruction in both
    ours_h = history_of(store, ours)[len(history_of(store, base)):]
    theirs_h = history_of(theirs_store, theirs)[len(history_of(store, base)):]
    assert len(ours_h) == len(theirs_h) == DOCKERFILE.count("\n") - 1


def test_multi_stage_gives_the_same_files(build: Build, podman: Podman, podman_base: str,
                                          store: Store, tmp_path: Path) -> None:
    dockerfile = f"""FROM {BASE} AS builder
RUN mkdir -p /out/bin && echo built > /out/bin/tool && chmod 755 /out/bin/tool && \\
    chown -R app:staff /out
FROM {BASE}
COPY --from=builder /out /usr/local
COPY --from=builder --chown=0:0 /out/bin/tool /root/tool
"""
    ours, theirs, theirs_store = build_both(build, podman, dockerfile, tmp_path,
                                            "test/multistage:1")
    problems = compare_trees(snapshot(store, ours), snapshot(theirs_store, theirs))
    assert not problems, "\n".join(problems)


def test_run_steps_see_what_podman_build_gives_them(build: Build, podman: Podman,
                                                    podman_base: str, store: Store,
                                                    tmp_path: Path) -> None:
    # The identity, HOME, /tmp and privileges a RUN step has, written into files that both
    # builds must agree on (capabilities differ by design: podman grants 11, Docker 14).
    dockerfile = f"""FROM {BASE}
RUN id > /id-root && echo "$HOME" >> /id-root && echo t > /tmp/left && \\
    grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status > /status
USER app
RUN id > /tmp/id-app && echo "$HOME" >> /tmp/id-app && touch /tmp/app-made
USER 1000:1000
RUN id > /tmp/id-numeric
"""
    ours, theirs, theirs_store = build_both(build, podman, dockerfile, tmp_path,
                                            "test/runenv:1")
    for path in ("/id-root", "/status", "/tmp/id-app", "/tmp/id-numeric"):
        assert read(store, ours, path) == read(theirs_store, theirs, path), path
    a, b = snapshot(store, ours), snapshot(theirs_store, theirs)
    problems = compare_trees(a, b)
    assert not problems, "\n".join(problems)
    assert a["tmp/left"].kind == "file" and a["tmp/app-made"].uid == 1000
