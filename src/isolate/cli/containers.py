"""``isolate create|start|run IMAGE|stop|kill|restart|pause|unpause|wait|rm|rename|exec|
attach|logs|ps|inspect|top|stats|cp|diff|commit|export|port`` and ``isolate container ...``:
Docker's container commands, as thin adapters over :mod:`isolate.container`.

Owns the commands' flags, what they print (Docker's output: ids, names, tables, JSON) and
their exit codes (125 for isolate's own failure, the container's status where Docker passes
it on, 126/127 for exec failures). Every act on a container is one library call; the flags
of ``create``/``run`` are parsed in :mod:`isolate.cli.container_options`, the streams of an
attached container are relayed by :mod:`isolate.cli.terminal`. Importing this module is cheap
(``isolate run -- CMD`` registers it): the library is imported when a command runs.
"""

from __future__ import annotations

import os
import sys
from _collections_abc import Callable, Iterator, Sequence

from isolate import _ctx as contextlib
from isolate._typing import TYPE_CHECKING
from isolate.cli import UsageError
from isolate.cli._common import (
    EXIT_ISOLATE,
    REMAINDER,
    SUPPRESS,
    binary_size,
    confirm,
    decimal_size,
    each,
    env_items,
    parse_filters,
    tree_size,
)
from isolate.cli.container_options import (
    add_create_options,
    config_from_args,
    parse_detach_keys,
)
from isolate.cli.images import (
    add_store_option,
    keep_seccomp_programs,
    open_store,
    progress_for,
)
from isolate.errors import ConfigError, IsolateError, NotFoundError, UnsupportedError

if TYPE_CHECKING:
    import argparse
    from typing import Any, Final

    from isolate.container import Container, ContainerStore

__all__ = ["register", "run_container"]


# -- helpers ----------------------------------------------------------------------------------


def _store(args: argparse.Namespace, *, starts: bool = False) -> ContainerStore:
    """The container store of ``--store``; ``starts``: for a command that starts processes
    (their seccomp programs are kept in the store for the next command)."""
    from isolate.container import ContainerStore

    images = open_store(args)
    if starts:
        keep_seccomp_programs(images)
    return ContainerStore(images)


def _signal_number(value: str) -> int:
    from isolate.container import parse_signal

    return parse_signal(value)


def _seconds_flag(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        raise UsageError(f"isolate: invalid argument \"{value}\" for \"{flag}\" flag: "
                         "strconv.ParseInt: parsing: invalid syntax") from None
    return None if seconds < 0 else float(seconds)


def _supervised_here(c: Container) -> bool:
    """Whether ``c`` is supervised in this process (isolate-shim is not built), so that it
    ends when this command does."""
    try:
        return c.state.supervisor == "inprocess"
    except IsolateError:
        return False


def _warn_if_supervised_here(c: Container) -> None:
    if _supervised_here(c):
        print(f"isolate: warning: isolate-shim is not built: container {c.short_id} is "
              "supervised by this command and ends when it exits", file=sys.stderr)


# -- create and run -----------------------------------------------------------------------

def _split_command(command: Sequence[str], verb: str) -> tuple[str, list[str]]:
    words = list(command)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise UsageError(f"isolate: \"{verb}\" requires at least 1 argument (IMAGE "
                         "[COMMAND] [ARG...])")
    image, rest = words[0], words[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return image, rest


def _pull(args: argparse.Namespace, store: ContainerStore, ref: str) -> None:
    """``--pull``: missing (pull when the store lacks it), always, never."""
    from isolate._image_root import find_image

    bars = progress_for(f"Pulling {ref}")
    try:
        find_image(store.images, ref, str(args.pull), progress=bars)
    finally:
        if bars is not None:
            bars.close()


def _create(args: argparse.Namespace, image: str, command: Sequence[str]) -> Container:
    store = _store(args, starts=True)
    if args.cidfile and os.path.exists(args.cidfile):
        raise ConfigError(f"Container ID file found, make sure the other container isn't "
                          f"running or delete {args.cidfile}")
    config = config_from_args(args, image, command)
    if config.network_mode_kind == "network" or config.extra_networks:
        from isolate.container.netdriver import require_networks

        require_networks(store.images.root, config, store.network_host)
    _pull(args, store, image)
    c = store.create(config, pull=False)
    if args.cidfile:
        try:
            fd = os.open(args.cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o644)
            with os.fdopen(fd, "w") as f:
                f.write(c.id)
        except OSError as exc:
            with contextlib.suppress(IsolateError):
                c.remove(force=True)
            raise ConfigError(f"failed to create the container ID file: {exc.strerror}") \
                from None
    return c


def cmd_create(args: argparse.Namespace) -> int:
    image, command = _split_command(args.command, "create")
    c = _create(args, image, command)
    print(c.id)
    return 0


def run_container(args: argparse.Namespace) -> int:
    """``isolate run IMAGE [CMD...]`` as ``docker run``: create, start, and (unless ``-d``)
    stay attached until the container ends, exiting with its status."""
    from isolate.cli import terminal

    image, command = _split_command(args.command, "run")
    detach = args.detach
    streams = _attach_streams(args)
    if detach and args.attach:
        raise UsageError("isolate: Conflicting options: -a and -d")
    keys = parse_detach_keys(args.detach_keys) if args.detach_keys is not None else None
    if not detach:
        terminal.check_input_tty(args.tty, "stdin" in streams)  # before anything is made
    c = _create(args, image, command)
    try:
        if detach:
            c.start()
            print(c.id, flush=True)
            _warn_if_supervised_here(c)
            return 0
        return terminal.run_attached(c, streams=streams, tty=args.tty,
                                     detach_keys=keys, sig_proxy=args.sig_proxy == "true",
                                     start=True)
    except BaseException:
        if args.rm:
            with contextlib.suppress(IsolateError, OSError):
                if not c.status.running:
                    c.remove(force=True, volumes=True)
        raise


def _attach_streams(args: argparse.Namespace) -> set[str]:
    """The streams ``run`` attaches: ``-a`` as given, else stdout and stderr (and stdin with
    ``-i``), as Docker picks them."""
    from isolate.cli.container_options import _attach

    streams = _attach(args)
    if not streams:
        streams = {"stdout", "stderr"}
        if args.interactive:
            streams.add("stdin")
    return streams


# -- the lifecycle verbs ------------------------------------------------------------------

def cmd_start(args: argparse.Namespace) -> int:
    from isolate.cli import terminal

    store = _store(args, starts=True)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise UsageError("isolate: you cannot start and attach multiple containers at "
                             "once")
        c = store.get(args.containers[0])
        keys = parse_detach_keys(args.detach_keys) if args.detach_keys is not None else None
        cfg = c.config
        streams = {"stdout", "stderr"} | ({"stdin"} if args.interactive else set())
        return terminal.run_attached(c, streams=streams, tty=cfg.tty, detach_keys=keys,
                                     sig_proxy=True, start=True)

    return _starting(store, args.containers, lambda c: c.start())


def _starting(store: ContainerStore, refs: Sequence[str],
              act: Callable[[Container], object]) -> int:
    """:func:`each` for start and restart, which also warn when the containers they started
    end with this command (no isolate-shim)."""
    started: list[Container] = []

    def one(ref: str) -> None:
        c = store.get(ref)
        act(c)
        started.append(c)
    code = each(refs, one)
    for c in started:
        _warn_if_supervised_here(c)
    return code


def cmd_stop(args: argparse.Namespace) -> int:
    store = _store(args)
    timeout = _seconds_flag(args.timeout, "--timeout")
    sig = _signal_number(args.signal) if args.signal is not None else None
    return each(args.containers, lambda ref: store.get(ref).stop(timeout=timeout, sig=sig))


def cmd_kill(args: argparse.Namespace) -> int:
    store = _store(args)
    sig = _signal_number(args.signal)
    return each(args.containers, lambda ref: store.get(ref).kill(sig))


def cmd_restart(args: argparse.Namespace) -> int:
    store = _store(args, starts=True)
    timeout = _seconds_flag(args.timeout, "--timeout")
    return _starting(store, args.containers, lambda c: c.restart(timeout=timeout))


def cmd_pause(args: argparse.Namespace) -> int:
    store = _store(args)
    return each(args.containers, lambda ref: store.get(ref).pause())


def cmd_unpause(args: argparse.Namespace) -> int:
    store = _store(args)
    return each(args.containers, lambda ref: store.get(ref).unpause())


def cmd_wait(args: argparse.Namespace) -> int:
    store = _store(args)

    def wait(ref: str) -> None:
        print(store.get(ref).wait().exit_code, flush=True)
    return each(args.containers, wait, echo=False)


def cmd_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    return each(args.containers,
                 lambda ref: store.get(ref).remove(force=args.force, volumes=args.volumes))


def cmd_rename(args: argparse.Namespace) -> int:
    _store(args).get(args.container).rename(args.new_name)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if not args.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    filters = parse_filters(args.filter)
    store = _store(args)
    if filters:
        unknown = set(filters) - {"label", "until"}
        if unknown:
            raise ConfigError(f"invalid filter '{sorted(unknown)[0]}'")
    removed = []
    freed = 0
    from isolate.container import matches

    for c in store.list(all=True):
        try:
            if c.status.running:
                continue
            if "label" in filters and not matches(c, {"label": filters["label"]}):
                continue
            if "until" in filters and not _created_before(c, filters["until"]):
                continue
            size = tree_size(c.upper_dir)
            c.remove()
        except IsolateError:
            continue
        removed.append(c.id)
        freed += size
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    print(f"Total reclaimed space: {decimal_size(freed)}")
    return 0


def _created_before(c: Container, values: Sequence[str]) -> bool:
    from isolate.container.logs import parse_log_time
    from isolate.container.state import parse_time

    created = parse_time(c.created)
    return all(created < parse_log_time(v) for v in values)


# -- exec, attach, logs -------------------------------------------------------------------

def cmd_exec(args: argparse.Namespace) -> int:
    from isolate.cli import terminal

    store = _store(args, starts=True)
    c = store.get(args.container)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("isolate: \"exec\" requires at least 2 arguments (CONTAINER "
                         "COMMAND [ARG...])")
    env = env_items(args.env, args.env_file)
    options: dict[str, Any] = {"env": env, "privileged": args.privileged}
    if args.user is not None:
        options["user"] = args.user
    if args.workdir is not None:
        options["workdir"] = args.workdir
    keys = parse_detach_keys(args.detach_keys) if args.detach_keys is not None else None
    return terminal.exec_attached(c, command, options, interactive=args.interactive,
                                  tty=args.tty, detach=args.detach, detach_keys=keys)


def cmd_attach(args: argparse.Namespace) -> int:
    from isolate.cli import terminal

    c = _store(args).get(args.container)
    st = c.state
    if not st.status.running:
        raise _attach_error(c, "You cannot attach to a stopped container, start it first")
    if st.status.value == "paused":
        raise _attach_error(c, "You cannot attach to a paused container, unpause it first")
    keys = parse_detach_keys(args.detach_keys) if args.detach_keys is not None else None
    cfg = c.config
    streams = {"stdout", "stderr"}
    if not args.no_stdin and cfg.open_stdin:
        streams.add("stdin")
    return terminal.run_attached(c, streams=streams, tty=cfg.tty, detach_keys=keys,
                                 sig_proxy=args.sig_proxy == "true", start=False)


def _attach_error(c: Container, message: str) -> IsolateError:
    from isolate.errors import StateError

    return StateError(message, current=c.state.status.value, requested="attach")


def cmd_logs(args: argparse.Namespace) -> int:
    c = _store(args).get(args.container)
    tail: int | None = None
    if args.tail not in ("all", "-1"):
        try:
            tail = int(args.tail)
        except ValueError:
            raise UsageError(f"isolate: invalid argument \"{args.tail}\" for \"-n, --tail\" "
                             "flag: expected a number or all") from None
        if tail < 0:
            tail = None
    records = c.logs(follow=args.follow, tail=tail, since=args.since, until=args.until)
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    with _closing(records):
        for rec in records:
            stream = out if rec.stream == "stdout" else err
            if args.timestamps:
                stream.write(rec.time.encode() + b" ")
            stream.write(rec.data)
            stream.flush()
    return 0


@contextlib.contextmanager
def _closing(it: Iterator[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


# -- ps, inspect, top, stats, port --------------------------------------------------------

_PS_HEADERS: Final = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                      "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
                      "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
                      "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
                      "LocalVolumes": "LOCAL VOLUMES"}
_PS_TABLE: Final = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
                    "{{.Ports}}\t{{.Names}}")


#: The ``ps -f`` keys isolate.container.matches knows, and Docker's statuses.
_PS_FILTERS: Final = ("id", "name", "label", "status", "exited", "ancestor", "volume")
_STATUSES: Final = ("created", "restarting", "running", "removing", "paused", "exited",
                    "dead")


def cmd_ps(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_rows

    store = _store(args)
    filters = parse_filters(args.filter)
    for key, values in filters.items():
        if key not in _PS_FILTERS:
            raise ConfigError(f"invalid filter '{key}'")
        bad = [v for v in values if key == "status" and v not in _STATUSES]
        if bad:
            raise ConfigError(f"invalid filter 'status={bad[0]}'")
    latest = 1 if args.latest else args.last
    everything = args.all or (latest is not None and latest >= 0)
    try:
        rows = store.ps(all=everything, filters=filters or None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if latest is not None and latest >= 0:
        rows = rows[:latest]
    fields = []
    for row in rows:
        f = row.fields()
        if args.no_trunc:
            f["ID"] = row.id
            f["Command"] = _full_command(store, row)
        if args.size:
            f["Size"] = _size_text(store, row.id)
        fields.append(f)
    if args.quiet and args.format is None:
        for f in fields:
            print(f["ID"])
        return 0
    table = _PS_TABLE + ("\t{{.Size}}" if args.size else "")
    print_rows(fields, args.format, table, _PS_HEADERS)
    return 0


def _full_command(store: ContainerStore, row: Any) -> str:
    try:
        return '"' + " ".join(store.get(row.id).command) + '"'
    except IsolateError:
        return str(row.command)


def _size_text(store: ContainerStore, cid: str) -> str:
    try:
        c = store.get(cid)
        rw = tree_size(c.upper_dir)
        virtual = rw + int(c.image.size)
    except (IsolateError, OSError):
        return "0B"
    return f"{decimal_size(rw)} (virtual {decimal_size(virtual)})"


def cmd_inspect(args: argparse.Namespace) -> int:
    """``isolate inspect``: containers, images and volumes, as ``docker inspect`` tries
    them (in that order, or only ``--type``)."""
    from isolate.cli.formatting import print_inspect

    kinds = [args.type] if args.type else ["container", "image", "volume"]
    store = _store(args)
    found: list[Any] = []
    failed = False
    for ref in args.objects:
        obj = _inspect_one(store, ref, kinds, size=args.size)
        if obj is None:
            what = args.type or "object"
            print(f"isolate: No such {what}: {ref}", file=sys.stderr)
            failed = True
            continue
        found.append(obj)
    print_inspect(found, args.format)
    return EXIT_ISOLATE if failed else 0


def _inspect_one(store: ContainerStore, ref: str, kinds: Sequence[str], *,
                 size: bool) -> Any:
    from isolate.errors import AmbiguousError, ImageError

    for kind in kinds:
        try:
            if kind == "container":
                c = store.get(ref)
                doc = c.inspect()
                if size:
                    rw = tree_size(c.upper_dir)
                    doc["SizeRw"] = rw
                    with contextlib.suppress(IsolateError):
                        doc["SizeRootFs"] = rw + int(c.image.size)
                return doc
            if kind == "image":
                from isolate.cli.images import inspect_doc

                return inspect_doc(store.images, store.images.get(ref))
            if kind == "volume":
                return store.volumes.get(ref).inspect()
        except AmbiguousError:
            raise
        except (NotFoundError, ImageError, ConfigError):
            continue
    return None


def cmd_top(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import tabwrite

    if args.ps_args:
        raise UnsupportedError("isolate top: ps options are not supported (isolate lists "
                               "ps -ef's columns)", missing="ps options")
    titles, rows = _store(args).get(args.container).top()
    print(tabwrite(["\t".join(titles), *("\t".join(r) for r in rows)], minwidth=20))
    return 0


_STATS_HEADERS: Final = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
                         "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                         "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                         "PIDs": "PIDS"}
_STATS_TABLE: Final = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                       "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


def _stats_fields(c: Container, reading: Any, ref: str, no_trunc: bool) -> dict[str, str]:
    return {
        "Container": ref, "ID": c.id if no_trunc else c.short_id, "Name": c.name,
        "CPUPerc": f"{reading.cpu_percent:.2f}%",
        "MemUsage": f"{binary_size(reading.memory_usage)} / "
                    f"{binary_size(reading.memory_limit)}",
        "MemPerc": f"{reading.memory_percent:.2f}%", "NetIO": "0B / 0B",
        "BlockIO": f"{decimal_size(reading.block_read)} / "
                   f"{decimal_size(reading.block_write)}",
        "PIDs": str(reading.pids),
    }


def cmd_stats(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_rows

    store = _store(args)
    if args.containers:
        targets = [(ref, store.get(ref)) for ref in args.containers]
    else:
        targets = [(c.short_id, c) for c in store.list(all=args.all)]
    import threading  # here: only stats samples in threads

    while True:
        readings: dict[str, Any] = {}

        def sample(c: Container, into: dict[str, Any]) -> None:
            try:
                into[c.id] = c.stats(interval=0.5)
            except IsolateError as exc:
                into[c.id] = exc
        threads = [threading.Thread(target=sample, args=(c, readings), daemon=True)
                   for _, c in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = []
        for ref, c in targets:
            got = readings.get(c.id)
            if isinstance(got, IsolateError):
                if args.containers and args.no_stream:
                    raise got
                continue
            rows.append(_stats_fields(c, got, ref, args.no_trunc))
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print_rows(rows, args.format, _STATS_TABLE, _STATS_HEADERS)
        sys.stdout.flush()
        if args.no_stream or (not rows and args.containers):
            return 0


def cmd_port(args: argparse.Namespace) -> int:
    c = _store(args).get(args.container)
    ports = c.inspect().get("NetworkSettings", {}).get("Ports") or {}
    if args.port is None:
        for key, bindings in sorted(ports.items()):
            for b in bindings or ():
                print(f"{key} -> {b.get('HostIp', '')}:{b.get('HostPort', '')}")
        return 0
    port, _, proto = args.port.partition("/")
    key = f"{port}/{proto or 'tcp'}"
    bindings = ports.get(key)
    if not bindings:
        raise NotFoundError(f"No public port '{key}' published for {args.container}",
                            kind="port", ref=key)
    for b in bindings:
        print(f"{b.get('HostIp', '')}:{b.get('HostPort', '')}")
    return 0


# -- files: cp, diff, commit, export ------------------------------------------------------

def _container_path(spec: str) -> tuple[str, str] | None:
    """``CONTAINER:PATH`` as ``docker cp`` reads it (a local path with a ``:`` must start
    with ``/`` or ``.``)."""
    if spec.startswith(("/", ".")) or spec == "-":
        return None
    name, sep, path = spec.partition(":")
    if not sep or not name:
        return None
    return name, path


def cmd_cp(args: argparse.Namespace) -> int:
    src, dst = _container_path(args.src), _container_path(args.dst)
    if src is not None and dst is not None:
        raise UsageError("isolate: copying between containers is not supported")
    if src is None and dst is None:
        raise UsageError("isolate: must specify at least one container source")
    store = _store(args)
    if src is not None:
        c = store.get(src[0])
        if args.dst == "-":
            c.get_archive(src[1] or "/", sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            c.copy_from(src[1] or "/", args.dst)
        return 0
    assert dst is not None
    c = store.get(dst[0])
    if args.src == "-":
        c.put_archive(dst[1] or "/", sys.stdin.buffer)
    else:
        c.copy_to(args.src, dst[1] or "/")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    for change in _store(args).get(args.container).diff():
        print(change)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    c = _store(args).get(args.container)
    img = c.commit(args.repository, author=args.author or "", message=args.message or "",
                   changes=args.change, pause=args.pause == "true")
    print(img.id)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    c = _store(args).get(args.container)
    if args.output is None:
        if sys.stdout.isatty():
            raise UsageError("isolate: cowardly refusing to save to a terminal. Use the -o "
                             "flag or redirect")
        c.export(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    tmp = f"{args.output}.isolate-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            c.export(f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, args.output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return 0


# -- the parsers ----------------------------------------------------------------------------

class _Adder:
    """Adds one command's parser to a subparsers action (the top-level ``isolate X`` and
    ``isolate container X`` share the definitions)."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def __call__(self, name: str, help: str, handler: Callable[[argparse.Namespace], int],
                 usage: str | None = None, aliases: Sequence[str] = ()
                 ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.sub.add_parser(
            name, help=help, description=help[:1].upper() + help[1:], usage=usage,
            aliases=list(aliases))
        add_store_option(p)
        p.set_defaults(handler=handler)
        return p


def _containers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", metavar="CONTAINER", nargs="+")


def _define(add: _Adder, *, group: bool = False) -> None:
    """Define the container commands with ``add`` (``group``: as ``isolate container ...``,
    where ``inspect`` inspects containers only, as ``docker container inspect``)."""
    p = add("create", "create a new container", cmd_create,
            usage="isolate create [OPTIONS] IMAGE [COMMAND] [ARG...]")
    add_create_options(p)
    p.add_argument("command", nargs=REMAINDER, metavar="IMAGE [COMMAND [ARG...]]")

    p = add("start", "start one or more stopped containers", cmd_start)
    p.add_argument("-a", "--attach", action="store_true",
                   help="attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="attach STDIN")
    p.add_argument("--detach-keys", metavar="KEYS", default=None,
                   help="the keys that detach (default ctrl-p,ctrl-q)")
    _containers_arg(p)

    p = add("stop", "stop one or more running containers", cmd_stop)
    p.add_argument("-t", "--timeout", "--time", metavar="SECONDS", default=None,
                   help="seconds to wait before killing (default: the container's, 10)")
    p.add_argument("-s", "--signal", metavar="SIGNAL", default=None,
                   help="signal to stop it with (default: the container's stop signal)")
    _containers_arg(p)

    p = add("kill", "kill one or more running containers", cmd_kill)
    p.add_argument("-s", "--signal", metavar="SIGNAL", default="KILL",
                   help="signal to send (default KILL)")
    _containers_arg(p)

    p = add("restart", "restart one or more containers", cmd_restart)
    p.add_argument("-t", "--timeout", "--time", metavar="SECONDS", default=None,
                   help="seconds to wait for the stop before killing")
    _containers_arg(p)

    p = add("pause", "pause all processes within one or more containers", cmd_pause)
    _containers_arg(p)
    p = add("unpause", "unpause all processes within one or more containers", cmd_unpause)
    _containers_arg(p)
    p = add("wait", "block until containers stop, then print their exit codes", cmd_wait)
    _containers_arg(p)

    p = add("rm", "remove one or more containers", cmd_rm, aliases=())
    p.add_argument("-f", "--force", action="store_true",
                   help="force the removal of a running container (SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="remove the anonymous volumes of the container")
    _containers_arg(p)

    p = add("rename", "rename a container", cmd_rename)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")

    p = add("exec", "execute a command in a running container", cmd_exec,
            usage="isolate exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    p.add_argument("-d", "--detach", action="store_true",
                   help="run the command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-e", "--env", metavar="K=V", action="append", default=[],
                   help="set an environment variable")
    p.add_argument("--env-file", metavar="FILE", action="append", default=[],
                   help="read environment variables from a file")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", default=None,
                   help="user name or uid, and group (from the container's /etc/passwd)")
    p.add_argument("-w", "--workdir", metavar="DIR", default=None,
                   help="working directory inside the container")
    p.add_argument("--privileged", action="store_true",
                   help="give the command extended privileges")
    p.add_argument("--detach-keys", metavar="KEYS", default=None,
                   help="the keys that detach (default ctrl-p,ctrl-q)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND [ARG...]")

    p = add("attach", "attach local standard input, output, and error streams to a "
            "running container", cmd_attach)
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--sig-proxy", choices=("true", "false"), default="true",
                   help="proxy the signals received to the container (default true)")
    p.add_argument("--detach-keys", metavar="KEYS", default=None,
                   help="the keys that detach (default ctrl-p,ctrl-q)")
    p.add_argument("container", metavar="CONTAINER")

    p = add("logs", "fetch the logs of a container", cmd_logs)
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-n", "--tail", metavar="N", default="all",
                   help="number of lines to show from the end of the logs (default all)")
    p.add_argument("--since", metavar="TIME", default=None,
                   help="show logs since a time (RFC 3339, or relative: 42m)")
    p.add_argument("--until", metavar="TIME", default=None,
                   help="show logs before a time (RFC 3339, or relative: 42m)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("--details", action="store_true", help="accepted; there are no extra "
                   "attributes")
    p.add_argument("container", metavar="CONTAINER")

    p = add("ps", "list containers", cmd_ps, aliases=())
    p.add_argument("-a", "--all", action="store_true",
                   help="show all containers (default: only running ones)")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container ids")
    p.add_argument("-n", "--last", metavar="N", type=_int_flag("-n, --last"), default=None,
                   help="show the N last created containers (all states)")
    p.add_argument("-l", "--latest", action="store_true",
                   help="show the latest created container (all states)")
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    p.add_argument("-f", "--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="filter: status=, name=, label=, id=, exited=, ancestor=, volume=")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("--format", metavar="FORMAT", default=None,
                   help="table, table TEMPLATE, json, or a Go template")

    p = add("inspect", "display detailed information on one or more containers" if group
            else "return low-level information on containers, images or volumes", cmd_inspect)
    _inspect_flags(p)
    if group:
        p.set_defaults(type="container")

    p = add("top", "display the running processes of a container", cmd_top)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=REMAINDER, metavar="[ps OPTIONS]")

    p = add("stats", "display a live stream of container resource usage statistics",
            cmd_stats)
    p.add_argument("-a", "--all", action="store_true",
                   help="show all containers (default: only running ones)")
    p.add_argument("--no-stream", action="store_true",
                   help="one reading, then exit")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("--format", metavar="FORMAT", default=None,
                   help="table, table TEMPLATE, json, or a Go template")
    p.add_argument("containers", metavar="CONTAINER", nargs="*")

    p = add("port", "list port mappings or a specific mapping for the container", cmd_port)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", metavar="PRIVATE_PORT[/PROTO]", nargs="?", default=None)

    p = add("cp", "copy files/folders between a container and the local filesystem", cmd_cp,
            usage="isolate cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                  "       isolate cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")
    p.add_argument("-a", "--archive", action="store_true",
                   help="archive mode (owners are always kept)")
    p.add_argument("-L", "--follow-link", action="store_true", help=SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="suppress progress output")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DEST")

    p = add("diff", "inspect changes to files or directories on a container's filesystem",
            cmd_diff)
    p.add_argument("container", metavar="CONTAINER")

    p = add("commit", "create a new image from a container's changes", cmd_commit)
    p.add_argument("-a", "--author", metavar="AUTHOR", default=None,
                   help='author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-m", "--message", metavar="MESSAGE", default=None,
                   help="commit message")
    p.add_argument("-c", "--change", metavar="INSTRUCTION", action="append", default=[],
                   help="apply a Dockerfile instruction to the image (CMD, ENV, LABEL ...)")
    p.add_argument("-p", "--pause", choices=("true", "false"), default="true",
                   help="pause the container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", metavar="REPOSITORY[:TAG]", nargs="?", default=None)

    p = add("export", "export a container's filesystem as a tar archive", cmd_export)
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write to a file instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")


def _inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", metavar="TEMPLATE", default=None,
                   help="a Go template (e.g. '{{.State.Status}}'), or json")
    p.add_argument("-s", "--size", action="store_true",
                   help="display total file sizes (containers)")
    p.add_argument("--type", choices=("container", "image", "volume"), default=None,
                   help="only this kind of object")
    p.add_argument("objects", metavar="NAME|ID", nargs="+")


def _int_flag(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            import argparse  # (loaded: this runs while argparse parses)

            raise argparse.ArgumentTypeError(
                f"invalid argument \"{text}\" for \"{flag}\" flag: strconv.ParseInt: "
                "parsing: invalid syntax") from None
    return parse


def register(sub: Any) -> None:
    """Add the container commands (and ``isolate container ...``) to the CLI's subparsers,
    give ``isolate run`` the container flags, and make ``isolate inspect`` Docker's
    (containers, then images, then volumes). Call after the run and image commands are
    registered."""
    import argparse

    from isolate.cli import volumes

    inspect = getattr(sub, "choices", {}).get("inspect")
    if not isinstance(inspect, argparse.ArgumentParser):
        inspect = None
    plain = _Adder(sub)
    if inspect is not None:
        # 'isolate inspect' of the image commands: Docker's, which tries each kind.
        for action in list(inspect._actions):
            if action.dest == "images":
                inspect._remove_action(action)
                for s in action.option_strings:
                    inspect._option_string_actions.pop(s, None)
        inspect.description = "Return low-level information on containers, images or " \
            "volumes"
        _inspect_flags(inspect)
        inspect.set_defaults(handler=cmd_inspect)
        _set_help(sub, "inspect", "return low-level information on containers, images or "
                  "volumes")
        _define_without(plain, {"inspect"})
    else:
        _define(plain)
    group = sub.add_parser("container", help="manage containers",
                           description="Manage containers")
    gsub = group.add_subparsers(dest="container_command", metavar="COMMAND",
                                parser_class=type(group))
    gsub.required = True
    _define(_Adder(gsub), group=True)
    p = _Adder(gsub)("ls", "list containers", cmd_ps)
    ps = getattr(gsub, "choices", {}).get("ps")
    if isinstance(ps, argparse.ArgumentParser):
        _ps_flags_from(ps, p)
    p = _Adder(gsub)("prune", "remove all stopped containers", cmd_prune)
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for "
                   "confirmation")
    p.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="label=..., until=...")
    p = _Adder(gsub)("run", "create and run a new container from an image", _run_in_group,
                     usage="isolate container run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    add_create_options(p, run=True)
    p.add_argument("command", nargs=REMAINDER, metavar="IMAGE [COMMAND [ARG...]]")
    volumes.register(sub)


def _set_help(sub: Any, name: str, text: str) -> None:
    """The line ``isolate --help`` shows for ``name``."""
    for action in getattr(sub, "_choices_actions", []):
        if getattr(action, "dest", None) == name:
            action.help = text


def _run_in_group(args: argparse.Namespace) -> int:
    if list(args.command)[:1] == ["--"] or not args.command:
        raise UsageError("isolate container run: needs an IMAGE (isolate container run "
                         "[OPTIONS] IMAGE [COMMAND] [ARG...])")
    return run_container(args)


def _ps_flags_from(src: argparse.ArgumentParser, dst: argparse.ArgumentParser) -> None:
    for action in src._actions:
        if action.option_strings and action.dest not in ("help", "store"):
            dst._add_action(action)


def _define_without(add: _Adder, skip: set[str]) -> None:
    class Skipping(_Adder):
        def __call__(self, name: str, *a: Any, **kw: Any) -> argparse.ArgumentParser:
            if name in skip:
                import argparse  # (loaded: this runs while the parser is built)

                return argparse.ArgumentParser(add_help=False)  # built and dropped
            return super().__call__(name, *a, **kw)
    _define(Skipping(add.sub))

