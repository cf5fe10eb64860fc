"""The records a container's supervisor leaves in its state dir, read without the supervisor's
code: the container layer reads them when it lists containers, and ``isolate ps`` loads
neither :mod:`isolate._shim` (the plan, the C core, subprocess) nor anything it needs.

Imports nothing from isolate; reads files, changes none.
"""

from __future__ import annotations

from isolate import _json as json
from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["read_json"]


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` (a record of the shim's, or of the container layer beside
    them), or None when there is no record: the file or its directory is missing, or it holds
    no JSON object -- empty, or torn, as a crash of the machine can leave an unsynced write
    (the records are replaced by rename, so a live writer never leaves a part)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else None
