"""Planning: the stage graph, --target, build-arg scopes, substitution where Docker does it,
image configs, and cache keys that change exactly when they should. Nothing runs."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from isolate.image import Image, ImageConfig, Platform
from isolate.image.build import (
    BuildContext,
    BuildError,
    BuildOptions,
    BuildPlan,
    DockerfileError,
    host_platform,
    parse,
    parse_stages,
)
from isolate.image.build.plan import make_plan

BASE_CONFIG: dict[str, Any] = {"Env": ["PATH=/usr/bin:/bin", "BASE=1"], "Cmd": ["sh"],
                               "OnBuild": None}


def fake_image(name: str) -> Image:
    digest = "sha256:" + format(abs(hash(name)), "x").rjust(64, "0")[:64]
    p = host_platform()
    return Image(digest, digest, "application/vnd.oci.image.manifest.v1+json", ImageConfig(),
                 Platform(p.os, p.architecture), (), ())


class Images:
    def __init__(self, configs: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.asked: list[str] = []
        self.configs = dict(configs or {})
        self.by_id: dict[str, str] = {}

    def resolve(self, name: str, _location: object) -> Image:
        self.asked.append(name)
        img = fake_image(name)
        self.by_id[img.id] = name
        return img

    def config(self, image: Image) -> dict[str, Any]:
        return self.configs.get(self.by_id[image.id], BASE_CONFIG)


def plan(text: str, context: Path | None = None, images: Images | None = None,
         **options: Any) -> BuildPlan:
    images = images or Images()
    ctx = BuildContext.open(context) if context is not None else None
    return make_plan(parse_stages(parse(text)), ctx, BuildOptions(**options), images.resolve,
                     images.config)


def final_config(p: BuildPlan) -> Mapping[str, Any]:
    return p.stages[-1].steps[-1].config


def test_every_config_instruction_sets_its_field() -> None:
    p = plan("""FROM base
ENV A=1 B="two words"
ENV C $A-x
LABEL version=$A "with space"="v"
EXPOSE 80 8000-8002/udp
VOLUME /data ["/logs"]
VOLUME ["/logs"]
USER app:staff
WORKDIR /srv
WORKDIR sub
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s CMD check
SHELL ["/bin/bash", "-c"]
CMD run it
ENTRYPOINT ["/entry"]
ONBUILD RUN echo child
MAINTAINER someone
""")
    cfg = final_config(p)
    assert cfg["Env"] == ["PATH=/usr/bin:/bin", "BASE=1", "A=1", "B=two words", "C=1-x"]
    assert cfg["Labels"] == {"version": "1", "with space": "v"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {},
                                   "8002/udp": {}}
    # not JSON (it does not start with '['): two words, the second unquoted
    assert cfg["Volumes"] == {"/data": {}, "[/logs]": {}, "/logs": {}}
    assert cfg["User"] == "app:staff" and cfg["WorkingDir"] == "/srv/sub"
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "check"], "Interval": 5_000_000_000}
    assert cfg["Shell"] == ["/bin/bash", "-c"]
    assert cfg["Cmd"] == ["/bin/bash", "-c", "run it"]   # CMD set in this stage survives
    assert cfg["Entrypoint"] == ["/entry"]
    assert cfg["OnBuild"] == ["RUN echo child"]
    assert p.stages[-1].steps[-1].author == "someone"


def test_entrypoint_resets_an_inherited_cmd() -> None:
    assert "Cmd" not in final_config(plan("FROM base\nENTRYPOINT x\n"))
    assert final_config(plan("FROM base\nENTRYPOINT x\n"))["Entrypoint"] == [
        "/bin/sh", "-c", "x"]


def test_substitution_happens_where_docker_does_it_and_nowhere_else() -> None:
    p = plan("""FROM base
ENV V=val
RUN echo $V
CMD echo $V
ENTRYPOINT ["echo", "$V"]
WORKDIR /w/$V
USER $V
LABEL l=$V
STOPSIGNAL ${SIG:-SIGTERM}
""")
    steps = p.stages[0].steps
    run = steps[2].run
    assert run is not None and run.argv == ("/bin/sh", "-c", "echo $V")  # the shell's job
    cfg = final_config(p)
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo $V"]
    assert cfg["Entrypoint"] == ["echo", "$V"]
    assert (cfg["WorkingDir"], cfg["User"], cfg["Labels"], cfg["StopSignal"]) == (
        "/w/val", "val", {"l": "val"}, "SIGTERM")


def test_env_in_one_instruction_sees_the_values_from_before_it() -> None:
    cfg = final_config(plan("FROM base\nENV A=1\nENV A=2 B=$A\n"))
    assert "B=1" in cfg["Env"] and "A=2" in cfg["Env"]


def test_env_wins_over_arg_of_the_same_name() -> None:
    cfg = final_config(plan("FROM base\nARG X=fromarg\nENV X=fromenv\nLABEL x=$X\n",
                            build_args={"X": "cli"}))
    assert cfg["Labels"] == {"x": "fromenv"}


def test_arg_scopes() -> None:
    images = Images()
    p = plan("""ARG TAG=1
ARG GLOBAL=g
FROM base:$TAG
ARG GLOBAL
ARG LOCAL=l-$GLOBAL
ARG TARGETARCH
LABEL tag=${TAG:-unset} global=$GLOBAL local=$LOCAL arch=$TARGETARCH
RUN true
""", images=images, build_args={"TAG": "2", "HTTP_PROXY": "http://proxy:3128"})
    assert images.asked == ["base:2"]  # ARG before FROM is used in FROM
    cfg = final_config(p)
    assert cfg["Labels"] == {"tag": "unset", "global": "g", "local": "l-g",
                             "arch": host_platform().architecture}
    run = p.stages[0].steps[-1].run
    assert run is not None
    env = dict(run.env)
    # declared args are in the RUN environment; proxies are there without declaration
    assert env["LOCAL"] == "l-g" and env["HTTP_PROXY"] == "http://proxy:3128"
    assert "TAG" not in env
    assert "HTTP_PROXY" not in (p.stages[0].steps[-1].created_by or "")


def test_unused_build_args_are_a_warning() -> None:
    p = plan("FROM base\nARG USED\n", build_args={"USED": "1", "UNUSED": "2"})
    assert any("UNUSED" in w and "USED'" not in w.replace("UNUSED", "") for w in p.warnings)


def test_target_skips_stages_it_does_not_need() -> None:
    images = Images()
    text = """FROM one AS a
RUN a
FROM two AS b
RUN b
FROM three AS c
COPY --from=a /x /x
"""
    p = plan(text, images=images, target="c")
    assert [s.label for s in p.stages] == ["a", "c"]
    assert p.skipped == ("b",)
    assert "two" not in images.asked  # the skipped stage's base is never even looked up
    p = plan(text, images=Images(), target="b")
    assert [s.label for s in p.stages] == ["b"]


def test_stages_run_after_what_they_depend_on() -> None:
    p = plan("""FROM base AS final
COPY --from=builder /out /out
RUN --mount=type=bind,from=tools,target=/t true
FROM base AS builder
FROM base AS tools
""", target="final")
    assert [s.label for s in p.stages] == ["builder", "tools", "final"]


def test_from_an_earlier_stage_and_by_index() -> None:
    p = plan("FROM base AS a\nENV A=1\nFROM a\nCOPY --from=0 /x /y\n")
    assert p.stages[-1].base_kind == "stage" and p.stages[-1].base_stage == 0
    assert "A=1" in final_config(p)["Env"]


def test_a_cycle_of_stages_is_an_error() -> None:
    with pytest.raises(BuildError, match="circular dependency"):
        plan("FROM base AS a\nCOPY --from=b /x /x\nFROM base AS b\nCOPY --from=a /y /y\n")


def test_unknown_target_and_self_reference_are_errors() -> None:
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        plan("FROM base\n", target="nope")
    with pytest.raises(BuildError, match="current or a later"):
        plan("FROM base\nCOPY --from=0 /x /y\n")


def test_only_the_host_platform_is_built() -> None:
    with pytest.raises(BuildError, match="host platform"):
        plan("FROM --platform=linux/s390x base\n")
    with pytest.raises(BuildError, match="host platform"):
        plan("FROM base\n", platform="linux/riscv64")
    plan("FROM --platform=$BUILDPLATFORM base\n", platform=str(host_platform()))


def test_onbuild_triggers_of_the_base_run_first() -> None:
    images = Images({"parent": {"Env": [], "OnBuild": ["ENV FROM_TRIGGER=1",
                                                      "LABEL t=$FROM_TRIGGER"]}})
    p = plan("FROM parent\nENV MINE=1\n", images=images)
    steps = p.stages[0].steps
    assert [s.text for s in steps[1:]] == ["ENV FROM_TRIGGER=1", "LABEL t=$FROM_TRIGGER",
                                           "ENV MINE=1"]
    cfg = final_config(p)
    assert cfg["Labels"] == {"t": "1"} and not cfg.get("OnBuild")  # not inherited further


def test_labels_option_goes_on_the_final_image() -> None:
    p = plan("FROM base\nLABEL a=1\n", labels={"b": "2", "a": "override"})
    assert final_config(p)["Labels"] == {"a": "override", "b": "2"}


@pytest.mark.parametrize(("text", "message"), [
    ("FROM base\nEXPOSE 70000\n", "invalid port"),
    ("FROM base\nEXPOSE 80/quic\n", "invalid protocol"),
    ("FROM base\nSTOPSIGNAL SIGNOPE\n", "invalid signal"),
    ("FROM base\nCOPY --chmod=999 a /b\n", "octal"),
    ("FROM base\nCOPY a b /c\n", "must be a directory and end with a /"),
    ("FROM base\nENV A=${B\n", "missing '}'"),
    ("FROM ${NOPE}\n", "should not be blank"),
    ("FROM base\nADD --checksum=md5:1 http://x/y /z\n", "sha256"),
    ("FROM base\nADD --checksum=sha256:" + "0" * 64 + " local /z\n", "only supported for HTTP"),
    ("FROM base\nADD git@github.com:x/y.git /z\n", "git sources"),
    ("FROM base\nCOPY --exclude=*.md . /z/\n", "not supported"),
])
def test_bad_values_found_while_planning(text: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "local").write_text("l")
    with pytest.raises((DockerfileError, BuildError), match=message) as info:
        plan(text, context=tmp_path)
    assert info.value.location is not None


# -- cache keys ------------------------------------------------------------------------------

def keys(text: str, context: Path | None = None, **options: Any) -> list[str]:
    return [s.key for s in plan(text, context, **options).steps]


DOCKERFILE = "FROM base\nARG V=1\nCOPY app /app\nRUN make\nENV X=1\nRUN test\n"


def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "main.c").write_text("int main(){}")
    (tmp_path / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "app" / "run.sh", 0o755)
    return tmp_path


def test_keys_are_stable(tmp_path: Path) -> None:
    assert keys(DOCKERFILE, app(tmp_path)) == keys(DOCKERFILE, app(tmp_path))


def test_a_changed_file_changes_its_copy_and_everything_after(tmp_path: Path) -> None:
    before = keys(DOCKERFILE, app(tmp_path))
    (tmp_path / "app" / "main.c").write_text("int main(){return 1;}")
    after = keys(DOCKERFILE, tmp_path)
    assert before[:2] == after[:2]  # FROM, ARG
    assert all(b != a for b, a in zip(before[2:], after[2:], strict=True))


def test_a_mode_change_counts_but_a_touch_does_not(tmp_path: Path) -> None:
    before = keys(DOCKERFILE, app(tmp_path))
    os.utime(tmp_path / "app" / "main.c", (1, 1))
    assert keys(DOCKERFILE, tmp_path) == before
    os.chmod(tmp_path / "app" / "main.c", 0o600)
    assert keys(DOCKERFILE, tmp_path)[2] != before[2]


def test_an_ignored_file_does_not_count(tmp_path: Path) -> None:
    app(tmp_path)
    (tmp_path / ".dockerignore").write_text("app/*.log\n")
    before = keys(DOCKERFILE, tmp_path)
    (tmp_path / "app" / "debug.log").write_text("noise")
    assert keys(DOCKERFILE, tmp_path) == before


def test_a_changed_build_arg_misses_at_its_first_use_not_at_its_definition(
        tmp_path: Path) -> None:
    a = keys(DOCKERFILE, app(tmp_path), build_args={"V": "1"})
    b = keys(DOCKERFILE, app(tmp_path), build_args={"V": "2"})
    # FROM, ARG and the COPY (which does not use V) hit; the RUN (V is in its env) misses
    assert a[:3] == b[:3]
    assert a[3] != b[3]


def test_a_secret_never_enters_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "FROM base\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n"
    monkeypatch.setenv("TOK", "one")
    a = keys(text, secrets=["id=tok,env=TOK"])
    monkeypatch.setenv("TOK", "two")
    assert keys(text, secrets=["id=tok,env=TOK"]) == a


def test_a_bind_mount_from_the_context_keys_on_its_content(tmp_path: Path) -> None:
    app(tmp_path)
    text = "FROM base\nRUN --mount=target=/src,source=app make -C /src\n"
    before = keys(text, tmp_path)
    (tmp_path / "app" / "main.c").write_text("changed")
    assert keys(text, tmp_path)[1] != before[1]


def test_copy_sources_outside_the_context_are_refused(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "outside").write_text("secret")
    (ctx / "out-abs").symlink_to(tmp_path / "outside")
    (ctx / "out-rel").symlink_to("../outside")
    (ctx / "in").symlink_to("sub/f")
    (ctx / "sub").mkdir()
    (ctx / "sub" / "f").write_text("ok")
    for source, message in (("../outside", "outside the build context"),
                            ("out-abs", "outside the build context"),
                            ("out-rel", "outside the build context"),
                            ("/etc/passwd", "file not found in build context")):
        with pytest.raises(BuildError, match=message):
            plan(f"FROM base\nCOPY {source} /x\n", ctx)
    # a symlink that stays inside is followed, and the copy keeps the link's name
    p = plan("FROM base\nCOPY in /d/\n", ctx)
    copy = p.stages[0].steps[1].copy
    assert copy is not None and [(s.name, s.path) for s in copy.sources] == [("in", "sub/f")]


def test_globs_match_context_entries(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.md", "dir/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    p = plan("FROM base\nCOPY *.txt */*.txt /out/\n", tmp_path)
    copy = p.stages[0].steps[1].copy
    assert copy is not None
    assert [s.path for s in copy.sources] == ["a.txt", "b.txt", "dir/x.txt"]
    with pytest.raises(BuildError, match="no source files"):
        plan("FROM base\nCOPY *.nothing /out/\n", tmp_path)


def test_remembered_digests_are_used_only_while_a_file_is_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isolate.image.build import context

    # Files made by this test are seconds old at most: let them count as settled.
    monkeypatch.setattr(context, "_RACY_SECONDS", 0.0)
    app(tmp_path)
    old = time.time() - 60
    time.sleep(0.01)
    first = BuildContext.open(tmp_path)
    digest = first.digest("app")
    remembered = first.remembered()
    assert set(remembered) == {"app/main.c", "app/run.sh"}
    # a second build reads nothing it remembers...
    second = BuildContext.open(tmp_path)
    second.known = {k: [*v[:-1], "0" * 64] for k, v in remembered.items()}  # poisoned
    assert second.digest("app") != digest  # proves the remembered value was used
    # ...unless the file changed (same size, same mtime: the ctime still moves)
    (tmp_path / "app" / "main.c").write_text("int main(){}")
    os.utime(tmp_path / "app" / "main.c", (old, old))  # the ctime moved all the same
    third = BuildContext.open(tmp_path)
    third.known = {k: [*v[:-1], "0" * 64] for k, v in remembered.items()}
    assert third.digest("app/main.c") == first.digest("app/main.c")


def test_a_file_changed_just_now_is_not_remembered(tmp_path: Path) -> None:
    app(tmp_path)
    ctx = BuildContext.open(tmp_path)
    ctx.digest("app")
    assert ctx.remembered() == {}
