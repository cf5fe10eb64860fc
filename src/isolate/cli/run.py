"""``isolate run``: run one command in a sandbox, passing stdio through, like ``docker run``.

Signals sent to ``isolate`` (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2) are forwarded to the
command, which runs in a session of its own. The command runs as pid 1 of its own pid namespace,
where the kernel drops signals it has no handler for -- so, as ``docker stop`` does, a command
that ignores a forwarded SIGTERM/SIGINT is killed after ``--stop-timeout`` seconds. With
``--init`` a tiny init is pid 1 and passes the signals on to the command (pid 2), which then
dies by them as it would outside a sandbox.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from isolate.cgroups import Limits
from isolate.cli import UsageError
from isolate.cli.images import add_store_option, open_store, progress_for
from isolate.errors import ConfigError
from isolate.sandbox import Sandbox

__all__ = ["register"]

_FORWARD = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGINT, signal.SIGWINCH)
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a command in a sandbox",
                       usage="isolate run [OPTIONS] IMAGE [CMD [ARG...]]\n"
                             "       isolate run [OPTIONS] --image IMAGE [CMD [ARG...]]\n"
                             "       isolate run [OPTIONS] [--rootfs DIR] -- CMD [ARG...]",
                       description="Run CMD in a sandbox: private /tmp, fresh /proc, minimal "
                       "/dev, no network, no capabilities. The root is an image's (a "
                       "throwaway writable overlay of its layers; its Env, WorkingDir, User, "
                       "Entrypoint and Cmd apply) or, after '--' or with --rootfs, the "
                       "host's root or DIR, read-only.")
    p.add_argument("--image", metavar="IMAGE", default=None,
                   help="run in this image (the same as giving IMAGE as first argument)")
    p.add_argument("--entrypoint", metavar="PROG", default=None,
                   help="image: run PROG instead of the image's Entrypoint ('' for none)")
    p.add_argument("--read-only", action="store_true",
                   help="image: keep its root read-only (default: writable, changes thrown "
                   "away at exit)")
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing",
                   help="image: when to pull it from its registry (default: missing)")
    p.add_argument("--overlay", choices=("auto", "kernel", "fuse"), default="auto",
                   help="image: who mounts its layers (default auto: the kernel, falling "
                   "back to fuse-overlayfs where a user namespace cannot)")
    add_store_option(p)
    p.add_argument("--rootfs", metavar="DIR", help="root filesystem directory (default: the "
                   "host's, read-only)")
    p.add_argument("--bind", "-v", metavar="SRC:DST[:ro|rw][,dev]", action="append",
                   default=[], help="bind a host path (read-only unless :rw; device nodes "
                   "in it unusable unless dev)")
    p.add_argument("--device", metavar="HOST[:CONTAINER][:rwm]", action="append", default=[],
                   help="give the sandbox a host device node (at the same path below /dev "
                   "unless CONTAINER); less than rwm makes a device cgroup enforce it")
    p.add_argument("--tmpfs", metavar="DST", action="append", default=[],
                   help="mount a fresh tmpfs")
    p.add_argument("--hostname", default="sandbox")
    p.add_argument("--net", choices=("none", "host"), default="none",
                   help="none: only lo (default); host: the host's network")
    p.add_argument("--env", "-e", metavar="K=V", action="append", default=[],
                   help="set an environment variable (K alone: take it from here)")
    p.add_argument("--workdir", "-w", metavar="DIR", default=None)
    p.add_argument("--user", "-u", metavar="UID[:GID]", default=None)
    p.add_argument("--rw", action="store_true", help="make the root filesystem writable")
    p.add_argument("--privileged", action="store_true",
                   help="keep capabilities, no seccomp, no masked paths")
    p.add_argument("--cap-add", metavar="CAP", action="append", default=[],
                   help="keep this capability")
    p.add_argument("--memory", "-m", metavar="SIZE", help="memory limit, e.g. 256M")
    p.add_argument("--memory-swap", metavar="SIZE", help="memory + swap limit")
    p.add_argument("--cpus", type=float, help="CPU quota in CPUs, e.g. 0.5")
    p.add_argument("--pids-limit", type=int, metavar="N", help="most processes at once")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="kill the command's whole process tree after this long")
    p.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="after a forwarded SIGTERM/SIGINT, kill after this long (default 10)")
    p.add_argument("--init", action="store_true",
                   help="run a tiny init as pid 1 that reaps zombies and forwards signals; "
                   "the command runs as pid 2")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    p.set_defaults(handler=run_command)


def _parse_user(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    uid_s, _, gid_s = value.partition(":")
    try:
        uid = int(uid_s)
        gid = int(gid_s) if gid_s else None
    except ValueError:
        raise UsageError(
            f"isolate run: --user must be UID[:GID] in numbers, not {value!r}") from None
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


def _limits(args: argparse.Namespace) -> Limits | None:
    values: dict[str, Any] = {}
    if args.memory is not None:
        values["memory_max"] = args.memory
    if args.memory_swap is not None:
        values["memory_swap_max"] = args.memory_swap
    if args.cpus is not None:
        values["cpus"] = args.cpus
    if args.pids_limit is not None:
        values["pids_max"] = args.pids_limit
    return Limits(**values) if values else None


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
    from isolate.image import ImageError

    store = open_store(args)
    if args.pull != "always":
        try:
            return store, store.get(name)
        except ImageError:
            if args.pull == "never":
                raise
    bars = progress_for(f"Pulling {name}")
    try:
        return store, store.pull(name, progress=bars)
    finally:
        if bars is not None:
            bars.close()


def run_command(args: argparse.Namespace) -> int:
    image, command = _split_image(args)
    if image is None and not command:
        raise UsageError("isolate run: no command given (isolate run [OPTIONS] -- CMD [ARG...])")
    if args.rootfs is not None and not os.path.isdir(args.rootfs):
        raise ConfigError(f"rootfs {args.rootfs!r} is not a directory")
    uid, gid = _parse_user(args.user)
    options: dict[str, Any] = dict(
        rootfs=args.rootfs, binds=args.bind, devices=args.device, tmpfs=args.tmpfs,
        hostname=args.hostname,
        network=args.net == "host", uid=uid, gid=gid, readonly=not args.rw,
        privileged=args.privileged, limits=_limits(args),
        capabilities=args.cap_add or None, init=args.init,
    )
    if image is not None:
        options["store"], options["image"] = _image(args, image)
        options["readonly"] = args.read_only
        options["overlay"] = args.overlay
    if args.workdir is not None:
        options["cwd"] = args.workdir
    extra_env = _parse_env(args.env)
    with Sandbox(**options) as sb:
        if image is not None:
            if args.entrypoint is not None:
                command = ([args.entrypoint] if args.entrypoint else []) + command
                if not command:
                    raise UsageError("isolate run: --entrypoint '' needs a command")
            else:
                command = sb.image_command(command)
        env = sb.environment()
        env.update(extra_env)
        return _supervise(sb, command, env, args.timeout, args.stop_timeout)


def _supervise(sb: Sandbox, command: list[str], env: dict[str, str],
               timeout: float | None, stop_timeout: float) -> int:
    """Run the command, forward signals, return its exit status the shell's way."""
    waited = {*_FORWARD, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        oom_before = sb.oom_kills()
        proc = sb.popen(command, env=env)
        deadline = None if timeout is None else time.monotonic() + timeout
        kill_at: float | None = None
        while proc.poll() is None:
            wake = [t for t in (deadline, kill_at) if t is not None]
            wait = max(min(wake) - time.monotonic(), 0.0) if wake else 1.0
            info = signal.sigtimedwait(waited, min(wait, 1.0))
            now = time.monotonic()
            if info is not None and info.si_signo != signal.SIGCHLD:
                sig = signal.Signals(info.si_signo)
                # Also a terminal's ^C: the command runs in a session of its own, so the
                # terminal's signals reach only us.
                proc.send_signal(sig)
                if sig in _STOPPING and kill_at is None:
                    kill_at = now + stop_timeout
            if (deadline is not None and now >= deadline) or (
                    kill_at is not None and now >= kill_at):
                proc.kill()
                proc.wait()
        status = proc.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if status < 0:
        if status == -signal.SIGKILL and sb.oom_kills() > oom_before:
            limit = sb.config.limits.memory_max if sb.config.limits else None
            what = f" (limit {_human(limit)})" if limit else ""
            print(f"isolate: killed: out of memory{what}", file=sys.stderr)
        return 128 - status
    return status


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"

