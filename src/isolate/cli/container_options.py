"""The flags of ``isolate create`` and ``isolate run IMAGE``: Docker's names, parsed into one
:class:`isolate.container.ContainerConfig`.

Owns the one list of container flags (:data:`CREATE_OPTIONS`), adding them to a parser
(:func:`add_create_options`, which also fits them around the flags ``isolate run`` already has
for sandboxes), and turning parsed flags into a config (:func:`config_from_args`): env files,
label files, ``--security-opt``, ``--log-opt``, the limits, and the network flags (parsed by
:mod:`isolate.net.options`; the modes this isolate cannot run yet are refused here, at create,
as Docker refuses an unknown network). Every value the library validates is left to it: its
``ConfigError`` names what is wrong. No container logic: nothing is made here.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING
from isolate.cli._common import (
    REMAINDER,
    SUPPRESS,
    env_items,
    read_env_file,
)
from isolate.cli._common import option as _o
from isolate.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any, Final

    from isolate.cgroups import Limits
    from isolate.cli._common import Option
    from isolate.container import ContainerConfig

__all__ = [
    "CREATE_OPTIONS",
    "DEFAULT_DETACH_KEYS",
    "REMAINDER",
    "Default",
    "add_create_options",
    "config_from_args",
    "given",
    "new_options",
    "parse_detach_keys",
    "release_short_help",
]

#: Docker's detach keys: ctrl-p ctrl-q.
DEFAULT_DETACH_KEYS: Final = "ctrl-p,ctrl-q"


class Default(str):
    """A default value that a flag left alone (so a command can tell ``--x v`` from no
    ``--x`` even where the value is the same)."""

    __slots__ = ()


def given(value: object) -> bool:
    """Whether a flag's value was given on the command line (not its :class:`Default`,
    not None, not an empty list, not False)."""
    return not isinstance(value, Default) and value not in (None, False, [])


def _many(metavar: str, help: str, dest: str | None = None) -> dict[str, Any]:
    kw: dict[str, Any] = {"metavar": metavar, "action": "append", "default": [], "help": help}
    if dest:
        kw["dest"] = dest
    return kw


#: The container flags of ``create``/``run``, in ``docker create --help``'s words. Their
#: ``dest`` names agree with the sandbox flags of ``isolate run`` where both have a flag.
CREATE_OPTIONS: Final = [
    _o("--name", metavar="NAME", default=None, help="assign a name to the container"),
    _o("-e", "--env", **_many("K=V", "set an environment variable (K alone: take it from "
                                    "here, if set)")),
    _o("--env-file", **_many("FILE", "read environment variables from a file")),
    _o("-l", "--label", **_many("K=V", "set a label on the container", dest="label")),
    _o("--label-file", **_many("FILE", "read labels from a file (one K=V per line)")),
    _o("-v", "--volume", **_many("[SRC:]DST[:OPTS]", "bind a host path or a named volume, or "
                                 "make an anonymous volume (OPTS: ro, rw, nocopy)",
                                 dest="bind")),
    _o("--mount", **_many("type=...,...", "attach a mount: type=bind|volume|tmpfs,"
                                          "source=...,target=...[,readonly]")),
    _o("--tmpfs", **_many("DST[:OPTS]", "mount a tmpfs (OPTS: size=64m,mode=1777,exec,ro)")),
    _o("-w", "--workdir", metavar="DIR", default=None,
       help="working directory inside the container"),
    _o("-u", "--user", metavar="USER[:GROUP]", default=None,
       help="user name or uid, and group name or gid, from the image's /etc/passwd and "
            "/etc/group"),
    _o("--group-add", **_many("GROUP", "add a supplementary group")),
    _o("-h", "--hostname", metavar="NAME", default=None,
       help="container host name (default: its short id)"),
    _o("--domainname", metavar="NAME", default=None, help="container NIS domain name"),
    _o("--entrypoint", metavar="CMD", default=None,
       help="overwrite the image's Entrypoint ('' for none)"),
    _o("--read-only", action="store_true", help="mount the container's root read-only"),
    _o("--cap-add", **_many("CAP", "add a Linux capability (ALL for every one)")),
    _o("--cap-drop", **_many("CAP", "drop a Linux capability (ALL for every one)")),
    _o("--privileged", action="store_true",
       help="every capability, no seccomp, no masked paths, every device"),
    _o("--device", **_many("HOST[:CONTAINER][:rwm]",
                            "give the container a host device node (its device cgroup "
                            "allows it with that access)", dest="device")),
    _o("--security-opt", **_many("OPT", "seccomp=unconfined|FILE, no-new-privileges")),
    _o("--sysctl", **_many("K=V", "set a namespaced kernel parameter")),
    _o("--ulimit", **_many("NAME=SOFT[:HARD]", "set a resource limit (-1: unlimited)")),
    _o("-m", "--memory", metavar="SIZE", default=None, help="memory limit, e.g. 256m"),
    _o("--memory-swap", metavar="SIZE", default=None,
       help="memory plus swap limit (-1: unlimited swap)"),
    _o("--cpus", metavar="N", default=None, help="number of CPUs, e.g. 1.5"),
    _o("-c", "--cpu-shares", metavar="N", default=None, help="CPU shares (relative weight)"),
    _o("--cpuset-cpus", metavar="LIST", default=None, help="CPUs to run on (0-3, 0,1)"),
    _o("--cpuset-mems", metavar="LIST", default=None, help="memory nodes to use (0-3, 0,1)"),
    _o("--pids-limit", metavar="N", default=None, help="most processes (-1: unlimited)"),
    _o("--shm-size", metavar="SIZE", default=None, help="size of /dev/shm (default 64m)"),
    _o("--restart", metavar="POLICY", default=None,
       help="no, on-failure[:N], always or unless-stopped"),
    _o("--rm", action="store_true", help="remove the container when it exits"),
    _o("--init", action="store_true",
       help="run an init inside the container that forwards signals and reaps processes"),
    _o("--stop-signal", metavar="SIGNAL", default=None,
       help="signal to stop the container (default: the image's, else SIGTERM)"),
    _o("--stop-timeout", metavar="SECONDS", default=None,
       help="seconds to wait for it to stop before SIGKILL (default 10)"),
    _o("-t", "--tty", action="store_true", help="allocate a pseudo-TTY"),
    _o("-i", "--interactive", action="store_true", help="keep STDIN open even if not attached"),
    _o("-a", "--attach", **_many("STREAM", "attach to STDIN, STDOUT or STDERR")),
    _o("--cidfile", metavar="FILE", default=None, help="write the container id to FILE"),
    _o("--pull", choices=("missing", "always", "never"), default=Default("missing"),
       help="pull the image before creating: missing (default), always, never"),
    _o("--log-driver", metavar="DRIVER", default=None, help="json-file (the only one)"),
    _o("--log-opt", **_many("K=V", "log driver options: max-size=10m, max-file=3")),
    _o("--network", "--net", metavar="MODE", action="append", default=None, dest="network",
       help="none (the default without -p), host, container:NAME, bridge (the default "
            "with -p), a network's name (again: one more network), pasta, slirp4netns"),
    _o("--add-host", **_many("HOST:IP", "add a line to /etc/hosts")),
    _o("--dns", **_many("IP", "a DNS server (needs a network of its own)")),
    _o("--dns-search", **_many("DOMAIN", "a DNS search domain")),
    _o("--dns-option", **_many("OPT", "a DNS option")),
    _o("-p", "--publish", **_many("[IP:]HOST:CTR[/PROTO]", "publish a container's port")),
    _o("-P", "--publish-all", action="store_true", help="publish every exposed port"),
    _o("--expose", **_many("PORT[/PROTO]", "expose a port")),
    _o("--network-alias", **_many("NAME", "a name on the network")),
    _o("--ip", metavar="IP", default=None, help="IPv4 address on the network"),
    _o("--ip6", metavar="IP", default=None, help="IPv6 address on the network"),
]

#: Only for ``run``: detached, and the keys that detach an attached terminal.
RUN_OPTIONS: Final = [
    _o("-d", "--detach", action="store_true",
       help="run the container in the background and print its id"),
    _o("--detach-keys", metavar="KEYS", default=None,
       help="the keys that detach from the container (default ctrl-p,ctrl-q)"),
    _o("--sig-proxy", choices=("true", "false"), default="true",
       help="proxy the signals this command receives to the container (not with -t)"),
]


def new_options(existing: Mapping[str, str], options: Sequence[Option]) -> list[Option]:
    """What adding ``options`` to a parser that has the flags ``existing`` (option string ->
    ``dest``) adds: each flag it lacks, as it is; of a flag it has under another spelling, the
    missing spellings, with its ``dest`` and no default of their own (the flag's default is
    the one it has)."""
    added = []
    for flags, kw in options:
        missing = tuple(f for f in flags if f not in existing)
        if not missing:
            continue
        if len(missing) < len(flags):
            kept = existing[next(f for f in flags if f in existing)]
            kw = {k: v for k, v in kw.items() if k not in ("dest", "default")}
            kw.update(dest=kept, default=SUPPRESS)
        added.append((missing, kw))
    return added


def release_short_help(p: argparse.ArgumentParser) -> None:
    """Take ``-h`` from ``p``'s help (``--help`` stays), for ``--hostname``, as in Docker."""
    import argparse

    if not isinstance(p, argparse.ArgumentParser):
        return  # the parser of a command that is not being run (see isolate.cli.build_parser)
    existing = p._option_string_actions
    helper = existing.get("-h")
    if helper is not None and isinstance(helper, argparse._HelpAction):
        helper.option_strings = [s for s in helper.option_strings if s != "-h"]
        del existing["-h"]


def add_create_options(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    """Add the container flags (and ``run``'s own with ``run=True``) to ``p``. A flag whose
    option strings ``p`` already has is kept, and only its missing spellings are added, with
    the same ``dest`` (:func:`new_options`); ``-h`` becomes ``--hostname``'s, as in Docker
    (``--help`` stays)."""
    import argparse

    if not isinstance(p, argparse.ArgumentParser):
        return  # the parser of a command that is not being run (see isolate.cli.build_parser)
    release_short_help(p)
    existing = {s: a.dest for s, a in p._option_string_actions.items()}
    for flags, kw in new_options(existing, [*CREATE_OPTIONS, *(RUN_OPTIONS if run else [])]):
        p.add_argument(*flags, **kw)


# -- files ----------------------------------------------------------------------------------

def _labels(args: argparse.Namespace) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in [*(x for p in args.label_file for x in read_env_file(p, "label")),
                 *args.label]:
        key, _, value = item.partition("=")
        if not key:
            raise ConfigError(f"invalid label: {item!r}")
        labels[key] = value
    return labels


# -- security, logs, limits -----------------------------------------------------------------

def _security(opts: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # Docker's older spelling
        if key == "no-new-privileges":
            if sep and value not in ("true", "false"):
                raise ConfigError(f"invalid --security-opt: {opt!r}")
            out["no_new_privileges"] = not sep or value == "true"
        elif key == "seccomp" and sep and value:
            out["seccomp"] = value
        elif (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
            continue  # loosens what this host does not apply anyway
        elif key in ("apparmor", "label", "systempaths", "mask", "unmask"):
            raise UnsupportedError(f"--security-opt {opt}: isolate applies no {key} "
                                   "options", missing=f"--security-opt {key}")
        else:
            raise ConfigError(f"invalid --security-opt: {opt!r}")
    return out


def _log_options(args: argparse.Namespace) -> dict[str, Any]:
    driver = getattr(args, "log_driver", None)
    if driver not in (None, "json-file"):
        raise UnsupportedError(f"--log-driver {driver}: isolate writes Docker's json-file "
                               "log only", missing=f"log driver {driver}")
    out: dict[str, Any] = {}
    for opt in args.log_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            raise ConfigError(f"invalid log opt format: {opt}")
        if key == "max-size":
            out["log_max_size"] = value
        elif key == "max-file":
            if not value.isdigit():
                raise ConfigError(f"invalid value for max-file: {value}")
            out["log_max_file"] = int(value)
        else:
            raise ConfigError(f"unknown log opt '{key}' for json-file log driver")
    return out


def _limits(args: argparse.Namespace) -> Limits | None:
    from isolate._units import parse_decimal, parse_size
    from isolate.cgroups import Limits
    from isolate.cgroups.limits import MAX_PIDS

    values: dict[str, Any] = {}
    if given(args.memory):
        values["memory_max"] = args.memory
    if given(args.memory_swap) and args.memory_swap != "-1":
        # Docker's --memory-swap counts memory and swap together; Limits counts swap.
        if not given(args.memory):
            raise ConfigError("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
        memory = parse_size(args.memory, name="--memory")
        total = parse_size(args.memory_swap, name="--memory-swap")
        if total < memory:
            raise ConfigError("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
        values["memory_swap_max"] = total - memory
    if given(args.cpus):
        values["cpus"] = args.cpus
    shares = getattr(args, "cpu_shares", None)
    if given(shares):
        n = parse_decimal(str(shares), name="--cpu-shares", maximum=262144)
        if n:  # 0: the default weight, as Docker reads it
            n = max(n, 2)
            values["cpu_weight"] = 1 + ((n - 2) * 9999) // 262142  # runc's conversion
    for flag, field in (("cpuset_cpus", "cpuset_cpus"), ("cpuset_mems", "cpuset_mems")):
        if given(getattr(args, flag, None)):
            values[field] = getattr(args, flag)
    if given(args.pids_limit) and args.pids_limit not in ("-1", "0"):
        values["pids_max"] = parse_decimal(args.pids_limit, name="--pids-limit",
                                           maximum=MAX_PIDS)
    try:
        return Limits(**values) if values else None
    except ConfigError as exc:
        field, sep, rest = str(exc).partition(": ")
        flags = {"memory_max": "--memory", "memory_swap_max": "--memory-swap",
                 "cpus": "--cpus", "pids_max": "--pids-limit", "cpu_weight": "--cpu-shares",
                 "cpuset_cpus": "--cpuset-cpus", "cpuset_mems": "--cpuset-mems"}
        if sep and field in flags:
            raise ConfigError(f"{flags[field]}: {rest}") from None
        raise


# -- the network ----------------------------------------------------------------------------

def _network(args: argparse.Namespace) -> dict[str, Any]:
    """The network part of the config: ``--network`` (given again: more networks),
    ``--network-alias``, ``--ip``, ``--ip6``, ``-p``, ``-P``, ``--dns*``, ``--add-host``;
    without ``--network`` the config picks the default (bridge with ports, else none)."""
    raw = getattr(args, "network", None)
    if not given(raw):
        raw = getattr(args, "net", None)
    texts = [str(t) for t in raw] if isinstance(raw, list) else \
        ([str(raw)] if raw is not None else [])
    network_flags = ("add_host", "dns", "dns_search", "dns_option", "network_alias", "ip",
                     "ip6", "publish", "publish_all", "expose")
    if all(t in ("none", "host") for t in texts[:1]) and len(texts) <= 1 and \
            not any(given(getattr(args, f, None)) for f in network_flags):
        # The default: nothing to parse (isolate.net, a package of its own, stays unloaded).
        if texts == ["host"] and given(args.hostname):
            raise ConfigError("Conflicting options: hostname and the network mode")
        return {"network": texts[0] if texts else "none"}
    from isolate.net import options as netopts

    out: dict[str, Any] = {}
    if texts:
        netopts.parse_network(texts[0])  # the first flag's error first
        out["network"] = texts[0]  # the config parses it; a long form keeps its aliases
        if len(texts) > 1:
            out["extra_networks"] = texts[1:]
    if args.add_host:
        out["extra_hosts"] = list(args.add_host)
    for flag, field in (("dns", "dns"), ("dns_search", "dns_search"),
                        ("dns_option", "dns_options"), ("network_alias", "network_aliases")):
        if getattr(args, flag):
            out[field] = list(getattr(args, flag))
    if args.ip is not None:
        out["ip"] = netopts.parse_ip(args.ip, 4)
    if args.ip6 is not None:
        out["ip6"] = netopts.parse_ip(args.ip6, 6)
    ports = _ports(args)
    if ports:
        out["ports"] = [str(p) for p in ports]
    if getattr(args, "publish_all", False):
        out["publish_all"] = True
    if args.expose:
        out["expose"] = list(args.expose)
    return out


def _ports(args: argparse.Namespace) -> list[Any]:
    from isolate.net.ports import parse_publish

    out = [parse_publish(spec) for spec in args.publish]
    return out


# -- the config -----------------------------------------------------------------------------

def parse_detach_keys(spec: str | None) -> bytes:
    """The bytes of a ``--detach-keys`` sequence (``ctrl-p,ctrl-q``, ``a``, ``ctrl-@`` ...).

    Raises:
        ConfigError: a key Docker would not take.
    """
    out = bytearray()
    for key in (spec if spec is not None else DEFAULT_DETACH_KEYS).split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
        elif k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise ConfigError(f"Unknown character: '{k}'")
        else:
            raise ConfigError(f"Unknown character: '{k}'")
    if not out:
        raise ConfigError("--detach-keys: no keys")
    return bytes(out)


def _attach(args: argparse.Namespace) -> set[str]:
    streams = set()
    for item in getattr(args, "attach", []):
        name = item.lower()
        if name not in ("stdin", "stdout", "stderr"):
            raise ConfigError(f"invalid argument \"{item}\" for \"-a, --attach\" flag: valid "
                              "streams are STDIN, STDOUT and STDERR")
        streams.add(name)
    return streams


def config_from_args(args: argparse.Namespace, image: str,
                     command: Sequence[str]) -> ContainerConfig:
    """The :class:`ContainerConfig` of ``create``/``run`` flags for ``image`` and
    ``command`` (empty: the image's Cmd).

    Raises:
        ConfigError: a bad flag value (the library's message where it judges the value).
        UnsupportedError: a flag this isolate cannot honour yet.
    """
    from isolate.container import ContainerConfig, parse_mount, parse_tmpfs, parse_volume

    mounts: list[Any] = [parse_volume(v) for v in args.bind]
    mounts += [parse_mount(m) for m in args.mount]
    mounts += [parse_tmpfs(t) for t in args.tmpfs]
    options: dict[str, Any] = {
        "command": list(command) or None, "env": env_items(args.env, args.env_file),
        "mounts": mounts,
        "labels": _labels(args), "limits": _limits(args), "read_only": args.read_only,
        "cap_add": args.cap_add, "cap_drop": args.cap_drop, "privileged": args.privileged,
        "devices": args.device,
        "rlimits": args.ulimit, "group_add": args.group_add, "tty": args.tty,
        "open_stdin": args.interactive, "auto_remove": args.rm, "init": args.init,
        **_security(args.security_opt), **_log_options(args), **_network(args),
    }
    if args.entrypoint is not None:
        options["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    for flag, field in (("name", "name"), ("workdir", "workdir"), ("user", "user"),
                        ("hostname", "hostname"), ("domainname", "domainname"),
                        ("restart", "restart"), ("stop_signal", "stop_signal"),
                        ("shm_size", "shm_size")):
        value = getattr(args, flag, None)
        if given(value):
            options[field] = value
    if given(args.stop_timeout):
        text = str(args.stop_timeout)
        try:
            options["stop_timeout"] = int(text)
        except ValueError:
            raise ConfigError(f"invalid argument \"{text}\" for \"--stop-timeout\" flag: "
                              "strconv.ParseInt: parsing: invalid syntax") from None
        if options["stop_timeout"] < 0:
            options["stop_timeout"] = None  # -1: wait forever is not one of ours; the default
    sysctls = {}
    for item in args.sysctl:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid argument \"{item}\" for \"--sysctl\" flag: "
                              "expected KEY=VALUE")
        sysctls[key] = value
    if sysctls:
        options["sysctls"] = sysctls
    _attach(args)
    return ContainerConfig(image, **options)
