"""Every refusal of the container commands is one line on stderr, nothing on stdout, exit 125
(126/127 where an exec cannot run), Docker's words where Docker has them, never a traceback;
and nothing is left half-made."""

from __future__ import annotations

import pytest

from cli.conftest import Isolate, foreground

pytestmark = pytest.mark.root


def refused(cli: Isolate, *args: str, code: int = 125, input: str | None = None) -> str:
    proc = cli(*args, input=input)
    assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    # inspect prints the objects it found, an empty array when none, as Docker's does.
    assert proc.stdout in (("", "[]\n") if "inspect" in args else ("",)), (args, proc.stdout)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("isolate"), (args, proc.stderr)
    return lines[0]


def test_a_name_in_use(isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("create", "--name", "taken", "busybox").strip()
    line = refused(isolate_cli, "create", "--name", "taken", "busybox")
    assert line == (f'isolate: Conflict. The container name "/taken" is already in use by '
                    f'container "{cid}". You have to remove (or rename) that container to be '
                    "able to reuse that name.")
    other = isolate_cli.ok("create", "--name", "other", "busybox").strip()
    assert "already in use" in refused(isolate_cli, "rename", "other", "taken")
    assert "already in use" in refused(isolate_cli, "run", "--name", "taken", "busybox", "true")
    assert isolate_cli.ok("ps", "-a", "-q", "--no-trunc").split().count(other) == 1
    assert len(isolate_cli.ok("ps", "-a", "-q", "-f", "name=taken").split()) == 1


def test_an_unknown_id_and_an_ambiguous_prefix(isolate_cli: Isolate) -> None:
    assert refused(isolate_cli, "inspect", "--type", "container", "nosuch") == \
        "isolate: No such container: nosuch"
    for verb in ("start", "stop", "kill", "rm", "logs", "pause", "wait", "port", "diff",
                 "top", "export", "restart"):
        assert refused(isolate_cli, verb, "nosuch") == "isolate: No such container: nosuch"
    assert "No such container" in refused(isolate_cli, "exec", "nosuch", "true")
    # Two containers whose ids begin alike: make them until two do (17 at most).
    by_first: dict[str, str] = {}
    while True:
        cid = isolate_cli.ok("create", "busybox").strip()
        if cid[0] in by_first:
            break
        by_first[cid[0]] = cid
    assert refused(isolate_cli, "rm", cid[0]) == \
        f"isolate: Multiple IDs found with provided prefix: {cid[0]}"
    assert isolate_cli.ok("rm", cid[:20]) == cid[:20] + "\n"  # a longer prefix is unique


def test_lifecycle_moves_that_are_not_legal(isolate_cli: Isolate) -> None:
    created = isolate_cli.ok("create", "--name", "still", "busybox").strip()
    with foreground(isolate_cli, "busy", "-v", "v-inuse:/data"):
        cid = isolate_cli.ok("inspect", "-f", "{{.Id}}", "busy").strip()
        assert refused(isolate_cli, "start", "busy") == \
            f"isolate: Container {cid} is already running"
        assert refused(isolate_cli, "rm", "busy") == (
            f"isolate: You cannot remove a running container {cid}. Stop the container "
            "before attempting removal or force remove")
        assert refused(isolate_cli, "volume", "rm", "v-inuse") == \
            f"isolate: remove v-inuse: volume is in use - [{cid}]"
        assert refused(isolate_cli, "unpause", "busy") == \
            f"isolate: Container {cid} is not paused"
        isolate_cli.ok("pause", "busy")
        assert refused(isolate_cli, "exec", "busy", "true") == \
            f"isolate: Container {cid} is paused, unpause the container before exec"
        assert "paused" in refused(isolate_cli, "pause", "busy")
        isolate_cli.ok("unpause", "busy")
        assert isolate_cli.status("busy") == "running"
    assert refused(isolate_cli, "exec", "still", "true") == \
        f"isolate: Container {created} is not running"
    assert refused(isolate_cli, "kill", "still") == \
        f"isolate: Cannot kill container: {created}: Container {created} is not running"
    assert refused(isolate_cli, "pause", "still") == \
        f"isolate: Container {created} is not running"
    assert "not running" in refused(isolate_cli, "top", "still")
    assert "start it first" in refused(isolate_cli, "attach", "still")
    # stop of a container that is not running is no error, as in Docker.
    assert isolate_cli.ok("stop", "still") == "still\n"


def test_several_at_once_do_what_they_can_and_report_each_failure(
        isolate_cli: Isolate) -> None:
    isolate_cli.ok("create", "--name", "one", "busybox")
    proc = isolate_cli("rm", "one", "ghost", "also-ghost")
    assert proc.returncode == 125 and proc.stdout == "one\n"
    assert proc.stderr.splitlines() == ["isolate: No such container: ghost",
                                        "isolate: No such container: also-ghost"]


@pytest.mark.parametrize(("command", "code"), [(["nosuchcommand"], 127),
                                               (["/etc/passwd"], 126), (["/etc"], 126)])
def test_exec_failures_are_126_and_127(isolate_cli: Isolate, command: list[str],
                                       code: int) -> None:
    with foreground(isolate_cli, "execfail"):
        refused(isolate_cli, "exec", "execfail", *command, code=code)


BAD_RUNS = [
    ["--memory", "lots"], ["--memory", "1k"], ["--cpus", "-1"], ["--cpus", "x"],
    ["--pids-limit", "many"], ["--memory-swap", "1g"], ["-m", "64m", "--memory-swap", "1m"],
    ["--restart", "sometimes"], ["--restart", "on-failure:x"], ["--rm", "--restart", "always"],
    ["--stop-signal", "SIGNOPE"], ["--stop-timeout", "soon"], ["-v", "relative:"],
    ["-v", "a:b:c:d"], ["-v", "/x:/y:rx"], ["--mount", "type=nfs,target=/x"],
    ["--mount", "target"], ["--mount", "type=bind,target=/x"], ["--tmpfs", "/t:size=huge"],
    ["--tmpfs", "relative"], ["-w", "relative/dir"], ["--cap-add", "CAP_FLY"],
    ["--security-opt", "seccomp=/no/such/profile.json"], ["--security-opt", "bogus"],
    ["--security-opt", "apparmor=strict"], ["--ulimit", "nofile"], ["--ulimit", "nofile=x"],
    ["--name", "bad name"], ["--name", "x"], ["-h", "bad_host!"], ["--network", "no such!"],
    ["--network", "container:"], ["--network", "host", "-h", "box"],
    ["--network", "none", "-p", "80"],
    ["-p", "99999:80"], ["--dns", "not-an-ip"], ["--add-host", "nohost"],
    ["--add-host", "gw:host-gateway"],
    ["--log-driver", "syslog"], ["--log-opt", "max-file=3"], ["--log-opt", "colour=red"],
    ["--env-file", "/no/such/env"], ["-e", "=x"], ["--label-file", "/no/such"],
    ["--sysctl", "novalue"], ["--cidfile", "/no/such/dir/cid"], ["-a", "stdweird"],
    ["--detach-keys", "ctrl-1"], ["--pull", "sometimes"], ["--user", "a:b:c"],
    ["--user", "nosuchuser"], ["--group-add", "nosuchgroup"], ["--shm-size", "big"],
    ["--cpu-shares", "lots"], ["--cpuset-cpus", "1-0"],
    ["-d", "-a", "stdout"], ["--overlay", "fuse"], ["--timeout", "5"], ["--rw"],
    ["--best-effort"], ["--device", "/etc/passwd"], ["--device", "/dev/nosuch:/dev/x"],
    ["--device", "/dev/null:/dev/x:rwz"], ["--no-such-flag"],
    ["--pull", "never", "no/such/image"],
    ["--pull", "never", "Bad Ref!"],
]


@pytest.mark.parametrize("flags", BAD_RUNS, ids=lambda f: " ".join(f))
def test_a_bad_run_is_one_line_and_makes_nothing(isolate_cli: Isolate,
                                                 flags: list[str]) -> None:
    before = isolate_cli.ok("ps", "-a", "-q")
    args = flags if flags[:2] == ["--pull", "never"] else [*flags, "busybox", "true"]
    refused(isolate_cli, "run", *args)
    assert isolate_cli.ok("ps", "-a", "-q") == before


BAD_COMMANDS = [
    ["ps", "--format", "{{.ID"], ["ps", "-a", "--format", "{{.Nope.Deeper}}"],
    ["ps", "-f", "x"], ["ps", "-f", "colour=blue"], ["ps", "-f", "status=sleeping"],
    ["ps", "-n", "x"], ["inspect", "-f", "{{if}}", "busybox"],
    ["inspect", "--type", "network", "x"], ["logs", "--tail", "x", "c"],
    ["logs", "--since", "yesterday", "probe"], ["stop", "-t", "x", "probe"],
    ["kill", "-s", "SIGNOPE", "probe"], ["volume", "create", "bad name"],
    ["volume", "create", "-d", "nfs"], ["volume", "ls", "-f", "colour=blue"],
    ["volume", "inspect", "ghost"], ["volume", "rm", "ghost"], ["exec", "probe"],
    ["create"], ["start"], ["top", "probe", "aux"], ["cp", "-", "-"],
    ["commit", "probe", "Bad Ref!"], ["commit", "-c", "FROM x", "probe"],
    ["rename", "probe", "bad name"], ["container"], ["volume"], ["nosuchcommand"],
    ["container", "prune", "-f", "--filter", "colour=blue"], ["stats", "--no-stream", "ghost"],
    ["port", "probe", "80"], ["export", "-o", "/no/such/dir/x.tar", "probe"],
]


@pytest.mark.parametrize("args", BAD_COMMANDS, ids=lambda a: " ".join(a))
def test_bad_input_to_any_command_is_one_line(isolate_cli: Isolate, args: list[str]) -> None:
    isolate_cli.ok("create", "--name", "probe", "busybox")
    refused(isolate_cli, *args)
