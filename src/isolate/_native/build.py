"""cffi build script for isolate._native._isolate (API mode, out of line).

The declarations come from isolate.h itself (the part between the CDEF markers), so the C
interface and the cffi view of it cannot drift apart.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent


def cdef_source(header: str) -> str:
    """Return the cffi declarations of a header: the CDEF block, preprocessor lines removed
    except integer #defines, which cffi understands."""
    match = re.search(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", header, re.S)
    if match is None:
        raise ValueError("isolate.h has no CDEF-BEGIN/CDEF-END block")
    lines = []
    for line in match.group(1).splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not re.match(r"#define\s+\w+\s+-?\d+\b", stripped):
            continue
        lines.append(re.sub(r"/\*.*?\*/", "", line))
    return "\n".join(lines)


def _source(name: str) -> str:
    # Relative to the working directory when below it, as setuptools wants.
    path = HERE / name
    cwd = pathlib.Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


ffi = FFI()
ffi.cdef(cdef_source((HERE / "isolate.h").read_text()))
ffi.set_source(
    "isolate._native._isolate",
    '#include "isolate.h"\n',
    sources=[_source(name) for name in ("spawn.c", "extract.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
