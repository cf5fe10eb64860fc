"""Typed instruction records: every instruction and flag, and the errors for bad ones."""

from __future__ import annotations

import pytest

from isolate.image.build import DockerfileError, parse, parse_stages
from isolate.image.build import instructions as ins


def one(line: str) -> ins.Instruction:
    parsed = parse_stages(parse(f"FROM scratch\n{line}\n"))
    return parsed.stages[0].instructions[0]


def error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse_stages(parse(text))
    return info.value


def test_from_forms() -> None:
    parsed = parse_stages(parse("ARG V=1\nFROM --platform=$BUILDPLATFORM a:${V} AS Build\n"
                                "FROM b@sha256:" + "0" * 64 + "\nFROM build\n"))
    assert [a.args for a in parsed.meta_args] == [(("V", "1"),)]
    first = parsed.stages[0].from_
    assert (first.image, first.name, first.platform) == ("a:${V}", "build", "$BUILDPLATFORM")
    assert parsed.stages[1].name is None and parsed.stages[1].label == "stage-1"
    assert parsed.stages[2].from_.image == "build"


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a AS\n", "one or three arguments"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a b c d\n", "one or three arguments"),
    ("FROM a AS x\nFROM b AS X\n", "duplicate stage name 'x'"),
    ("RUN x\n", "RUN before the first FROM"),
    ("ARG a\n", "no FROM instruction"),
    ("FROM a\nRUNN x\n", "unknown instruction: RUNN \\(did you mean RUN\\?\\)"),
    ("FROM a\nCOPY --form=b x y\n", "unknown flag: --form \\(did you mean --from\\?\\)"),
    ("FROM a\nCOPY --from=b --from=c x y\n", "duplicate flag"),
    ("FROM a\nCOPY --link=maybe x y\n", "expecting boolean"),
    ("FROM a\nCOPY --chown x y\n", "missing a value on flag: --chown"),
    ("FROM a\nCOPY x\n", "at least two arguments"),
    ("FROM a\nCOPY x <<EOF\nhi\nEOF\n", "cannot be the destination"),
    ("FROM a\nRUN --network=mynet x\n", "unsupported network mode"),
    ("FROM a\nRUN --network=container:x x\n", "unsupported network mode"),
    ("FROM a\nRUN --security=insecure x\n", "not allowed"),
    ("FROM a\nRUN --mount=type=ssh x\n", "not supported"),
    ("FROM a\nRUN --mount=type=nfs,target=/x x\n", "unsupported mount type"),
    ("FROM a\nRUN --mount=type=cache x\n", "a target is required"),
    ("FROM a\nRUN --mount=type=tmpfs,target=/x,id=1 x\n", "unexpected key 'id'"),
    ("FROM a\nRUN --mount=type=cache,target=/x,sharing=some x\n", "unsupported sharing"),
    ("FROM a\nRUN --mount=type=secret,id=a,source=b x\n", "both source and id"),
    ("FROM a\nRUN --mount=target=/x,from=$S x\n", "doesn't support variable expansion"),
    ("FROM a\nRUN --mount=type=bind x\n", "a target is required"),
    ("FROM a\nRUN\n", "at least 1 argument"),
    ('FROM a\nRUN ["a", 1]\n', "strings only"),
    ("FROM a\nSHELL /bin/bash -c\n", "JSON form"),
    ("FROM a\nENV\n", "at least one argument"),
    ("FROM a\nENV onlykey\n", "must have two arguments"),
    ("FROM a\nENV a=1 b\n", "can't find = in 'b'"),
    ("FROM a\nWORKDIR a b\n", "exactly 1 argument"),
    ("FROM a\nUSER\n", "exactly 1 argument"),
    ("FROM a\nVOLUME [\"\"]\n", "empty string"),
    ("FROM a\nHEALTHCHECK NONE x\n", "no arguments"),
    ("FROM a\nHEALTHCHECK --interval=5 CMD x\n", "is not a duration"),
    ("FROM a\nHEALTHCHECK --timeout=1us CMD x\n", "less than 1ms"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "negative"),
    ("FROM a\nHEALTHCHECK PING x\n", "unknown type"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "isn't allowed"),
    ("FROM a\nONBUILD FROM x\n", "isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD RUNN x\n", "unknown instruction"),
    ("FROM a\nADD --checksum x y\n", "missing a value"),
])
def test_bad_instructions_are_errors_with_a_location(text: str, message: str) -> None:
    err = error(text)
    assert err.location is not None
    import re
    assert re.search(message, str(err)), str(err)
    assert str(err).startswith(f"Dockerfile:{err.location.line}:")


def test_errors_point_at_the_line_and_the_flag() -> None:
    err = error("FROM a\n\n  COPY --chown=1 --bogus x y\n")
    assert err.location is not None
    assert (err.location.line, err.location.column) == (3, 18)


def test_run_forms_and_flags() -> None:
    run = one("RUN --mount=type=cache,target=/root/.cache,sharing=locked "
              "--mount=type=secret,id=tok --network=none echo $HOME")
    assert isinstance(run, ins.Run)
    assert run.command == "echo $HOME"  # not expanded: the shell does that
    assert run.network == "none"
    # isolate's extension: BuildKit knows default, none and host only
    assert one("RUN --network=bridge true").network == "bridge"  # type: ignore[attr-defined]
    assert [(m.kind, m.get("target"), m.get("sharing")) for m in run.mounts] == [
        ("cache", "/root/.cache", "locked"), ("secret", None, None)]
    assert one('RUN ["echo", "a b"]').command == ("echo", "a b")  # type: ignore[attr-defined]
    # not valid JSON: shell form, as Docker reads it
    assert one("RUN [not json").command == "[not json"  # type: ignore[attr-defined]
    bind = one("RUN --mount=target=/src,source=app,rw x").mounts[0]  # type: ignore[attr-defined]
    assert bind.kind == "bind" and bind.get("readwrite") == "true"


def test_cmd_entrypoint_shell() -> None:
    assert one("CMD [\"a\"]").command == ("a",)  # type: ignore[attr-defined]
    assert one("CMD a b").command == "a b"  # type: ignore[attr-defined]
    assert one("ENTRYPOINT []").command == ()  # type: ignore[attr-defined]
    assert one('SHELL ["/bin/bash", "-eu", "-c"]').shell == (  # type: ignore[attr-defined]
        "/bin/bash", "-eu", "-c")


def test_env_label_arg_forms() -> None:
    assert one('ENV A=1 B="two words" C=a\\ b').pairs == (  # type: ignore[attr-defined]
        ("A", "1"), ("B", '"two words"'), ("C", "a\\ b"))
    assert one("ENV OLD a value with  spaces").pairs == (  # type: ignore[attr-defined]
        ("OLD", "a value with  spaces"),)
    assert one('LABEL "com.x"="y z" a=b').pairs == (  # type: ignore[attr-defined]
        ('"com.x"', '"y z"'), ("a", "b"))
    assert one("ARG A B=2 C=").args == (  # type: ignore[attr-defined]
        ("A", None), ("B", "2"), ("C", ""))


def test_copy_and_add_flags() -> None:
    copy = one("COPY --from=build --chown=app:staff --chmod=0640 --link a b* /dst/")
    assert isinstance(copy, ins.Copy)
    assert (copy.sources, copy.dest, copy.from_, copy.chown, copy.chmod, copy.link) == (
        ("a", "b*"), "/dst/", "build", "app:staff", "0640", True)
    assert one('COPY ["a b", "/c d/"]').sources == ("a b",)  # type: ignore[attr-defined]
    add = one("ADD --checksum=sha256:00 --chown=1 --chmod=600 http://x/y /z")
    assert isinstance(add, ins.Add)
    assert (add.checksum, add.chown, add.chmod, add.sources) == (
        "sha256:00", "1", "600", ("http://x/y",))
    inline = one("COPY <<EOF /etc/motd\nhello\nEOF")
    assert isinstance(inline, ins.Copy)
    assert inline.sources == () and inline.inline[0].content == "hello\n"


def test_the_other_instructions() -> None:
    assert one("EXPOSE 80 443/udp").ports == ("80", "443/udp")  # type: ignore[attr-defined]
    assert one('VOLUME ["/a", "/b"]').paths == ("/a", "/b")  # type: ignore[attr-defined]
    assert one("VOLUME /a /b").paths == ("/a", "/b")  # type: ignore[attr-defined]
    assert one("USER app:staff").user == "app:staff"  # type: ignore[attr-defined]
    assert one("WORKDIR $HOME/x").path == "$HOME/x"  # type: ignore[attr-defined]
    assert one("STOPSIGNAL SIGQUIT").signal == "SIGQUIT"  # type: ignore[attr-defined]
    assert one("MAINTAINER Jane <j@x>").name == "Jane <j@x>"  # type: ignore[attr-defined]
    hc = one("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
             "--start-interval=1s --retries=3 CMD curl -f http://x/")
    assert isinstance(hc, ins.Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl -f http://x/")
    assert (hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        90_000_000_000, 500_000_000, 2_000_000_000, 1_000_000_000, 3)
    assert one('HEALTHCHECK CMD ["true"]').test == ("CMD", "true")  # type: ignore[attr-defined]
    assert one("HEALTHCHECK NONE").test == ("NONE",)  # type: ignore[attr-defined]
    ob = one("ONBUILD COPY . /app")
    assert isinstance(ob, ins.Onbuild)
    assert ob.expression == "COPY . /app" and isinstance(ob.trigger, ins.Copy)
