"""``isolate run``: run one command in a sandbox, passing stdio through, like ``docker run``.

Signals sent to ``isolate`` (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2) are forwarded to the
command, which runs in a session of its own. The command runs as pid 1 of its own pid namespace,
where the kernel drops signals it has no handler for -- so, as ``docker stop`` does, a command
that ignores a forwarded SIGTERM/SIGINT is killed after ``--stop-timeout`` seconds. With
``--init`` a tiny init is pid 1 and passes the signals on to the command (pid 2), which then
dies by them as it would outside a sandbox.
"""

from __future__ import annotations

import os
import sys
import time

from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate._units import human_size, parse_decimal, parse_seconds, parse_size
from isolate.cli import UsageError
from isolate.cli._common import STORE_OPTION, dest_of
from isolate.cli._common import option as _o
from isolate.cli.container_options import (
    CREATE_OPTIONS,
    REMAINDER,
    RUN_OPTIONS,
    Default,
    given,
    new_options,
    release_short_help,
)
from isolate.errors import ConfigError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, Final

    from isolate.cgroups import Limits
    from isolate.cli._common import Option
    from isolate.sandbox import Sandbox

__all__ = ["register"]

_FORWARD = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGINT, signal.SIGWINCH)
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
MAX_ID = 2**32 - 2  # uid/gid (2**32 - 1 is the kernel's "no id")


#: The sandbox flags of ``isolate run``, as (option strings, add_argument keywords): the one
#: list that both argparse and the quick parser of a plain run (:mod:`isolate.cli._quick`)
#: read. A default a container also has is a :class:`Default`, so that a container can tell a
#: flag left alone from one given.
SANDBOX_OPTIONS: Final = [
    _o("--image", metavar="IMAGE", default=None,
       help="a throwaway sandbox in this image (a writable overlay of its layers, gone at "
            "exit) instead of a container"),
    _o("--entrypoint", metavar="PROG", default=None,
       help="image: run PROG instead of the image's Entrypoint ('' for none)"),
    _o("--read-only", action="store_true",
       help="image: keep its root read-only (default: writable, changes thrown away at exit)"),
    _o("--pull", choices=("missing", "always", "never"), default=Default("missing"),
       help="image: when to pull it from its registry (default: missing)"),
    _o("--overlay", choices=("auto", "kernel", "fuse"), default=Default("auto"),
       help="image: who mounts its layers (default auto: the kernel, falling back to "
            "fuse-overlayfs where a user namespace cannot)"),
    STORE_OPTION,
    _o("--rootfs", metavar="DIR",
       help="root filesystem directory (default: the host's, read-only)"),
    _o("--bind", "-v", metavar="SRC:DST[:ro|rw][,dev]", action="append", default=[],
       help="bind a host path (read-only unless :rw, unlike docker run -v; device nodes in it "
            "unusable unless dev)"),
    _o("--device", metavar="HOST[:CONTAINER][:rwm]", action="append", default=[],
       help="give the sandbox a host device node (at the same path below /dev unless "
            "CONTAINER); less than rwm makes a device cgroup enforce it"),
    _o("--tmpfs", metavar="DST", action="append", default=[], help="mount a fresh tmpfs"),
    _o("--hostname", default=Default("sandbox")),
    _o("--net", "--network", dest="net", metavar="MODE", action="append", default=None,
       help="none: only lo (default); host: the host's network; bridge or a network's name "
            "(isolate network create): an address on it; pasta or slirp4netns: user-mode "
            "networking (rootless)"),
    _o("-p", "--publish", metavar="[IP:][HOST:]CTR[/PROTO]", action="append", default=[],
       dest="publish",
       help="publish a port of the sandbox on the host (needs --net bridge, a network or "
            "pasta)"),
    _o("--env", "-e", metavar="K=V", action="append", default=[],
       help="set an environment variable (K alone: take it from here)"),
    _o("--workdir", "-w", metavar="DIR", default=None),
    _o("--user", "-u", metavar="UID[:GID]", default=None),
    _o("--rw", action="store_true", help="make the root filesystem writable"),
    _o("--privileged", action="store_true", help="keep capabilities, no seccomp, no masked paths"),
    _o("--cap-add", metavar="CAP", action="append", default=[], help="keep this capability"),
    _o("--memory", "-m", metavar="SIZE", help="memory limit, e.g. 256M (at least 6M)"),
    _o("--memory-swap", metavar="SIZE",
       help="memory + swap limit, at least --memory (-1: unlimited swap)"),
    _o("--cpus", metavar="N", help="CPU quota in CPUs, e.g. 0.5"),
    _o("--pids-limit", metavar="N", help="most processes at once (-1: unlimited)"),
    _o("--best-effort", action="store_true",
       help="apply the limits this host can honour and warn about the others (default: a "
            "limit the host cannot honour is an error)"),
    _o("--timeout", metavar="SECONDS",
       help="kill the command's whole process tree after this long"),
    _o("--stop-timeout", default=Default("10"), metavar="SECONDS",
       help="after a forwarded SIGTERM/SIGINT, kill after this long (default 10)"),
    _o("--init", action="store_true",
       help="run a tiny init as pid 1 that reaps zombies and forwards signals; the command "
            "runs as pid 2"),
]

#: What follows the options: the image and command, or '--' and the command.
COMMAND: Final = _o("command", nargs=REMAINDER, metavar="CMD [ARG...]")


def run_options() -> list[Option]:
    """Every flag of ``isolate run``: the sandbox's, then the container flags it lacks (a
    spelling it lacks of one it has goes to the same ``dest``); ``-h`` is ``--hostname``'s,
    as in Docker."""
    existing = {f: dest_of(flags, kw) for flags, kw in SANDBOX_OPTIONS for f in flags}
    return [*SANDBOX_OPTIONS, *new_options(existing, [*CREATE_OPTIONS, *RUN_OPTIONS])]


def register(sub: Any) -> None:
    """Add the ``run`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "run", help="create and run a new container (or a throwaway sandbox)",
        usage="isolate run [OPTIONS] IMAGE [COMMAND] [ARG...]          (a container)\n"
              "       isolate run [OPTIONS] [--rootfs DIR] -- CMD [ARG...]  (a sandbox)\n"
              "       isolate run [OPTIONS] --image IMAGE [CMD [ARG...]]   (a sandbox)",
        description="Create and run a new container from IMAGE, as docker run does (attached "
        "until it ends, unless -d). After '--', or with --rootfs DIR or --image IMAGE, run CMD "
        "in a throwaway sandbox instead: private /tmp, fresh /proc, minimal /dev, no network, "
        "no capabilities, the host's root (or DIR, or a writable overlay of IMAGE) read-only.")
    release_short_help(p)
    for flags, kw in [*run_options(), COMMAND]:
        p.add_argument(*flags, **kw)
    p.set_defaults(handler=run_command)


def _parse_user(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    uid_s, sep, gid_s = value.partition(":")
    try:
        uid = parse_decimal(uid_s, name="uid", maximum=MAX_ID)
        gid = parse_decimal(gid_s, name="gid", maximum=MAX_ID) if sep else None
    except ConfigError as exc:
        raise UsageError(f"isolate run: --user must be UID[:GID] in numbers; {exc}") from None
    return uid, gid


def _parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"isolate run: --env must be K=V, not {item!r}")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        env[key] = value
    return env


# Each limit's option, by the Limits field that its errors name.
_LIMIT_OPTIONS = {"memory_max": "--memory", "memory_swap_max": "--memory-swap",
                  "cpus": "--cpus", "pids_max": "--pids-limit"}


def _limits(args: argparse.Namespace) -> Limits | None:
    try:
        return _make_limits(args)
    except ConfigError as exc:
        # Name the option, not the library's field: "--memory: ..." for "memory_max: ...".
        field, sep, rest = str(exc).partition(": ")
        if sep and field in _LIMIT_OPTIONS:
            raise UsageError(f"isolate run: {_LIMIT_OPTIONS[field]}: {rest}") from None
        raise UsageError(f"isolate run: {exc}") from None


def _make_limits(args: argparse.Namespace) -> Limits | None:
    values: dict[str, Any] = {}
    if args.memory is not None:
        values["memory_max"] = args.memory
    if args.memory_swap is not None and args.memory_swap != "-1":
        # docker run's --memory-swap counts memory and swap together; Limits counts swap.
        if args.memory is None:
            raise ConfigError("--memory-swap needs --memory as well")
        memory = parse_size(args.memory, name="--memory")
        total = parse_size(args.memory_swap, name="--memory-swap")
        if total < memory:
            raise ConfigError(f"--memory-swap {args.memory_swap} is less than --memory "
                              f"{args.memory} (it limits memory and swap together, as in "
                              "docker run)")
        values["memory_swap_max"] = total - memory
    if args.cpus is not None:
        values["cpus"] = args.cpus
    if args.pids_limit is not None and args.pids_limit != "-1":
        from isolate.cgroups.limits import MAX_PIDS

        values["pids_max"] = parse_decimal(args.pids_limit, name="--pids-limit",
                                           maximum=MAX_PIDS)
    if not values:
        return None  # without limits, the cgroup code is never loaded
    from isolate.cgroups import Limits

    return Limits(**values)


def _split_image(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(image, command): the first argument is an image unless ``--`` comes first, or
    ``--rootfs``/``--image`` is given."""
    command = list(args.command)
    dashdash = command[:1] == ["--"]
    if dashdash:
        command = command[1:]
    image = args.image
    if image is None and not dashdash and args.rootfs is None:
        if not command:
            raise UsageError("isolate run: no image or command given (isolate run [OPTIONS] "
                             "IMAGE [CMD...], or isolate run [OPTIONS] -- CMD [ARG...])")
        image, command = command[0], command[1:]
        if command[:1] == ["--"]:
            command = command[1:]
    if image is not None and args.rootfs is not None:
        raise UsageError("isolate run: give an image or --rootfs, not both")
    return image, command


def _image(args: argparse.Namespace, name: str) -> Any:
    """(store, image): ``name`` found or pulled as ``--pull`` says, the way a Sandbox does it
    (the same code), with progress bars on a terminal."""
    from isolate._image_root import find_image
    from isolate.cli.images import keep_seccomp_programs, open_store, progress_for

    store = open_store(args)
    keep_seccomp_programs(store)
    bars = progress_for(f"Pulling {name}")
    try:
        return store, find_image(store, name, args.pull, progress=bars)
    finally:
        if bars is not None:
            bars.close()


def _sandbox_network(values: list[str] | None) -> str:
    if values and len(values) > 1:
        raise ConfigError("a sandbox joins one network (--net given more than once); "
                          "'isolate run IMAGE' makes a container, which can join more")
    return values[0] if values else "none"


# Flags of `isolate run` that only a sandbox has, and the container flags a sandbox takes
# silently (it is a throwaway, attached run already).
_SANDBOX_ONLY: Final = (("rw", "--rw"), ("overlay", "--overlay"), ("best_effort",
                        "--best-effort"), ("timeout", "--timeout"))
_SANDBOX_ACCEPTS: Final = {"rm", "interactive", "tty", "pull", "hostname", "stop_timeout",
                           "net", "network", "publish", "bind", "tmpfs", "env", "workdir", "user",
                           "privileged", "cap_add", "memory", "memory_swap", "cpus",
                           "pids_limit", "init", "entrypoint", "read_only", "store",
                           "command", "handler", "image", "rootfs", "sig_proxy", "device"}


def wants_container(args: argparse.Namespace) -> bool:
    """For ``isolate run``: whether its arguments ask for a container (``IMAGE`` as the
    first word: ``docker run``) rather than a throwaway sandbox (``-- CMD``, ``--rootfs DIR``
    or ``--image IMAGE``). Refuses the flags that belong to the other kind.

    Raises:
        UsageError: a container flag for a sandbox, or a sandbox flag for a container.
    """
    words = list(args.command)
    container = (bool(words) and words[0] != "--" and getattr(args, "rootfs", None) is None
                 and getattr(args, "image", None) is None)
    if container:
        for dest, flag in _SANDBOX_ONLY:
            if given(getattr(args, dest, None)):
                raise UsageError(f"isolate run: {flag} is a sandbox flag ('isolate run -- "
                                 "CMD', --rootfs DIR or --image IMAGE); 'isolate run IMAGE' "
                                 "makes a container")
        return True
    for flags, kw in [*CREATE_OPTIONS, *RUN_OPTIONS]:
        dest = dest_of(flags, kw)
        if dest in _SANDBOX_ACCEPTS:
            continue
        if given(getattr(args, dest, None)):
            raise UsageError(f"isolate run: {flags[-1]} is for containers ('isolate run "
                             "IMAGE ...'); 'isolate run -- CMD' runs a throwaway sandbox")
    return False


def run_command(args: argparse.Namespace) -> int:
    # 'isolate run IMAGE ...' is docker run (a container); '-- CMD', --rootfs and --image are
    # the throwaway sandbox below.
    if wants_container(args):
        from isolate.cli import containers

        return containers.run_container(args)
    image, command = _split_image(args)
    if image is None and not command:
        raise UsageError("isolate run: no command given (isolate run [OPTIONS] -- CMD [ARG...])")
    if args.rootfs is not None and not os.path.isdir(args.rootfs):
        raise ConfigError(f"rootfs {args.rootfs!r} is not a directory")
    uid, gid = _parse_user(args.user)
    timeout = _seconds(args.timeout, "--timeout") if args.timeout is not None else None
    stop_timeout = _seconds(args.stop_timeout, "--stop-timeout", zero=True)
    options: dict[str, Any] = dict(
        rootfs=args.rootfs, binds=args.bind, devices=args.device, tmpfs=args.tmpfs,
        hostname=args.hostname,
        network=_sandbox_network(args.net), ports=args.publish, uid=uid, gid=gid,
        readonly=not args.rw,
        privileged=args.privileged, limits=_limits(args), best_effort=args.best_effort,
        capabilities=args.cap_add or None, init=args.init,
    )
    if image is not None:
        options["store"], options["image"] = _image(args, image)
        options["readonly"] = args.read_only
        options["overlay"] = args.overlay
    if args.workdir is not None:
        options["cwd"] = args.workdir
    if "store" not in options and options["network"] not in ("none", "host") \
            and not options["network"].startswith(("pasta", "slirp4netns")):
        from isolate.cli.images import open_store

        options["store"] = open_store(args)  # whose networks it joins
    extra_env = _parse_env(args.env)
    from isolate.sandbox import Sandbox  # here: 'isolate run IMAGE' (a container) needs none

    def enter() -> Sandbox:
        return Sandbox(**options).__enter__()

    sb = _with_warnings_as_lines(enter) if args.best_effort else enter()
    try:
        for skipped in sb.cgroup.skipped_limits if sb.cgroup is not None else ():
            print(f"isolate: warning: limit not applied: {skipped}", file=sys.stderr)
        if image is not None:
            if args.entrypoint is not None:
                command = ([args.entrypoint] if args.entrypoint else []) + command
                if not command:
                    raise UsageError("isolate run: --entrypoint '' needs a command")
            else:
                command = sb.image_command(command)
        env = sb.environment()
        env.update(extra_env)
        return _supervise(sb, command, env, timeout, stop_timeout)
    finally:
        sb.close()


def _seconds(text: str, option: str, *, zero: bool = False) -> float:
    try:
        return parse_seconds(text, name=option, zero=zero)
    except ConfigError as exc:
        raise UsageError(f"isolate run: {exc}") from None


def _with_warnings_as_lines(start: Callable[[], Sandbox]) -> Sandbox:
    """``start()``, showing the library's warnings (limits dropped under --best-effort, the
    only ones it gives a sandbox's start) as one line each."""
    import warnings  # (here: a run without --best-effort loads none, ~0.3 ms of a start)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            return start()
        finally:
            for w in caught:
                print(f"isolate: warning: {w.message}", file=sys.stderr)


def _supervise(sb: Sandbox, command: list[str], env: dict[str, str],
               timeout: float | None, stop_timeout: float) -> int:
    """Run the command, forward signals, return its exit status the shell's way."""
    waited = {*_FORWARD, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        oom_before = sb.oom_kills()
        proc = sb.spawn(command, env=env)  # (not subprocess: ~10 ms of each start)
        deadline = None if timeout is None else time.monotonic() + timeout
        kill_at: float | None = None
        timed_out = False
        while proc.poll() is None:
            wake = [t for t in (deadline, kill_at) if t is not None]
            wait = max(min(wake) - time.monotonic(), 0.0) if wake else 1.0
            info = signal.sigtimedwait(waited, min(wait, 1.0))
            now = time.monotonic()
            if info is not None and info.si_signo != signal.SIGCHLD:
                sig = info.si_signo
                # Also a terminal's ^C: the command runs in a session of its own, so the
                # terminal's signals reach only us.
                proc.send_signal(sig)
                if sig in _STOPPING and kill_at is None:
                    kill_at = now + stop_timeout
            timed_out = deadline is not None and now >= deadline
            if timed_out or (kill_at is not None and now >= kill_at):
                proc.kill()
                proc.wait()
        status = proc.wait()
        proc.close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if status < 0:
        if status == -signal.SIGKILL and sb.oom_kills() > oom_before:
            limit = sb.config.limits.memory_max if sb.config.limits else None
            what = f" (limit {human_size(limit)})" if limit else ""
            print(f"isolate: killed: out of memory{what}", file=sys.stderr)
        elif status == -signal.SIGKILL and timed_out:
            print(f"isolate: killed: --timeout of {timeout:g} s reached", file=sys.stderr)
        return 128 - status
    return status

