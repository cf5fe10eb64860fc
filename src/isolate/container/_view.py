"""What the container's helper modules (inspect, logs, stats, commit) read of a container.

Owns nothing but this typing protocol: :class:`isolate.container.Container` satisfies it, and
the helpers type their argument with it, so that no helper imports the module of the class
(that would be an import cycle, which the layering test refuses even for type checking).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from isolate.cgroups import CGroup
    from isolate.container.config import ContainerConfig
    from isolate.container.state import State
    from isolate.image import Image

__all__ = ["ContainerView"]


class ContainerView(Protocol):
    """The parts of a container the helpers use (see :class:`isolate.container.Container`)."""

    id: str
    dir: str
    store: Any
    _record: dict[str, Any]

    @property
    def name(self) -> str: ...
    @property
    def short_id(self) -> str: ...
    @property
    def config(self) -> ContainerConfig: ...
    @property
    def state(self) -> State: ...
    @property
    def image_id(self) -> str: ...
    @property
    def image(self) -> Image: ...
    @property
    def created(self) -> str: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def hostname(self) -> str: ...
    @property
    def volumes(self) -> Mapping[str, str]: ...
    @property
    def log_path(self) -> str: ...
    @property
    def upper_dir(self) -> str: ...

    def _cgroup(self, st: State, what: str) -> CGroup: ...
    def _wait_exit(self, st: State, timeout: float | None) -> State: ...
    def pause(self) -> None: ...
    def unpause(self) -> None: ...
