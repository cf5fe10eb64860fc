"""How a container looks from outside, in Docker's shapes: ``inspect``'s object and ``ps``'s
rows and filters.

Owns the mapping from a container's record and observed state to what ``docker inspect`` and
``docker ps`` show (field names, time and duration formats, the Status column), so that the CLI
and an Engine API server answer alike. Reads only; never changes a container.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from isolate import _record
from isolate._units import human_duration
from isolate.container.config import BindMount, TmpfsMount, VolumeMount
from isolate.container.state import ZERO_TIME, State, Status, parse_time

if TYPE_CHECKING:
    from isolate.container._view import ContainerView

__all__ = ["PsRow", "human_duration", "inspect", "matches", "ps_row"]


def _ago(stamp: str) -> float:
    ns = parse_time(stamp) if stamp else 0
    return max(0.0, time.time() - ns / 1e9) if ns else 0.0


def status_text(st: State) -> str:
    """``ps``'s STATUS column: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created"..."""
    if st.status is Status.RUNNING:
        return f"Up {human_duration(_ago(st.started_at))}"
    if st.status is Status.PAUSED:
        return f"Up {human_duration(_ago(st.started_at))} (Paused)"
    if st.status is Status.RESTARTING:
        return f"Restarting ({st.exit_code}) {human_duration(_ago(st.finished_at))} ago"
    if st.status is Status.EXITED:
        return f"Exited ({st.exit_code}) {human_duration(_ago(st.finished_at))} ago"
    if st.status is Status.REMOVING:
        return "Removal In Progress"
    if st.status is Status.DEAD:
        return "Dead"
    return "Created"


def _command_text(command: Sequence[str], width: int = 20) -> str:
    text = " ".join(command)
    if len(text) > width:
        text = text[:width - 1] + "…"
    return f'"{text}"'


@_record.record
class PsRow:
    """One row of ``docker ps``; :meth:`fields` gives the names ``--format`` uses."""

    id: str
    image: str
    command: str
    created_at: str
    running_for: str
    state: str
    status: str
    names: str
    labels: Mapping[str, str] = _record.field(factory=dict, hash=False)
    mounts: tuple[str, ...] = ()
    ports: str = ""
    networks: str = ""

    def fields(self) -> dict[str, str]:
        """``{{.ID}}``, ``{{.Names}}``... as ``docker ps --format`` names them."""
        return {"ID": self.id[:12], "Image": self.image, "Command": self.command,
                "CreatedAt": self.created_at, "RunningFor": self.running_for,
                "Ports": self.ports, "State": self.state, "Status": self.status,
                "Names": self.names, "Size": "",
                "Labels": ",".join(f"{k}={v}" for k, v in self.labels.items()),
                "Mounts": ",".join(self.mounts), "Networks": self.networks,
                "LocalVolumes": str(len(self.mounts))}


def ps_row(container: ContainerView, state: State | None = None) -> PsRow:
    """The ``ps`` row of ``container`` (``state``: one already observed)."""
    st = state if state is not None else container.state
    created_ns = parse_time(container.created)
    created = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created_ns / 1e9))
    return PsRow(
        id=container.id, image=str(container._record.get("image_ref") or container.image_id),
        command=_command_text(container.command), created_at=created,
        running_for=f"{human_duration(_ago(container.created))} ago", state=st.status.value,
        status=status_text(st), names=str(container._record["name"]),
        # From the record as stored: a listing need not build each container's config.
        labels=dict(tuple(kv) for kv in container._record["config"].get("labels", ())),
        mounts=tuple(container.volumes.values()),
        networks=str(container._record["config"].get("network", "none")),
        ports=_ports_text(container, st))


def _ports_text(container: ContainerView, st: State) -> str:
    """The ports column: what the current run publishes (nothing once it ended)."""
    if not st.status.running:
        return ""
    from isolate.container.netdriver import format_ports, published_ports

    return format_ports(published_ports(container.dir))


def _network_settings(container: ContainerView, st: State) -> dict[str, Any]:
    from isolate.container.netdriver import network_settings

    settings: dict[str, Any] = {"Networks": {}, "SandboxKey": "", "Ports": {}}
    if st.status.running:
        settings.update(network_settings(container.dir))
        settings["SandboxKey"] = f"/proc/{st.pid}/ns/net"
    return settings


def matches(container: ContainerView, filters: Mapping[str, Iterable[str]],
            state: State | None = None) -> bool:
    """Whether ``container`` passes ``docker ps -f`` filters: ``id`` (prefix), ``name``
    (substring), ``label`` (``KEY`` or ``KEY=VALUE``), ``status``, ``exited`` (exit code),
    ``ancestor`` (the image as given, or its id or a prefix of it), ``volume`` (a volume's
    name or a mount target). Several values of one key: any; several keys: all.

    Raises:
        ValueError: an unknown filter key (Docker's "invalid filter").
    """
    st = state if state is not None else container.state
    labels = container.config.labels_dict
    for key, values in filters.items():
        vals = list(values)
        if not vals:
            continue
        if key == "id":
            ok = any(container.id.startswith(v) for v in vals)
        elif key == "name":
            ok = any(v.removeprefix("/") in container.name for v in vals)
        elif key == "label":
            ok = all(_label_ok(labels, v) for v in vals)
        elif key == "status":
            ok = st.status.value in vals
        elif key == "exited":
            ok = st.status is Status.EXITED and str(st.exit_code) in vals
        elif key == "ancestor":
            image = container.image_id.removeprefix("sha256:")
            ref = str(container._record.get("image_ref") or "")
            ok = any(v in (ref, container.image_id) or image.startswith(
                v.removeprefix("sha256:")) for v in vals)
        elif key == "volume":
            ok = any(v in container.volumes.values() or v in container.volumes for v in vals)
        else:
            raise ValueError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _label_ok(labels: Mapping[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _mounts(container: ContainerView) -> list[dict[str, Any]]:
    out = []
    cfg = container.config
    volumes = container.volumes
    for m in cfg.mounts:
        if isinstance(m, BindMount):
            out.append({"Type": "bind", "Source": m.source, "Destination": m.target,
                        "Mode": "ro" if m.readonly else "", "RW": not m.readonly,
                        "Propagation": "rprivate"})
        elif isinstance(m, TmpfsMount):
            out.append({"Type": "tmpfs", "Source": "", "Destination": m.target, "Mode": "",
                        "RW": not m.readonly, "Propagation": ""})
        elif isinstance(m, VolumeMount):
            pass  # listed below with the image's volumes
    store_root = container.store.volumes.root
    readonly = {m.target for m in cfg.mounts if isinstance(m, VolumeMount) and m.readonly}
    for target, name in sorted(volumes.items()):
        out.append({"Type": "volume", "Name": name,
                    "Source": os.path.join(store_root, name, "_data"), "Destination": target,
                    "Driver": "local", "Mode": "z", "RW": target not in readonly,
                    "Propagation": ""})
    return out


def inspect(container: ContainerView) -> dict[str, Any]:
    """``docker inspect``'s object for ``container`` (the fields isolate has, named and
    shaped as Docker names them)."""
    from isolate.container.preset import capabilities_for

    st = container.state
    cfg = container.config
    rec = container._record
    image_cfg = None
    try:
        image_cfg = container.image.config
    except Exception:
        image_cfg = None
    env = dict(image_cfg.env_dict) if image_cfg is not None else {}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(cfg.env_dict)
    limits = cfg.limits
    command = list(container.command)
    caps = capabilities_for(cfg)
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": st.status.value,
            "Running": st.status.running,
            "Paused": st.status is Status.PAUSED,
            "Restarting": st.status is Status.RESTARTING,
            "OOMKilled": st.oom_killed,
            "Dead": st.status is Status.DEAD,
            "Pid": st.pid if st.status.running else 0,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at or ZERO_TIME,
            "FinishedAt": st.finished_at or ZERO_TIME,
        },
        "Image": container.image_id,
        "ResolvConfPath": os.path.join(container.dir, "resolv.conf"),
        "HostnamePath": os.path.join(container.dir, "hostname"),
        "HostsPath": os.path.join(container.dir, "hosts"),
        "LogPath": container.log_path,
        "Name": "/" + container.name,
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                      for m in cfg.mounts if isinstance(m, BindMount)] or None,
            "NetworkMode": cfg.network,
            "PublishAllPorts": cfg.publish_all,
            "RestartPolicy": {"Name": cfg.restart.name,
                              "MaximumRetryCount": cfg.restart.max_retries},
            "AutoRemove": cfg.auto_remove,
            "CapAdd": list(cfg.cap_add) or None,
            "CapDrop": list(cfg.cap_drop) or None,
            "GroupAdd": list(cfg.group_add) or None,
            "Privileged": cfg.privileged,
            "Devices": [{"PathOnHost": d.source, "PathInContainer": d.path,
                         "CgroupPermissions": d.access} for d in cfg.devices] or None,
            "ReadonlyRootfs": cfg.read_only,
            "SecurityOpt": [*(["no-new-privileges"] if cfg.no_new_privileges else []),
                            *([f"seccomp={cfg.seccomp}"] if cfg.seccomp != "default"
                              else [])] or None,
            "Tmpfs": {m.target: "" for m in cfg.mounts if isinstance(m, TmpfsMount)} or None,
            "ShmSize": cfg.shm_size,
            "Memory": (limits.memory_max or 0) if limits else 0,
            "NanoCpus": int((limits.cpus or 0) * 1e9) if limits else 0,
            "PidsLimit": limits.pids_max if limits else None,
            "Ulimits": [{"Name": r.type, "Soft": r.soft, "Hard": r.hard}
                        for r in cfg.rlimits] or None,
            "Sysctls": dict(cfg.sysctls) or None,
            "ExtraHosts": [f"{h}:{a}" for h, a in cfg.extra_hosts] or None,
            "Init": cfg.init,
            "LogConfig": {"Type": "json-file", "Config": {
                **({"max-size": str(cfg.log_max_size)} if cfg.log_max_size else {}),
                **({"max-file": str(cfg.log_max_file)} if cfg.log_max_file > 1 else {})}},
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": container.upper_dir, "WorkDir": os.path.join(container.dir, "work")}},
        "Mounts": _mounts(container),
        "Config": {
            "Hostname": container.hostname,
            "Domainname": cfg.domainname or "",
            "User": cfg.user if cfg.user is not None else (
                image_cfg.user if image_cfg is not None else ""),
            "AttachStdin": cfg.open_stdin, "AttachStdout": True, "AttachStderr": True,
            "Tty": cfg.tty, "OpenStdin": cfg.open_stdin, "StdinOnce": False,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Cmd": list(cfg.command) if cfg.command is not None else (
                list(image_cfg.cmd or ()) if image_cfg is not None and cfg.entrypoint is None
                else None),
            "Image": str(rec.get("image_ref") or container.image_id),
            "Volumes": {t: {} for t in container.volumes} or None,
            "ExposedPorts": {p: {} for p in (*(image_cfg.exposed_ports if image_cfg else ()),
                                             *cfg.expose)} or None,
            "WorkingDir": cfg.workdir or (image_cfg.working_dir if image_cfg else ""),
            "Entrypoint": list(cfg.entrypoint) if cfg.entrypoint is not None else (
                list(image_cfg.entrypoint) if image_cfg is not None and image_cfg.entrypoint
                else None),
            "Labels": cfg.labels_dict,
            "StopSignal": _signal_name(int(rec.get("stop_signal", 15))),
            "StopTimeout": rec.get("stop_timeout", 10),
        },
        "NetworkSettings": _network_settings(container, st),
        "Isolate": {
            "Supervisor": st.supervisor, "SupervisorPid": st.supervisor_pid,
            "Capabilities": caps.names(),
            "Cgroup": dict(st.cgroup) if st.cgroup else None,
            "Rootless": os.geteuid() != 0,
            "UidMap": rec.get("uid_map") or None,
            "Note": ("" if st.cgroup or not st.status.running or os.geteuid() == 0 else
                     "no cgroup: cgroups are not delegated to this user, so the container "
                     "runs without limits, stats or pause"),
        },
    }


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
