"""The edges of isolate.Sandbox a library user hits first: options that are typed and checked
by name, a sandbox whose timeout has passed, /tmp (private per process, shared by calls) and
binds below it, and the image store and pull policy it shares with the CLI."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from tests.rootless import run_unprivileged

from isolate import Bind, Limits, Sandbox, SandboxConfig
from isolate.errors import ConfigError, ImageError, StateError
from sandbox_helpers import need_root

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """A directory below /tmp, where pytest's tmp_path and tempfile put theirs by default."""
    path = Path(tempfile.mkdtemp(prefix="isolate-edges-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- options: typed keywords, unknown names refused ------------------------------------------

def test_sandbox_keywords_are_the_fields_of_sandbox_config() -> None:
    params = inspect.signature(Sandbox).parameters
    keywords = {name: p.default for name, p in params.items() if p.kind is p.KEYWORD_ONLY}
    fields = {f.name: f.default for f in attrs.fields(SandboxConfig)}
    assert keywords == fields


def test_a_misspelt_option_is_a_config_error_that_names_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown Sandbox option 'timout' \(did you mean "
                                          r"'timeout'\?\)"):
        Sandbox(timout=3)  # type: ignore[arg-type]


def test_a_misspelt_option_fails_type_checking(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    program = tmp_path / "typo.py"
    program.write_text("import isolate\n"
                       "isolate.Sandbox(timeout=3, limits={'memory_max': '64M'})\n"
                       "isolate.Sandbox(timout=3)\n")
    out, _, status = api.run(["--strict", "--no-incremental", "--cache-dir",
                              str(tmp_path / "cache"), str(program)])
    assert status == 1
    assert out.count("error:") == 1 and 'typo.py:3: error: Argument "timout"' in out


def test_limits_may_be_a_mapping_of_limits_fields() -> None:
    assert Sandbox(limits={"memory_max": "64M", "pids_max": 32}).config.limits == \
        Limits(memory_max="64M", pids_max=32)


@pytest.mark.parametrize(("limits", "message"), [
    ({"memory": "64M"}, r"unknown limit 'memory' \(did you mean 'memory_max'\?\)"),
    ("64M", r"limits must be an isolate.Limits or a mapping of its fields, not '64M'"),
    ({"memory_max": "lots"}, r"memory_max"),
])
def test_bad_limits_are_a_clear_config_error(limits: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Sandbox(limits=limits)  # type: ignore[arg-type]
    assert "Attribute(" not in str(info.value)


def test_a_config_and_keywords_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Sandbox(SandboxConfig(), hostname="x")
    assert Sandbox(SandboxConfig(hostname="x")).config.hostname == "x"


# -- an expired sandbox takes no new work ----------------------------------------------------

def _wait_expired(box: Sandbox) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            box.run(["true"])
        except StateError:
            return
        except subprocess.TimeoutExpired:
            pass  # started just before the expiry, killed by it (as run documents)
        time.sleep(0.05)
    pytest.fail("the sandbox never expired")


@pytest.mark.parametrize("started", [False, True], ids=["fresh", "after-a-call"])
def test_after_its_timeout_a_sandbox_refuses_every_kind_of_work_with_state_error(
        started: bool) -> None:
    with Sandbox(timeout=0.3) as box:
        if started:
            assert box.call(abs, -1) == 1  # the call helper runs, and is killed at expiry
        _wait_expired(box)
        for _ in range(3):  # the same answer every time, from every entry point
            for work in (lambda: box.run(["true"]), lambda: box.popen(["true"]),
                         lambda: box.call(abs, -1),
                         lambda: box.call_with(abs, (-1,), timeout=10)):
                with pytest.raises(StateError, match=r"timeout of 0\.3 s has expired") as info:
                    work()
                assert info.value.current == "expired"


def test_work_cut_short_by_the_timeout_raises_timeout_not_state_error() -> None:
    with Sandbox(timeout=0.5) as box, pytest.raises(subprocess.TimeoutExpired):
        box.run(["sleep", "1000"])
    with Sandbox(timeout=0.5) as box, pytest.raises(TimeoutError, match="sandbox's timeout"):
        box.call(time.sleep, 1000)


# -- /tmp: private per process, shared by the calls of a sandbox -----------------------------

def write_tmp(name: str) -> list[str]:
    Path("/tmp", name).write_text("from a call")
    return sorted(os.listdir("/tmp"))


def list_tmp() -> list[str]:
    return sorted(os.listdir("/tmp"))


def _bound_below_tmp(box: Sandbox) -> list[str]:
    """What a fresh /tmp shows: the top entries of binds below it (those for sb.call when
    this interpreter lives below /tmp, say)."""
    return sorted({m.destination.split("/")[2] for m in box.runtime.mounts
                   if m.destination.startswith("/tmp/")})


def test_each_run_gets_a_fresh_tmp_and_the_calls_share_the_helpers() -> None:
    with Sandbox() as box:
        fresh = _bound_below_tmp(box)
        script = "ls /tmp; touch /tmp/from-run"
        assert box.run(["sh", "-c", script], capture_output=True, text=True).stdout.split() \
            == fresh
        assert box.run(["sh", "-c", script], capture_output=True, text=True).stdout.split() \
            == fresh
        assert "a.txt" in box.call(write_tmp, "a.txt")
        assert "a.txt" in box.call(list_tmp)  # a later call sees it: one helper, one /tmp
        assert "from-run" not in box.call(list_tmp)
        assert box.run(["ls", "/tmp"], capture_output=True, text=True).stdout.split() == fresh


# -- binds below /tmp -------------------------------------------------------------------------

def read_and_write(directory: str) -> str:
    text = Path(directory, "in").read_text()
    Path(directory, "out-call").write_text("call")
    return text


def test_a_bind_below_tmp_is_shared_with_run_popen_and_call(tmp_dir: Path) -> None:
    (tmp_dir / "in").write_text("from the test\n")
    hidden = tmp_dir.parent / f"{tmp_dir.name}-not-bound"
    hidden.write_text("x")
    try:
        with Sandbox(binds=[Bind(str(tmp_dir), str(tmp_dir), readonly=False)]) as box:
            r = box.run(["sh", "-c", f"cat {tmp_dir}/in; echo run > {tmp_dir}/out-run; ls /tmp"],
                        capture_output=True, text=True, check=True)
            lines = r.stdout.splitlines()
            assert lines[0] == "from the test"
            assert hidden.name not in lines[1:]  # the rest of /tmp stays private
            with box.popen(["cat", f"{tmp_dir}/in"], stdout=subprocess.PIPE) as p:
                assert p.communicate()[0] == b"from the test\n"
            assert box.call(read_and_write, str(tmp_dir)) == "from the test\n"
            # Each process still gets /tmp fresh: what one made outside the bind is gone.
            assert box.run(["ls", "/tmp/out-run"], capture_output=True).returncode != 0
        assert (tmp_dir / "out-run").read_text() == "run\n"
        assert (tmp_dir / "out-call").read_text() == "call"
    finally:
        hidden.unlink()


def test_a_read_only_bind_below_tmp_stays_read_only_and_may_name_a_new_dir(
        tmp_dir: Path) -> None:
    (tmp_dir / "in").write_text("ro\n")
    target = f"/tmp/isolate-new-{os.getpid()}/data"
    assert not os.path.exists(target)
    with Sandbox(binds=[f"{tmp_dir}:{target}:ro"], tmpfs=[f"/tmp/isolate-t-{os.getpid()}"]
                 ) as box:
        r = box.run(["sh", "-c", f"cat {target}/in; touch {target}/x || echo refused"],
                    capture_output=True, text=True)
        assert r.stdout.split() == ["ro", "refused"]
    assert not os.path.exists(target) and os.listdir(tmp_dir) == ["in"]


def test_a_bind_below_tmp_works_rootless(tmp_dir: Path) -> None:
    os.chmod(tmp_dir, 0o777)
    (tmp_dir / "in").write_text("shared\n")
    os.chmod(tmp_dir / "in", 0o644)
    code = textwrap.dedent(f"""
        from isolate import Sandbox
        with Sandbox(binds=["{tmp_dir}:{tmp_dir}:rw"]) as box:
            r = box.run(["sh", "-c", "cat {tmp_dir}/in; echo ok > {tmp_dir}/out"],
                        capture_output=True, text=True, check=True)
            print(r.stdout.strip())
    """)
    assert run_unprivileged(code).stdout.split() == ["shared"]
    assert (tmp_dir / "out").read_text() == "ok\n"


# -- the image store and the pull policy, as the CLI has them ---------------------------------

@pytest.fixture
def local_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A one-file image in a store that ``$ISOLATE_STORE`` names; its name points at a
    registry port nothing listens on, so any pull fails fast (and never leaves the host)."""
    from isolate.image import ImageConfig, Store

    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "marker").write_text("from the env store\n")
    store = Store(tmp_path / "store")
    name = "127.0.0.1:9/isolate-test/local:1"
    store.from_directory(root, name, config=ImageConfig(env=["PATH=/bin"]))
    monkeypatch.setenv("ISOLATE_STORE", str(tmp_path / "store"))
    return name


def test_an_image_without_store_comes_from_the_clis_store(local_image: str) -> None:
    with Sandbox(image=local_image) as box:
        r = box.run(["/bin/busybox", "cat", "/marker"], capture_output=True, text=True)
    assert r.stdout == "from the env store\n"


def test_the_pull_policy_is_the_clis(local_image: str) -> None:
    for pull in ("missing", "never"):
        with Sandbox(image=local_image, pull=pull) as box:
            assert box.run(["/bin/busybox", "true"]).returncode == 0
    with pytest.raises(ImageError, match=r"127\.0\.0\.1:9"):  # "always" asks the registry first
        Sandbox(image=local_image, pull="always").__enter__()
    with pytest.raises(ImageError) as info:  # "never" does not ask it at all
        Sandbox(image="127.0.0.1:9/isolate-test/absent:1", pull="never").__enter__()
    assert "absent" in str(info.value)


@pytest.mark.parametrize("options", [{"pull": "sometimes", "image": "x:1"},
                                     {"pull": "always"}])
def test_a_bad_pull_option_is_a_config_error(options: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="pull"):
        Sandbox(**options)  # type: ignore[arg-type]


# -- start-up: what is loaded, and what is compiled once ------------------------------------

def _modules_after(code: str) -> set[str]:
    import isolate

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(isolate.__file__)))
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(*sys.modules)"],
                         env=env, capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_import_isolate_sandbox_loads_none_of_the_building_blocks() -> None:
    loaded = _modules_after("import isolate.sandbox")
    assert "isolate.sandbox" in loaded
    # Not even attrs: SandboxConfig (an attrs class) is built when first asked for.
    assert not loaded & {"attrs", "attr", "isolate._sandbox_config", "isolate.runtime",
                         "isolate.lowlevel", "isolate.cgroups", "isolate.fs.mounts",
                         "isolate.security", "isolate._native", "isolate.image", "isolate.net",
                         "isolate.namespaces", "json", "tarfile", "dataclasses", "inspect"}


def test_sandbox_config_is_there_when_asked_for_though_made_lazily() -> None:
    import isolate
    import isolate.sandbox
    from isolate._sandbox_config import SandboxConfig as Made

    assert isolate.sandbox.SandboxConfig is Made is isolate.SandboxConfig
    assert "SandboxConfig" in dir(isolate.sandbox)
    with pytest.raises(AttributeError, match="no attribute 'SandboxConfg'"):
        isolate.sandbox.SandboxConfg  # noqa: B018
    code = ("from isolate.sandbox import SandboxConfig, Sandbox\n"
            "assert Sandbox(SandboxConfig(hostname='h')).config.hostname == 'h'")
    assert "isolate._sandbox_config" in _modules_after(code)


def test_isolate_run_without_limits_or_image_loads_no_cgroup_or_registry_code() -> None:
    loaded = _modules_after("from isolate.cli import main\n"
                            "assert main(['run', '--', '/bin/true']) == 0")
    assert "isolate.runtime" in loaded
    assert not loaded & {"isolate.cgroups", "isolate.image", "http.client", "ssl", "socket"}
    # Nor what only other paths need: hashing (OpenSSL), JSON (seccomp profiles as text,
    # Dockerfile command forms), the spawner thread's queue, random names (unless the
    # interpreter's own start loads them). (Not shutil: argparse's help formatter loads it.)
    ours = loaded - _modules_after("pass")
    assert not ours & {"hashlib", "_hashlib", "json", "queue", "secrets", "tarfile",
                       "datetime"}


def test_running_an_image_from_the_store_loads_no_registry_client(local_image: str) -> None:
    loaded = _modules_after(f"from isolate import Sandbox\n"
                            f"with Sandbox(image={local_image!r}) as sb:\n"
                            f"    assert sb.run(['/bin/busybox', 'true']).returncode == 0")
    assert "isolate.image.store" in loaded
    assert not loaded & {"isolate.image.registry", "http.client", "ssl"}


def test_a_config_compiled_once_is_compiled_again_when_a_bind_source_changes_kind(
        tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("a dir\n")
    target = f"/tmp/isolate-edges-{os.getpid()}"
    with Sandbox(binds=[f"{source}:{target}"]) as box:
        assert box.run(["cat", f"{target}/f"], capture_output=True).stdout == b"a dir\n"
    shutil.rmtree(source)
    source.write_text("now a file\n")
    with Sandbox(binds=[f"{source}:{target}"]) as box:
        assert box.run(["cat", target], capture_output=True).stdout == b"now a file\n"


def test_the_call_binds_follow_sys_path(tmp_dir: Path) -> None:
    hidden = str(tmp_dir / "lib")
    os.mkdir(hidden)
    before = {m.destination for m in Sandbox().runtime.mounts}
    sys.path.append(hidden)
    try:
        after = {m.destination for m in Sandbox().runtime.mounts}
    finally:
        sys.path.remove(hidden)
    assert hidden not in before and hidden in after
    assert {m.destination for m in Sandbox().runtime.mounts} == before


def test_a_limited_sandboxes_cgroup_lives_only_where_its_processes_join() -> None:
    from isolate.cgroups import host_layout
    from isolate.errors import UnsupportedError

    box = Sandbox(limits=Limits(memory_max="64M", pids_max=16))
    try:
        box.__enter__()
    except UnsupportedError as exc:
        pytest.skip(f"cgroup limits unavailable here: {exc}")
    try:
        assert box.cgroup is not None
        dirs = box.cgroup.dirs
        for h in host_layout().hierarchies:
            # (devices: the sandbox's device policy, which root may set)
            joined = h.version == 2 or bool(h.controllers & {"memory", "pids", "cpu",
                                                             "cpuacct", "devices"})
            assert (h.key in dirs) == joined, h.key
        assert box.run(["true"]).returncode == 0
    finally:
        box.close()


# -- a command run again ------------------------------------------------------------------------

def test_a_command_run_again_reuses_its_plan_and_each_run_gets_what_it_asked_for() -> None:
    need_root()
    from isolate._plan import decode

    with Sandbox() as sb:
        template = sb._compiled
        assert template is not None
        env = sb.environment(None)
        stdio = [(0, 0), (1, 1), (2, 2)]
        plan = template.plan(["/bin/true"], env, "/", stdio)
        # Checked and encoded once, then the same plan for the same arguments ...
        assert template.plan(["/bin/true"], dict(env), "/", list(stdio)) is plan
        # ... and another for any other argv, env, cwd or fds.
        others = [template.plan(["/bin/false"], env, "/", stdio),
                  template.plan(["/bin/true"], {**env, "X": "1"}, "/", stdio),
                  template.plan(["/bin/true"], env, "/tmp", stdio),
                  template.plan(["/bin/true"], env, "/", [(0, 0), (5, 1), (2, 2)])]
        encoded = {bytes(p.encode(3)) for p in [plan, *others]}
        assert len(encoded) == 5 and all(p is not plan for p in others)
        assert decode(plan.encode(3))[1] == decode(template.plan(
            ["/bin/true"], env, "/", stdio).encode(3))[1]
        # A few are kept, the oldest goes first.
        for i in range(8):
            template.plan(["/bin/echo", str(i)], env, "/", stdio)
        assert template.plan(["/bin/true"], env, "/", stdio) is not plan
        # What each run asked for, whatever ran before it with the same command.
        for value, capture in [("1", True), ("2", True), ("1", False), ("1", True)]:
            result = sb.run(["/bin/sh", "-c", "echo $V"], env={"V": value},
                            capture_output=capture)
            assert result.returncode == 0
            assert result.stdout == (f"{value}\n".encode() if capture else None)
