"""``docker commit``: a new image of what a container changed, on top of its image.

Owns the image config a commit gets (the container's own: its command, environment, working
dir, user and labels over the image's, as Docker takes them) and Docker's ``--change`` lines
(``CMD``, ``ENTRYPOINT``, ``ENV``, ``EXPOSE``, ``LABEL``, ``USER``, ``VOLUME``, ``WORKDIR``,
``STOPSIGNAL``). The layer itself is the container's overlay upper dir, which
:meth:`isolate.image.Store.commit` turns into OCI whiteouts; a running container is frozen
meanwhile (``pause``), so the layer is one moment.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from isolate import _json as json
from isolate import _record
from isolate.container.config import parse_signal
from isolate.container.state import Status
from isolate.errors import ConfigError, UnsupportedError
from isolate.image import Image, ImageConfig

if TYPE_CHECKING:
    from isolate.container._view import ContainerView

__all__ = ["apply_changes", "commit", "container_image_config"]

_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR",
            "STOPSIGNAL")


def container_image_config(container: ContainerView) -> ImageConfig:
    """The image config a commit of ``container`` starts from: the image's, with the
    container's command, entrypoint, environment (the image's plus its own), working dir,
    user, labels and stop signal."""
    cfg = container.config
    base = container.image.config
    env = base.env_dict
    env.update(cfg.env_dict)
    labels = dict(base.labels)
    labels.update(cfg.labels_dict)
    entry = cfg.entrypoint if cfg.entrypoint is not None else base.entrypoint
    cmd = cfg.command if cfg.command is not None else (
        base.cmd if cfg.entrypoint is None else None)
    stop = base.stop_signal
    if cfg.stop_signal is not None:
        import signal

        stop = signal.Signals(cfg.stop_signal).name
    return ImageConfig(
        env=[f"{k}={v}" for k, v in env.items()], entrypoint=entry, cmd=cmd,
        working_dir=cfg.workdir or base.working_dir, user=cfg.user if cfg.user is not None
        else base.user, exposed_ports=base.exposed_ports, volumes=base.volumes,
        labels=labels, stop_signal=stop)


def _words(rest: str) -> list[str]:
    """A JSON array (exec form) or, else, a shell command (``/bin/sh -c``)."""
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(rest: str, what: str) -> dict[str, str]:
    words = shlex.split(rest)
    if not words:
        raise ConfigError(f"{what} requires at least one argument")
    if "=" not in words[0]:
        # The old form: NAME VALUE...
        return {words[0]: " ".join(words[1:])}
    out = {}
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} names can not be blank: {w!r}")
        out[key] = value
    return out


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """``config`` with Docker's ``--change`` lines applied in order.

    Raises:
        ConfigError: an instruction ``commit`` does not take, or a malformed one.
    """
    kw: dict[str, Any] = {}
    env = config.env_dict
    labels = dict(config.labels)
    ports = list(config.exposed_ports)
    volumes = list(config.volumes)
    for line in changes:
        word, _, rest = line.strip().partition(" ")
        key = word.upper()
        if key not in _CHANGES:
            raise ConfigError(f"{word} is not a valid change command (one of "
                              f"{', '.join(_CHANGES)})")
        rest = rest.strip()
        if key == "CMD":
            kw["cmd"] = _words(rest)
        elif key == "ENTRYPOINT":
            kw["entrypoint"] = _words(rest)
            kw.setdefault("cmd", None)
        elif key == "ENV":
            env.update(_pairs(rest, "ENV"))
        elif key == "LABEL":
            labels.update(_pairs(rest, "LABEL"))
        elif key == "EXPOSE":
            for p in rest.split():
                ports.append(p if "/" in p else f"{p}/tcp")
        elif key == "VOLUME":
            volumes.extend(_words(rest) if rest.startswith("[") else rest.split())
        elif key == "USER":
            kw["user"] = rest
        elif key == "WORKDIR":
            if not rest.startswith("/"):
                raise ConfigError(f"WORKDIR must be absolute: {rest!r}")
            kw["working_dir"] = rest
        elif key == "STOPSIGNAL":
            parse_signal(rest)
            kw["stop_signal"] = rest
    return _record.evolve(config, env=[f"{k}={v}" for k, v in env.items()], labels=labels,
                        exposed_ports=tuple(dict.fromkeys(ports)),
                        volumes=tuple(dict.fromkeys(volumes)), **kw)


def commit(container: ContainerView, ref: str | None = None, *, author: str = "",
           message: str = "", changes: Sequence[str] = (), pause: bool = True) -> Image:
    """Make an image of ``container``'s image plus one layer of its changes, its config the
    container's with ``changes`` applied, tagged ``ref`` (None: untagged). A running
    container is paused for the moment of the diff unless ``pause`` is false (then the layer
    may mix moments). The image's history is the base's plus one entry: created by the
    container's command, with ``author`` and ``message``.

    Raises:
        ConfigError: a bad ``ref`` or change.
        StateError: the container is dead or being removed.
        ImageError: its image is gone from the store.
    """
    config = apply_changes(container_image_config(container), changes)
    store = container.store.images
    st = container.state
    st.status.check("commit", container.id)
    frozen = False
    if pause and st.status is Status.RUNNING:
        try:
            container.pause()
            frozen = True
        except UnsupportedError:
            frozen = False  # no freezer (rootless without a cgroup): commit as it is
    try:
        image: Image = store.commit(
            container.image, container.upper_dir, ref, config=config, author=author or None,
            message=message or None, created_by=" ".join(container.command))
        return image
    finally:
        if frozen:
            container.unpause()
