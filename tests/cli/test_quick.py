"""The quick parser of ``isolate run`` against argparse: on every command line it takes, the
same namespace; the others it leaves to argparse. No root needed: nothing runs."""

from __future__ import annotations

import argparse
import random

import pytest

from isolate.cli import _common, _quick, build_parser, run

# Command lines of every shape the quick parser meets, and ones it must leave to argparse.
LINES = [
    [],
    ["--", "/bin/true"],
    ["/bin/true"],
    ["busybox", "ls", "-l"],
    ["--rm", "busybox", "ls", "--rm"],
    ["--", "--", "x"],
    ["--", "sh", "-c", "--memory 1"],
    ["-m", "64M", "--", "sh"],
    ["--memory=64M", "--memory-swap", "128M", "--", "sh"],
    ["-v", "/a:/b", "-v", "/c:/d:rw", "--bind=/e:/f", "--", "ls"],
    ["-e", "A=1", "--env", "B", "-e=C", "--", "env"],
    ["--env", "A=1", "-e", "B=2", "busybox"],
    ["--hostname", "box", "-h", "other", "--", "hostname"],
    ["-h"],
    ["--help"],
    ["--pull", "always", "img"],
    ["--pull", "sometimes", "img"],
    ["--pull=", "img"],
    ["--overlay", "fuse", "--image", "img", "true"],
    ["--net", "none", "--network", "host", "--", "true"],
    ["--network", "bridge", "-p", "80:80", "-p", "8080", "img"],
    ["--rw", "--privileged", "--init", "--best-effort", "--", "true"],
    ["--rw=yes", "--", "true"],
    ["--rm", "-d", "--name", "web", "img"],
    ["-it", "img", "sh"],
    ["-i", "-t", "img", "sh"],
    ["-m64M", "--", "true"],
    ["--mem", "64M", "--", "true"],
    ["--memory"],
    ["--memory", "--", "true"],
    ["--cpus", "-1", "--", "true"],
    ["--cpus=-1", "--", "true"],
    ["--pids-limit", "-1", "--", "true"],
    ["--timeout", "5", "--stop-timeout", "1", "--", "sleep", "9"],
    ["--user", "1000:1000", "-w", "/tmp", "--", "id"],
    ["-u", "nobody", "--workdir=/", "img"],
    ["--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "img"],
    ["--device", "/dev/fuse", "--tmpfs", "/run", "--", "true"],
    ["--read-only", "--entrypoint", "", "img", "true"],
    ["--entrypoint=", "img"],
    ["--rootfs", "/srv/root", "true"],
    ["--store", "/var/tmp/s", "img"],
    ["--sig-proxy", "false", "img"],
    ["--sig-proxy", "maybe", "img"],
    ["--log-opt", "max-size=1m", "--log-opt", "max-file=2", "img"],
    ["--restart", "on-failure:3", "--stop-signal", "SIGINT", "img"],
    ["-", "x"],
    ["-1"],
    ["--unknown", "--", "true"],
    ["--name"],
    ["-P", "--expose", "80", "img"],
    ["--mount", "type=tmpfs,target=/x", "--volume", "/y", "img"],
    ["--add-host", "a:1.2.3.4", "--dns", "9.9.9.9", "img"],
    ["--label", "a=b", "-l", "c=d", "img"],
    ["--ulimit", "nofile=10:20", "--sysctl", "net.ipv4.ip_forward=1", "img"],
    ["--detach-keys", "ctrl-a", "-a", "stdout", "img"],
    ["--memory", "64M", "--memory", "32M", "--", "true"],
    ["--hostname", "a", "--hostname=b", "--", "true"],
]


def _argparse(words: list[str]) -> dict[str, object] | None:
    try:
        return vars(build_parser("run").parse_args(["run", *words]))
    except SystemExit:  # --help
        return None
    except Exception as exc:  # a usage error
        return {"error": type(exc).__name__}


def _quick_parse(words: list[str]) -> dict[str, object] | None:
    args = _quick.parse(run.run_options(), run.COMMAND, words)
    if args is None:
        return None
    values = vars(args)
    values["handler"] = run.run_command
    return values


@pytest.mark.parametrize("words", LINES, ids=[" ".join(w) or "(none)" for w in LINES])
def test_the_quick_parser_agrees_with_argparse_or_leaves_it_the_line(words: list[str]) -> None:
    quick = _quick_parse(words)
    if quick is None:
        return  # argparse's to parse
    assert quick == _argparse(words)
    # Not only the values: the same types (a Default stays a Default, lists stay lists).
    for key, value in quick.items():
        assert type(value) is type(_argparse(words)[key]), key  # type: ignore[index]


def test_the_quick_parser_takes_the_common_lines_and_leaves_the_hard_ones() -> None:
    taken = {" ".join(w) for w in LINES if _quick_parse(w) is not None}
    assert {"-- /bin/true", "-m 64M -- sh", "--env A=1 -e B=2 busybox", "--rm -d --name web img",
            "-v /a:/b -v /c:/d:rw --bind=/e:/f -- ls"} <= taken
    for hard in ("--help", "-h", "-it img sh", "-m64M -- true", "--mem 64M -- true",
                 "--memory", "--cpus -1 -- true", "--pull sometimes img", "--rw=yes -- true",
                 "--unknown -- true", "-1", "--sig-proxy maybe img"):
        assert hard not in taken, hard


def test_random_lines_agree_with_argparse() -> None:
    """Random command lines made of the flags' spellings, values and plain words."""
    spellings = sorted({f for flags, _ in run.run_options() for f in flags})
    words = [*spellings, "--", "-", "img", "sh", "x=1", "64M", "none", "always", "true",
             "false", "-1", "=", "--rm=1", ""]
    rng = random.Random(8)
    agreed = 0
    for _ in range(3000):
        line = [rng.choice(words) for _ in range(rng.randint(0, 6))]
        quick = _quick_parse(line)
        if quick is not None:
            assert quick == _argparse(line), line
            agreed += 1
    assert agreed > 300  # (so the check above checks something)


def test_the_flags_as_data_use_argparses_own_constants() -> None:
    assert _common.SUPPRESS == argparse.SUPPRESS
    assert _common.REMAINDER == argparse.REMAINDER


def test_every_flag_of_run_is_one_the_quick_parser_reads() -> None:
    # A flag with a type, nargs, const or another action would turn the quick parser off for
    # every run (it cannot read it as argparse would): keep run's flags to what it reads.
    for flags, kw in run.run_options():
        assert kw.get("action", "store") in ("store", "store_true", "store_false", "append"), flags
        assert not kw.keys() & {"type", "nargs", "const", "required"}, flags
    assert _quick.parse(run.run_options(), run.COMMAND, ["--", "true"]) is not None
