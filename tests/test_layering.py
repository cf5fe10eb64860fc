"""The architecture stays visible in the code: a module imports only from layers below it.

The table is the one docs/design.md draws. Each module's imports of ``isolate.*`` are parsed
(function-level imports too) and checked against it.
"""

from __future__ import annotations

import ast
import pathlib

import isolate

SRC = pathlib.Path(isolate.__file__).resolve().parent

# module (or package prefix) -> layer number; the most specific prefix wins.
LAYERS: dict[str, float] = {
    "isolate.errors": 0,
    "isolate._native": 0,
    "isolate._syscalls": 0,
    "isolate._units": 1,
    "isolate._procs": 1,
    "isolate._plan": 1,
    "isolate._sys": 1,
    "isolate.lowlevel": 2,
    "isolate.namespaces": 3,
    "isolate.cgroups": 3,
    "isolate.fs": 3,
    "isolate.security": 3,
    "isolate.net": 3,
    "isolate.process": 4,
    "isolate.image": 4,
    "isolate._caller": 4,
    "isolate.runtime": 4.2,  # the runtime config and its compiler: uses the L3 blocks
    "isolate._fuse_root": 4.4,  # fuse-overlayfs fallback for image roots: uses lowlevel
    "isolate._image_root": 4.5,  # image roots for the sandbox: uses image/ and fs/
    "isolate.container": 4.6,  # containers: a preset of the runtime config, state on disk
    "isolate.sandbox": 5,
    "isolate.cli": 6,
    "isolate.api": 6,
    "isolate.oci": 6,
    "isolate.__main__": 7,
    "isolate": 7,  # the package's __init__ re-exports everything (lazily)
}
# Only _sys may touch the C extension.
NATIVE_IMPORTERS = {"isolate._sys"}


def layer_of(module: str) -> float:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    assert best, f"{module} is not in the layer table: add it (docs/design.md too)"
    return LAYERS[best]


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def isolate_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    # Imports only for type checkers (if TYPE_CHECKING:) are not dependencies at run time.
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("isolate")}
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("isolate")):
            found.add(node.module)
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if any(sub == k or sub.startswith(k + ".") for k in LAYERS if k != "isolate"):
                    found.add(sub)
    return found


def modules() -> list[pathlib.Path]:
    return sorted(p for p in SRC.rglob("*.py") if "_native/build.py" not in str(p))


def test_every_module_imports_only_from_lower_layers() -> None:
    bad = []
    for path in modules():
        name = module_name(path)
        mine = layer_of(name)
        for imported in isolate_imports(path):
            if imported == name or imported.startswith(name + "."):
                continue  # a package importing its own submodules
            if name.startswith(imported + "."):
                continue  # a submodule importing its own package
            theirs = layer_of(imported)
            if theirs >= mine and not (theirs == mine and _same_package(name, imported)):
                bad.append(f"{name} (L{mine}) imports {imported} (L{theirs})")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def _same_package(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


def test_only_sys_imports_the_native_extension() -> None:
    offenders = []
    for path in modules():
        name = module_name(path)
        if name.startswith("isolate._native"):
            continue
        if any(i.startswith("isolate._native") for i in isolate_imports(path)) and (
                name not in NATIVE_IMPORTERS):
            offenders.append(name)
    assert not offenders, f"only isolate._sys may import isolate._native: {offenders}"
