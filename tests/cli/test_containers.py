"""The container commands as a user types them: each ``isolate`` a separate process, managing
what the others made (``run``, ``ps``, ``logs -f``, ``exec``, ``stop``, ``start``, ``rm``,
``commit``, ``cp``, ``diff``, ``inspect --format``, volumes), with Docker's output and exit
codes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from cli.conftest import WAIT, Isolate, foreground, read_until

pytestmark = pytest.mark.root


# -- run, attached -----------------------------------------------------------------------------

def test_run_attached_passes_output_and_exits_with_the_containers_status(
        isolate_cli: Isolate) -> None:
    proc = isolate_cli("run", "--name", "att", "busybox", "sh", "-c",
                       "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    # A real container: listed after it exited, with its exit code.
    assert isolate_cli.ok("ps", "-a", "--filter", "name=att", "--format",
                          "{{.Names}} {{.State}}") == "att exited\n"
    assert isolate_cli.ok("inspect", "-f", "{{.State.ExitCode}}", "att") == "3\n"
    assert isolate_cli.ok("logs", "att") == "out\n"


def test_run_rm_removes_the_container_once_it_ended(isolate_cli: Isolate) -> None:
    proc = isolate_cli("run", "--rm", "--name", "gone", "busybox", "sh", "-c", "echo bye")
    assert (proc.returncode, proc.stdout) == (0, "bye\n")
    assert isolate_cli.ok("ps", "-a", "-q", "-f", "name=gone") == ""


def test_run_d_rm_is_removed_when_it_ends_with_no_command_looking(
        isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("run", "-d", "--rm", "--name", "gone-alone", "busybox", "sh", "-c",
                         "exit 3").strip()
    state = isolate_cli.store / "containers" / cid
    deadline = time.monotonic() + WAIT
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # Nothing listed, waited for or removed it: its supervisor did, as Docker's daemon does.
    assert not state.exists()
    assert not (isolate_cli.store / "containers" / "names" / "gone-alone").exists()


def test_a_sigkilled_supervisor_is_reported_dead_and_rm_works(isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("run", "-d", "--name", "orphan", "busybox", "sleep", "100000").strip()
    sup = int(isolate_cli.ok("inspect", "-f", "{{.Isolate.SupervisorPid}}", "orphan"))
    if isolate_cli.ok("inspect", "-f", "{{.Isolate.Supervisor}}", "orphan") != "shim\n":
        pytest.skip("isolate-shim is not built")
    pid = int(isolate_cli.ok("inspect", "-f", "{{.State.Pid}}", "orphan"))
    os.kill(sup, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")  # the container died with its supervisor
    assert isolate_cli.ok("ps", "-a", "-f", "name=orphan", "--format", "{{.State}}") == \
        "dead\n"
    error = isolate_cli.ok("inspect", "-f", "{{.State.Error}}", "orphan")
    assert "supervisor" in error and "died" in error
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
    assert isolate_cli.ok("rm", "orphan") == "orphan\n"
    assert not (isolate_cli.store / "containers" / cid).exists()


def test_run_uses_the_images_cmd_and_the_flags(isolate_cli: Isolate, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=1\n\nSPACED=a b\n")
    out = isolate_cli.ok("run", "--rm", "-e", "A=x", "--env-file", str(env_file), "-w", "/srv",
                         "-h", "box", "-u", "app", "-l", "k=v", "busybox", "sh", "-c",
                         "echo $A $FROM_FILE $SPACED; pwd; hostname; id -un; echo $HOME")
    assert out == "x 1 a b\n/srv\nbox\napp\n/home/app\n"
    assert isolate_cli.ok("run", "--rm", "busybox", "cat", "/etc/marker") == \
        "isolate test image\n"


@pytest.mark.parametrize(("command", "code"), [(["nosuchcommand"], 127),
                                               (["/etc/passwd"], 126)])
def test_run_a_command_that_cannot_be_executed_exits_127_or_126(
        isolate_cli: Isolate, command: list[str], code: int) -> None:
    proc = isolate_cli("run", "--rm", "busybox", *command)
    assert proc.returncode == code
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1


def test_run_proxies_signals_to_the_container(isolate_cli: Isolate) -> None:
    with foreground(isolate_cli, "proxied",
                    script="trap 'echo got TERM; exit 42' TERM; while :; do sleep 0.1; done"
                    ) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 42
        assert proc.stdout is not None and proc.stdout.read() == "got TERM\n"
    assert isolate_cli.status("proxied") == "exited"


# -- the everyday loop ------------------------------------------------------------------------

def test_run_d_ps_logs_exec_stop_start_rm_each_a_command_of_its_own(
        detachable: Isolate) -> None:
    cli = detachable
    script = "echo line1; echo warn >&2; while :; do sleep 0.1; done"
    cid = cli.ok("run", "-d", "--name", "loop", "-e", "MODE=demo", "-l", "tier=web", "busybox",
                 "sh", "-c", script).strip()
    assert len(cid) == 64
    follower = cli.popen("logs", "-f", "loop", stdout=subprocess.PIPE)
    try:
        read_until(follower, "line1")
        # ps: Docker's table, the short id, names, filters, formats.
        table = cli.ok("ps").splitlines()
        assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                    "PORTS", "NAMES"]
        mine = [line for line in table[1:] if line.endswith(" loop")]
        assert len(mine) == 1 and " Up " in mine[0] and mine[0].split()[:2] == [cid[:12],
                                                                              "busybox"]
        assert cli.ok("ps", "-q", "--no-trunc", "-f", "label=tier=web") == cid + "\n"
        assert cli.ok("ps", "-q", "-f", "label=tier=db") == ""
        assert cli.ok("ps", "-q", "-f", "status=running", "-f", "name=loop") == cid[:12] + "\n"
        row = json.loads(cli.ok("ps", "--format", "json", "-f", "name=loop"))
        assert (row["ID"], row["Names"], row["State"], row["Labels"]) == (
            cid[:12], "loop", "running", "tier=web")
        # logs: the streams apart; -t timestamps.
        logs = cli("logs", "loop")
        assert (logs.stdout, logs.stderr) == ("line1\n", "warn\n")
        stamped = cli("logs", "-t", "--tail", "2", "loop")  # of both streams
        when, _, text = stamped.stdout.partition(" ")
        assert text == "line1\n" and when.endswith("Z") and when[:4].isdigit()
        assert stamped.stderr.partition(" ")[2] == "warn\n"
        # exec: the container's environment, hostname, stdin with -i, user, dir.
        assert cli.ok("exec", "loop", "sh", "-c", "echo $MODE $(hostname)") == \
            f"demo {cid[:12]}\n"
        assert cli.ok("exec", "-i", "loop", "cat", input="via stdin\n") == "via stdin\n"
        assert cli("exec", "loop", "sh", "-c", "exit 5").returncode == 5
        assert cli.ok("exec", "-u", "app", "-w", "/tmp", "-e", "X=1", "loop", "sh", "-c",
                      "echo $(id -u) $(pwd) $X") == "1000 /tmp 1\n"
        # stop: SIGTERM, which the shell ignores as pid 1 with no trap: SIGKILL after -t.
        assert cli.ok("stop", "-t", "1", "loop") == "loop\n"
        assert follower.wait(timeout=WAIT) == 0  # logs -f ends with the container
    finally:
        assert follower.stdout is not None
        follower.stdout.close()
    assert cli.ok("ps", "-a", "-f", "name=loop", "--format", "{{.Status}}"
                  ).startswith("Exited (137)")
    assert cli.ok("wait", "loop") == "137\n"
    # start again: a second run of the same container, detached.
    assert cli.ok("start", "loop") == "loop\n"
    assert cli.status("loop") == "running"
    deadline = time.monotonic() + WAIT
    while cli.ok("logs", "loop").count("line1") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert cli("rm", "loop").returncode == 125  # running
    assert cli.ok("rm", "-f", "loop") == "loop\n"
    assert cli("inspect", "loop").returncode == 125


def test_foreground_containers_are_managed_from_other_processes(isolate_cli: Isolate) -> None:
    """The same loop where each container is supervised by the command that started it (an
    attached run): works with either supervisor."""
    with foreground(isolate_cli, "fgloop", "-e", "MODE=demo") as fg:
        assert isolate_cli.ok("ps", "-q", "-f", "name=fgloop") != ""
        assert isolate_cli.ok("exec", "fgloop", "sh", "-c", "echo $MODE") == "demo\n"
        assert isolate_cli.ok("logs", "fgloop") == "ready\n"
        assert isolate_cli.ok("stop", "-t", "1", "fgloop") == "fgloop\n"
        assert fg.wait(timeout=WAIT) == 137
    proc = isolate_cli.popen("start", "-a", "fgloop", stdout=subprocess.PIPE)
    try:
        read_until(proc, "ready")
        assert isolate_cli.ok("kill", "fgloop") == "fgloop\n"
        assert proc.wait(timeout=WAIT) == 137
    finally:
        assert proc.stdout is not None
        proc.stdout.close()
    assert isolate_cli.ok("logs", "fgloop").count("ready\n") == 2
    assert isolate_cli.ok("rm", "fgloop") == "fgloop\n"


def test_wait_rename_pause_unpause_kill_signal(isolate_cli: Isolate) -> None:
    script = "trap 'echo usr1; exit 9' USR1; while :; do sleep 0.1; done"
    with foreground(isolate_cli, "old-name", script=script) as fg:
        isolate_cli.ok("rename", "old-name", "new-name")
        assert isolate_cli.ok("ps", "--format", "{{.Names}}", "-f", "name=new-name") == \
            "new-name\n"
        assert "new-name" in isolate_cli.ok("exec", "new-name", "cat", "/etc/hosts")
        assert isolate_cli.ok("pause", "new-name") == "new-name\n"
        assert isolate_cli.status("new-name") == "paused"
        assert isolate_cli.ok("ps", "--format", "{{.Status}}", "-f", "name=new-name"
                              ).rstrip().endswith("(Paused)")
        assert isolate_cli.ok("unpause", "new-name") == "new-name\n"
        waiter = isolate_cli.popen("wait", "new-name", stdout=subprocess.PIPE)
        assert isolate_cli.ok("kill", "-s", "USR1", "new-name") == "new-name\n"
        assert waiter.communicate(timeout=WAIT)[0] == "9\n"
        assert fg.wait(timeout=WAIT) == 9


def test_stop_honours_the_images_stop_signal(isolate_cli: Isolate) -> None:
    script = "trap 'echo usr1; exit 4' USR1; while :; do sleep 0.1; done"
    with foreground(isolate_cli, "stopsig", image="busybox-vol", script=script) as fg:
        isolate_cli.ok("stop", "stopsig")
        assert fg.wait(timeout=WAIT) == 4
    assert isolate_cli.ok("inspect", "-f", "{{.Config.StopSignal}}", "stopsig") == "SIGUSR1\n"


def test_stop_with_a_signal_sends_that_one_instead(isolate_cli: Isolate) -> None:
    script = "trap 'echo usr1' USR1; trap 'echo term; exit 4' TERM; while :; do sleep 0.1; done"
    with foreground(isolate_cli, "stop-s", script=script) as fg:
        assert isolate_cli.ok("stop", "-s", "USR1", "-t", "2", "stop-s") == "stop-s\n"
        assert fg.wait(timeout=WAIT) == 137  # USR1 handled, then SIGKILL: never TERM
    assert isolate_cli.ok("logs", "stop-s") == "ready\nusr1\n"


def test_top_and_stats_of_a_running_container(isolate_cli: Isolate) -> None:
    with foreground(isolate_cli, "watched", "-m", "64m"):
        top = isolate_cli.ok("top", "watched").splitlines()
        assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        assert any("sleep 100000" in line for line in top[1:])
        table = isolate_cli.ok("stats", "--no-stream", "watched").splitlines()
        assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
        assert "watched" in table[1] and "/ 64MiB" in table[1]
        out = isolate_cli.ok("stats", "--no-stream", "--format",
                             "{{.Name}} {{.PIDs}} {{.MemPerc}}", "watched")
        name, pids, mem = out.split()
        assert name == "watched" and int(pids) >= 1 and mem.endswith("%")
        rows = [json.loads(line) for line in
                isolate_cli.ok("stats", "--no-stream", "--format", "json").splitlines()]
        assert "watched" in [r["Name"] for r in rows]


# -- files ------------------------------------------------------------------------------------

def test_cp_both_ways_and_as_tar_on_stdio(isolate_cli: Isolate, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("to the container\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a").write_text("a\n")
    with foreground(isolate_cli, "files"):
        isolate_cli.ok("cp", str(tmp_path / "in.txt"), "files:/tmp/")
        isolate_cli.ok("cp", str(tmp_path / "tree"), "files:/srv/tree")
        assert isolate_cli.ok("exec", "files", "cat", "/tmp/in.txt", "/srv/tree/a") == \
            "to the container\na\n"
        isolate_cli.ok("cp", "files:/etc/marker", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "isolate test image\n"
        # '-': a tar on stdout, and a tar from stdin.
        raw = isolate_cli("cp", "files:/etc/marker", "-", text=False)
        assert raw.returncode == 0
        with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
            assert tar.getnames() == ["marker"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("from-stdin.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"hi\n"))
        proc = isolate_cli("cp", "-", "files:/tmp", input=buf.getvalue())
        assert proc.returncode == 0, proc.stderr
        assert isolate_cli.ok("exec", "files", "cat", "/tmp/from-stdin.txt") == "hi\n"
        # A symlink in the container that points at a host directory leads nowhere: paths
        # are resolved in the container's root, both ways.
        (tmp_path / "secret").write_text("host secret\n")
        isolate_cli.ok("exec", "files", "ln", "-s", str(tmp_path), "/tmp/dirlink")
        proc = isolate_cli("cp", "files:/tmp/dirlink/secret", str(tmp_path / "leaked"))
        assert proc.returncode == 125 and not (tmp_path / "leaked").exists()
        proc = isolate_cli("cp", str(tmp_path / "in.txt"), "files:/tmp/dirlink/")
        assert not (tmp_path / "in.txt.copy").exists()
        assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.txt", "secret", "tree"]
        # Also into and out of a stopped container.
        isolate_cli.ok("stop", "-t", "0", "files")
        isolate_cli.ok("cp", str(tmp_path / "in.txt"), "files:/root/")
        isolate_cli.ok("cp", "files:/root/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "to the container\n"
        raw = isolate_cli("cp", "files:/tmp/from-stdin.txt", "-", text=False)
        with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
            member = tar.extractfile("from-stdin.txt")
            assert member is not None and member.read() == b"hi\n"


def test_cp_of_a_missing_path_and_bad_specs_fail_in_one_line(isolate_cli: Isolate,
                                                             tmp_path: Path) -> None:
    cid = isolate_cli.ok("create", "busybox").strip()
    for args in (("cp", f"{cid}:/no/such", str(tmp_path / "x")),
                 ("cp", str(tmp_path / "missing"), f"{cid}:/tmp"),
                 ("cp", "a", "b"), ("cp", f"{cid}:/a", f"{cid}:/b"),
                 ("cp", "nosuchcontainer:/etc", str(tmp_path))):
        proc = isolate_cli(*args)
        assert proc.returncode == 125 and len(proc.stderr.splitlines()) == 1, (args, proc)


def test_diff_commit_then_run_the_new_image(isolate_cli: Isolate) -> None:
    isolate_cli.ok("run", "--name", "builder", "busybox", "sh", "-c",
                   "echo built > /srv/made; rm /etc/marker; mkdir /opt")
    assert isolate_cli.ok("diff", "builder").splitlines() == [
        "C /etc", "D /etc/marker", "A /opt", "C /srv", "A /srv/made"]
    image_id = isolate_cli.ok("commit", "-a", "Ann <ann@example.com>", "-m", "made it",
                              "-c", "ENV MADE=yes", "-c", 'CMD ["cat", "/srv/made"]',
                              "builder", "local/made:1").strip()
    assert image_id.startswith("sha256:")
    try:
        assert isolate_cli.ok("run", "--rm", "local/made:1") == "built\n"
        assert isolate_cli.ok("run", "--rm", "local/made:1", "sh", "-c",
                              "echo $MADE; test -e /etc/marker || echo gone") == "yes\ngone\n"
        doc = isolate_cli.ok("inspect", "--type", "image", "-f", "{{json .Config.Env}}",
                             "local/made:1")
        assert "MADE=yes" in json.loads(doc)
    finally:
        isolate_cli("rmi", "local/made:1")


def test_export_writes_the_flattened_root(isolate_cli: Isolate, tmp_path: Path) -> None:
    isolate_cli.ok("run", "--name", "exp", "busybox", "sh", "-c", "echo x > /srv/new")
    isolate_cli.ok("export", "-o", str(tmp_path / "root.tar"), "exp")
    with tarfile.open(tmp_path / "root.tar") as tar:
        names = set(tar.getnames())
    assert {"srv/new", "bin/busybox", "etc/marker"} <= {n.removeprefix("./") for n in names}
    raw = isolate_cli("export", "exp", text=False)
    assert raw.returncode == 0 and raw.stdout == (tmp_path / "root.tar").read_bytes()


# -- inspect ----------------------------------------------------------------------------------

def test_inspect_is_shaped_like_dockers_and_formats_with_templates(
        isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("create", "--name", "insp", "-e", "K=V", "-l", "a=1",
                         "-v", "vol-insp:/data", "busybox", "sh", "-c", "echo hi").strip()
    doc = isolate_cli.inspect("insp")
    assert doc["Id"] == cid and doc["Name"] == "/insp"
    assert {"Id", "Created", "Path", "Args", "State", "Image", "Name", "HostConfig", "Mounts",
            "Config", "NetworkSettings", "GraphDriver"} <= set(doc)
    assert (doc["Path"], doc["Args"]) == ("sh", ["-c", "echo hi"])
    cases = {
        "{{.State.Status}}": "created",
        "{{.Id}}": cid,
        "{{.Name}} {{.State.Running}} {{.State.ExitCode}}": "/insp false 0",
        "{{json .Config.Labels}}": '{"a":"1"}',
        "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}": "vol-insp:/data ",
        "{{range .Config.Env}}{{if eq . \"K=V\"}}{{.}}{{end}}{{end}}": "K=V",
        "{{index .Config.Labels \"a\"}}": "1",
        "{{.HostConfig.NetworkMode}}": "none",
    }
    for template, expected in cases.items():
        assert isolate_cli.ok("inspect", "-f", template, "insp") == expected + "\n", template
    config = json.loads(isolate_cli.ok("inspect", "--format", "{{json .Config}}", "insp"))
    assert config["Labels"] == {"a": "1"} and "K=V" in config["Env"]
    # Several objects: one line each; an image and a volume through the same command.
    both = isolate_cli.ok("inspect", "-f", "{{.Name}}", "insp", cid[:12]).splitlines()
    assert both == ["/insp", "/insp"]
    assert isolate_cli.ok("inspect", "-f", "{{.Name}}", "vol-insp") == "vol-insp\n"
    assert json.loads(isolate_cli.ok("inspect", "busybox"))[0]["Id"].startswith("sha256:")


def test_inspect_of_one_missing_object_prints_the_others_and_exits_125(
        isolate_cli: Isolate) -> None:
    isolate_cli.ok("create", "--name", "present", "busybox")
    proc = isolate_cli("inspect", "-f", "{{.Name}}", "present", "absent")
    assert proc.returncode == 125
    assert proc.stdout == "/present\n" and proc.stderr == "isolate: No such object: absent\n"


def test_ps_all_last_latest_size_and_no_trunc(isolate_cli: Isolate) -> None:
    first = isolate_cli.ok("create", "--name", "ps-one", "busybox", "sh", "-c",
                           "echo a long command that Docker truncates").strip()
    time.sleep(0.01)
    second = isolate_cli.ok("create", "--name", "ps-two", "busybox").strip()
    assert isolate_cli.ok("ps", "-q") .count(first[:12]) == 0  # not running
    assert isolate_cli.ok("ps", "-a", "-q", "-f", "name=ps-").split() == [second[:12],
                                                                         first[:12]]
    assert isolate_cli.ok("ps", "-l", "-q") == second[:12] + "\n"
    assert isolate_cli.ok("ps", "-n", "2", "-q").split() == [second[:12], first[:12]]
    assert isolate_cli.ok("ps", "-a", "--no-trunc", "-f", "name=ps-one", "--format",
                          "{{.ID}} {{.Command}}") == \
        f'{first} "sh -c echo a long command that Docker truncates"\n'
    truncated = isolate_cli.ok("ps", "-a", "-f", "name=ps-one", "--format", "{{.Command}}")
    assert truncated.strip().endswith('…"') and len(truncated.strip()) <= 22
    sized = isolate_cli.ok("ps", "-a", "-s", "-f", "name=ps-two").splitlines()
    assert sized[0].split()[-1] == "SIZE" and "(virtual " in sized[1]
    table = isolate_cli.ok("ps", "-a", "-f", "name=ps-two", "--format",
                           "table {{.Names}}\t{{.State}}").splitlines()
    assert table == ["NAMES     STATE", "ps-two    created"]


# -- volumes ----------------------------------------------------------------------------------

def test_volume_create_ls_inspect_rm_prune(isolate_cli: Isolate) -> None:
    assert isolate_cli.ok("volume", "create", "--label", "team=a", "v-cli") == "v-cli\n"
    table = isolate_cli.ok("volume", "ls", "-f", "name=v-cli").splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and table[1].split() == [
        "local", "v-cli"]
    assert isolate_cli.ok("volume", "ls", "-q", "-f", "label=team=a") == "v-cli\n"
    doc = json.loads(isolate_cli.ok("volume", "inspect", "v-cli"))[0]
    assert (doc["Name"], doc["Driver"], doc["Labels"]) == ("v-cli", "local", {"team": "a"})
    assert os.path.isdir(doc["Mountpoint"])
    # Seeded from the image on first use, shared between containers, kept after rm.
    assert isolate_cli.ok("run", "--rm", "-v", "v-seed:/data", "busybox", "sh", "-c",
                          "cat /data/seed.txt; echo shared > /data/new") == "from the image\n"
    assert isolate_cli.ok("run", "--rm", "-v", "v-seed:/data:ro", "busybox", "cat",
                          "/data/new") == "shared\n"
    # In use: refused without -f.
    cid = isolate_cli.ok("create", "-v", "v-cli:/data", "busybox").strip()
    proc = isolate_cli("volume", "rm", "v-cli")
    assert proc.returncode == 125 and proc.stdout == ""
    assert proc.stderr == f"isolate: remove v-cli: volume is in use - [{cid}]\n"
    isolate_cli.ok("rm", cid)
    assert isolate_cli.ok("volume", "rm", "v-cli") == "v-cli\n"
    # prune: anonymous volumes (the image's /data) once no container uses them; -a: all.
    anon = isolate_cli.ok("create", "--name", "anon", "busybox-vol").strip()
    anon_vol = isolate_cli.ok("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", anon
                              ).strip()
    out = isolate_cli.ok("volume", "prune", "-f")
    assert anon_vol not in out and "Total reclaimed space:" in out
    isolate_cli.ok("rm", "anon")
    out = isolate_cli.ok("volume", "prune", "-f")
    assert out.startswith("Deleted Volumes:\n") and anon_vol in out
    assert "v-seed" in isolate_cli.ok("volume", "ls", "-q")
    assert "v-seed" in isolate_cli.ok("volume", "prune", "-a", "-f")
    # Without -f it asks; anything but y keeps the volumes.
    isolate_cli.ok("volume", "create", "v-ask")
    assert "Are you sure" in isolate_cli.ok("volume", "prune", "-a", input="n\n")
    assert "v-ask" in isolate_cli.ok("volume", "ls", "-q")


def test_rm_v_removes_anonymous_volumes_and_keeps_named_ones(isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("create", "-v", "/anon", "-v", "v-named:/named", "busybox").strip()
    names = isolate_cli.ok("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", cid).split()
    assert "v-named" in names and len(names) == 2
    isolate_cli.ok("rm", "-v", cid)
    left = isolate_cli.ok("volume", "ls", "-q").split()
    assert "v-named" in left and not set(names) - {"v-named"} & set(left)


def test_container_prune_removes_the_stopped_ones(isolate_cli: Isolate) -> None:
    stopped = isolate_cli.ok("create", "-l", "prune=me", "busybox").strip()
    kept = isolate_cli.ok("create", "busybox").strip()
    out = isolate_cli.ok("container", "prune", "-f", "--filter", "label=prune=me")
    assert out == f"Deleted Containers:\n{stopped}\n\nTotal reclaimed space: 0B\n"
    assert isolate_cli.ok("container", "ls", "-a", "-q", "--no-trunc").split().count(kept) == 1


def test_the_container_group_has_the_same_commands(isolate_cli: Isolate) -> None:
    cid = isolate_cli.ok("container", "create", "--name", "grp", "busybox").strip()
    assert isolate_cli.ok("container", "inspect", "-f", "{{.Id}}", "grp") == cid + "\n"
    # Containers only, as docker container inspect.
    assert isolate_cli("container", "inspect", "busybox").stderr == \
        "isolate: No such container: busybox\n"
    assert isolate_cli.ok("container", "ls", "-a", "-q", "-f", "name=grp") == cid[:12] + "\n"
    assert isolate_cli.ok("container", "run", "--rm", "busybox", "echo", "hi") == "hi\n"
    assert isolate_cli.ok("container", "rm", "grp") == "grp\n"


# -- run: a container or a sandbox ----------------------------------------------------------

def test_run_dashdash_and_image_flag_stay_the_throwaway_sandbox(isolate_cli: Isolate) -> None:
    before = isolate_cli.ok("ps", "-a", "-q")
    assert isolate_cli.ok("run", "--", "sh", "-c", "echo $$ $(hostname)") == "1 sandbox\n"
    assert isolate_cli.ok("run", "--image", "busybox", "cat", "/etc/marker") == \
        "isolate test image\n"
    assert isolate_cli.ok("ps", "-a", "-q") == before  # no container was made
    proc = isolate_cli("run", "-d", "--name", "x", "--", "true")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1
    assert "is for containers" in proc.stderr


def test_cidfile_gets_the_id_and_is_never_overwritten(isolate_cli: Isolate,
                                                      tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    isolate_cli.ok("run", "--cidfile", str(cidfile), "busybox", "true")
    cid = cidfile.read_text()
    assert len(cid) == 64 and isolate_cli.status(cid) == "exited"
    proc = isolate_cli("create", "--cidfile", str(cidfile), "busybox")
    assert proc.returncode == 125 and "Container ID file found" in proc.stderr
    assert cidfile.read_text() == cid


def test_logs_since_and_until(isolate_cli: Isolate) -> None:
    isolate_cli.ok("run", "--name", "timed", "busybox", "sh", "-c",
                   "echo early; sleep 1.5; echo late")
    stamped = isolate_cli.ok("logs", "-t", "timed").splitlines()
    late_at = stamped[1].split(" ")[0]
    assert isolate_cli.ok("logs", "--since", late_at, "timed") == "late\n"
    assert isolate_cli.ok("logs", "--until", late_at, "timed") == "early\n"
    assert isolate_cli.ok("logs", "--since", "10m", "timed") == "early\nlate\n"
    assert isolate_cli.ok("logs", "--tail", "0", "timed") == ""


def test_stats_streams_until_the_container_stops(isolate_cli: Isolate) -> None:
    with foreground(isolate_cli, "streamed") as fg:
        proc = isolate_cli.popen("stats", "--format", "{{.Name}} {{.PIDs}}", "streamed",
                                 stdout=subprocess.PIPE)
        try:
            read_until(proc, "streamed 1")
            read_until(proc, "streamed 1")  # a second reading
            isolate_cli.ok("stop", "-t", "0", "streamed")
            assert proc.wait(timeout=WAIT) == 0
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
        fg.wait(timeout=WAIT)


def test_the_flags_reach_the_container(isolate_cli: Isolate, tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("from the host\n")
    script = ("touch /x 2>/dev/null || echo ro; touch /scratch/x && echo scratch; "
              "grep CapEff /proc/self/status; ulimit -n; cat /proc/1/comm; cat /m/shared.txt; "
              "touch /m/y 2>/dev/null || echo m-ro; grep -E '\\sdb$' /etc/hosts; echo $HOME")
    out = isolate_cli.ok("run", "--rm", "--read-only", "--tmpfs", "/scratch:size=1m",
                         "--cap-drop", "ALL", "--ulimit", "nofile=100:200", "--init",
                         "--mount", f"type=bind,source={tmp_path},target=/m,readonly",
                         "--add-host", "db:10.0.0.5", "busybox", "sh", "-c", script)
    assert out.splitlines() == ["ro", "scratch", "CapEff:\t0000000000000000", "100",
                                "isolate-init", "from the host", "m-ro", "10.0.0.5\tdb",
                                "/root"]
    host = os.uname().nodename
    assert isolate_cli.ok("run", "--rm", "--network", "host", "busybox", "hostname") == \
        host + "\n"


def test_a_restart_policy_restarts_a_failing_container(detachable: Isolate) -> None:
    detachable.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh",
                  "-c", "echo run; exit 1")
    assert detachable.ok("wait", "flaky") == "1\n"
    assert detachable.ok("logs", "flaky") == "run\nrun\nrun\n"
    assert detachable.ok("inspect", "-f", "{{.RestartCount}} {{.HostConfig.RestartPolicy.Name}}",
                         "flaky") == "2 on-failure\n"


def test_run_device_binds_the_node_and_inspect_shows_it(isolate_cli: Isolate) -> None:
    import os

    if not os.path.exists("/dev/fuse"):
        pytest.skip("this host has no /dev/fuse")
    out = isolate_cli.ok("run", "--rm", "--device", "/dev/fuse:/dev/myfuse", "busybox", "sh",
                         "-c", "exec 3<>/dev/myfuse && echo opened; test -e /dev/fuse || "
                         "echo only-renamed")
    assert out.split() == ["opened", "only-renamed"]
    isolate_cli.ok("create", "--name", "devs", "--device", "/dev/fuse:rw", "busybox", "true")
    doc = isolate_cli.inspect("devs")
    assert doc["HostConfig"]["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"}]
