"""isolate: Linux process isolation as a Python library.

The friendly API lives here; hazardous parts are in :mod:`isolate.lowlevel`; the building blocks
for custom runtimes in the subpackages (:mod:`isolate.cgroups`, :mod:`isolate.fs`,
:mod:`isolate.image`).
"""

from __future__ import annotations

from isolate import errors

__all__ = ["errors"]
__version__ = "0.1.0"
