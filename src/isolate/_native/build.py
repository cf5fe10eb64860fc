"""Build script of the native parts: the cffi extension isolate._native._isolate (API mode, out
of line) and the isolate-shim program (setup.py calls :func:`build_shim` after the extension).

The declarations come from isolate.h itself (the part between the CDEF markers), so the C
interface and the cffi view of it cannot drift apart.
"""

from __future__ import annotations

import pathlib
import re
import warnings
from typing import Any

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


CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
#: The supervisor's sources: one file per duty, linked with the spawn core.
SHIM_SOURCES = ("shim/main.c", "shim/start.c", "shim/logging.c", "shim/exit.c",
                "shim/attach.c", "shim/console.c", "shim/restart.c", "shim/cleanup.c",
                "shim/init.c", "shim/util.c", "spawn.c")
SHIM_NAME = "isolate-shim"


def build_shim(compiler: Any, build_temp: str, output: str) -> bool:
    """Compile and link isolate-shim (a distutils CCompiler does the work) to ``output``.

    Linked statically when the C library's static archive is there (Debian's libc6-dev has
    libc.a): then the binary runs inside any root, also as the tiny init exec'd in an image.
    Otherwise it is linked dynamically, with a warning. Returns whether it is static.
    """
    from distutils.errors import LinkError  # setuptools provides distutils

    sources = [str(HERE / name) for name in SHIM_SOURCES]
    objects = compiler.compile(sources, output_dir=str(pathlib.Path(build_temp) / "shim"),
                               include_dirs=[str(HERE), str(HERE / "shim")],
                               extra_postargs=CFLAGS)
    out = pathlib.Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        compiler.link_executable(objects, out.name, output_dir=str(out.parent),
                                 extra_postargs=["-static", "-s"])
        return True
    except LinkError:
        warnings.warn("no static C library (libc.a, Debian's libc6-dev): isolate-shim is "
                      "linked dynamically, so its init cannot run inside image roots",
                      RuntimeWarning, stacklevel=2)
        compiler.link_executable(objects, out.name, output_dir=str(out.parent),
                                 extra_postargs=["-s"])
        return False


ffi = FFI()
ffi.cdef(cdef_source((HERE / "isolate.h").read_text()))
ffi.set_source(
    "isolate._native._isolate",
    '#include "isolate.h"\n',
    sources=[_source(name) for name in ("spawn.c", "extract.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
