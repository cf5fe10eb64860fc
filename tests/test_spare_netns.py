"""The spare network namespace (isolate._spare_netns): a process entering fresh sandboxes one
after another gets the namespace its clone would have made, made ahead by a thread; what a
sandbox sees in it is what a new one holds; nothing of it outlives its holder, a forked child
or the process; where the kernel refuses one, sandboxes make their own as before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from isolate import Sandbox, SandboxConfig, _spare_netns, runtime
from isolate._plan import Op, OpKind, Plan, decode
from isolate.errors import ConfigError
from isolate.sandbox import runtime_config
from sandbox_helpers import need_root

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def _python(code: str, *, capless: bool = False) -> subprocess.CompletedProcess[str]:
    # capless: root without a capability (setpriv empties the bounding set before the exec)
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if capless else []
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)


def _spare_ready(timeout: float = 10.0) -> int:
    """The spare's fd, once the thread has made it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = _spare_netns.held_fds()
        if held:
            return held[0]
        time.sleep(0.005)
    raise AssertionError("no spare network namespace was made")


def test_a_sandbox_takes_the_spare_and_finds_in_it_only_lo_up() -> None:
    for _ in range(2):  # the spare is made from the second take on
        with Sandbox() as sb:
            sb.run(["/bin/true"])
    spare = os.readlink(f"/proc/self/fd/{_spare_ready()}")
    assert spare.startswith("net:[") and spare != os.readlink("/proc/self/ns/net")
    script = ("readlink /proc/self/ns/net; cat /sys/class/net/lo/flags; ls /sys/class/net; "
              "cat /proc/net/route /proc/net/tcp /proc/net/tcp6 /proc/net/unix | wc -l")
    with Sandbox() as sb:
        out = sb.run(["/bin/sh", "-c", script], capture_output=True, check=True).stdout.split()
        # The sandbox now holds it by an fd of its own; the spare's is closed.
        assert spare not in [os.readlink(f"/proc/self/fd/{fd}")
                             for fd in _spare_netns.held_fds()]
    ns, flags, devices, lines = out[0].decode(), out[1], out[2:-1], out[-1]
    assert ns == spare
    assert int(flags, 16) & 1  # IFF_UP
    assert devices == [b"lo"]
    # Headers only (route, tcp, tcp6, unix): no route, socket or listener anyone left there.
    assert lines == b"4"


def test_each_sandbox_gets_a_namespace_of_its_own() -> None:
    seen = set()
    for _ in range(6):
        with Sandbox() as sb, Sandbox() as other:
            a = sb.run(["/bin/readlink", "/proc/self/ns/net"], capture_output=True).stdout
            b = other.run(["/bin/readlink", "/proc/self/ns/net"], capture_output=True).stdout
            assert a != b
            seen.add(a)
    # (The kernel reuses the inode numbers of freed namespaces, so only pairs are compared.)
    assert seen


@pytest.mark.parametrize("nofile", [1024, 256])
def test_the_spare_sits_above_the_fds_a_sandbox_gets(nofile: int) -> None:
    # The thread's fds go to 512 and up where the limit allows, so what it opens while the
    # caller enters a sandbox does not shift the fds that sandbox gets (its compiled process
    # plan is kept per those numbers); under a lower limit they stay low and all still works.
    out = _python(f"""
        import os, resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, max(hard, {nofile})))  # root may
        from isolate import Sandbox, _spare_netns
        for _ in range(3):
            with Sandbox() as sb:
                sb.run(["/bin/true"], check=True)
        import time
        deadline = time.monotonic() + 10
        while not _spare_netns.held_fds() and time.monotonic() < deadline:
            time.sleep(0.005)
        [fd] = _spare_netns.held_fds()
        with Sandbox() as sb:
            ns = sb.run(["/bin/readlink", "/proc/self/ns/net"], capture_output=True,
                        check=True).stdout.decode().strip()
        print(fd, ns.startswith("net:["))
        """)
    assert out.returncode == 0, out.stderr
    fd, joined = out.stdout.split()
    assert joined == "True"
    assert int(fd) >= 512 if nofile > 512 else 3 <= int(fd) < nofile


def test_a_process_that_enters_one_sandbox_makes_no_spare() -> None:
    out = _python("""
        import threading, time
        from isolate import Sandbox, _spare_netns
        with Sandbox() as sb:
            sb.run(["/bin/true"])
        time.sleep(0.2)
        print(_spare_netns.held_fds(),
              [t.name for t in threading.enumerate() if t.name == "isolate-spare-netns"])
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]"]


def test_a_sandbox_without_a_net_namespace_of_its_own_takes_none() -> None:
    out = _python("""
        import time
        from isolate import Sandbox, _spare_netns
        for _ in range(4):
            with Sandbox(network=True) as sb:
                sb.run(["/bin/true"])
        time.sleep(0.2)
        print(_spare_netns.held_fds())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]"]


def test_a_forked_child_drops_the_spare_and_nothing_outlives_the_process() -> None:
    out = _python("""
        import os, time
        from isolate import Sandbox, _spare_netns
        for _ in range(2):
            with Sandbox() as sb:
                sb.run(["/bin/true"])
        while not _spare_netns.held_fds():
            time.sleep(0.005)
        (fd,) = _spare_netns.held_fds()
        spare = os.readlink(f"/proc/self/fd/{fd}")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            held = []
            for n in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{n}") == spare:
                        held.append(n)
                except OSError:
                    pass  # the fd listdir used
            with Sandbox() as sb:  # a child's sandboxes work, and make their own namespace
                code = sb.run(["/bin/true"]).returncode
            os.write(w, repr((_spare_netns.held_fds(), held, code)).encode())
            os._exit(0)
        os.close(w)
        print(os.read(r, 4096).decode())
        os.waitpid(pid, 0)
        print(spare)
    """)
    assert out.returncode == 0, out.stderr
    child, spare = out.stdout.splitlines()
    assert child == "([], [], 0)"
    # The process is gone: no process holds that namespace any more.
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == spare:
                    holders.append(pid)
        except OSError:
            continue
    assert holders == []


def test_drain_closes_the_spare() -> None:
    for _ in range(2):
        with Sandbox() as sb:
            sb.run(["/bin/true"])
    fd = _spare_ready()
    _spare_netns.drain()
    assert _spare_netns.held_fds() == []
    with pytest.raises(OSError):
        os.fstat(fd)


def test_where_the_kernel_refuses_one_sandboxes_make_their_own() -> None:
    # Without CAP_SYS_ADMIN the thread's unshare is refused: it ends, and none is made again.
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot start a process without caps")
    out = _python("""
        import threading, time
        from isolate import _spare_netns, _sys
        from isolate.errors import NamespaceError
        try:
            _sys.new_netns()
        except NamespaceError as exc:
            print(exc.errno, exc.step)
        for _ in range(3):
            assert _spare_netns.take() == -1
        time.sleep(0.3)
        print(_spare_netns.held_fds(), _spare_netns._spare._broken,
              [t.name for t in threading.enumerate() if t.name == "isolate-spare-netns"])
        assert _spare_netns.take() == -1
    """, capless=True)
    assert out.returncode == 0, out.stderr
    import errno
    first, second = out.stdout.splitlines()
    assert first == f"{errno.EPERM} new netns"
    assert second == "[] True []"


def test_the_shared_plan_joins_the_spare_instead_of_cloning_one() -> None:
    rc = runtime_config(SandboxConfig())
    assert runtime.takes_netns(rc)
    fresh = runtime.shared_plan(rc, ())
    r, w = os.pipe()
    try:
        joined = runtime.shared_plan(rc, (), netns=r)
    finally:
        os.close(r)
        os.close(w)
    from isolate._plan import CLONE_NEWNET

    assert fresh.plan.clone_flags & CLONE_NEWNET
    assert not joined.plan.clone_flags & CLONE_NEWNET
    _, ops = decode(joined.plan.encode(-1))
    assert (ops[0].kind, ops[0].a, ops[0].b) == (OpKind.SETNS, r, CLONE_NEWNET)
    assert OpKind.LOOPBACK_UP not in [op.kind for op in ops]
    assert OpKind.LOOPBACK_UP in [op.kind for op in fresh.plan.ops]
    assert joined.kinds == fresh.kinds


def test_a_sandbox_that_makes_no_net_namespace_refuses_one_made_ahead() -> None:
    rc = runtime_config(SandboxConfig(network=True))
    assert not runtime.takes_netns(rc)
    with pytest.raises(ConfigError, match="no network namespace of its own"):
        runtime.shared_plan(rc, (), netns=0)


def test_with_fd_puts_an_fd_into_a_frozen_op_and_leaves_the_plan_as_it_was() -> None:
    p = Plan().extend([Op(OpKind.SETNS, a=0, b=0x40000000, note="join"),
                       Op(OpKind.LOOPBACK_UP)]).freeze()
    q = p.with_fd(0, 7)
    assert decode(q.encode(-1))[1][0].a == 7
    assert decode(p.encode(-1))[1][0].a == 0
    with pytest.raises(ConfigError, match="not in the frozen part"):
        p.with_fd(2, 7)
    with pytest.raises(ConfigError, match="not in the frozen part"):
        Plan().extend([Op(OpKind.SETNS, a=0)]).with_fd(0, 7)
    with pytest.raises(ConfigError, match="op 0"):
        p.with_fd(0, -3)
    named = Plan().extend([Op(OpKind.SETNS, a=-1, s2=b"/proc/self/ns/net")]).freeze()
    with pytest.raises(ConfigError, match="has strings"):
        named.with_fd(0, 7)
