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
    "isolate._lazy": 0,  # the packages' lazy re-exports: imports nothing of isolate
    "isolate._digest": 0,  # SHA-256 of small records without OpenSSL: imports nothing
    "isolate._record": 0,  # frozen records without attrs at run time: imports nothing
    "isolate._enum": 0,  # enumerations without enum at run time: imports nothing
    "isolate._memo": 0,  # functools' caches without functools: imports nothing but _typing
    "isolate._sig": 0,  # signal's numbers and calls without its enum classes
    "isolate._json": 0,  # json's loads/dumps by its C accelerator, without re
    "isolate._match": 0,  # the grammars of names and ids without re: imports nothing
    "isolate._ctx": 0,  # contextlib's suppress/nullcontext/contextmanager without it
    "isolate._typing": -1,  # TYPE_CHECKING without typing: imports nothing, under all
    "isolate._units": 1,
    "isolate._procs": 1,
    "isolate._plan": 1,
    "isolate._sys": 1,
    "isolate.lowlevel": 2,
    "isolate._spare_netns": 2,  # a network namespace made ahead: uses _sys
    "isolate._shim_files": 2.4,  # the supervisor's records, read without _shim: imports nothing
    "isolate._shim": 2.5,  # the container supervisor's Python side: uses lowlevel's errors
    "isolate.namespaces": 3,
    "isolate.cgroups": 3,
    "isolate.fs": 3,
    "isolate.security": 3,
    "isolate.net": 3,
    "isolate._mapped": 3.5,  # trees as a user namespace with an id map sees them: fs, lowlevel
    "isolate.process": 4,
    "isolate.image": 4,
    # The Dockerfile build, in BuildKit's order: each part imports only the ones above it.
    "isolate.image.build.errors": 4.01,
    "isolate.image.build.shell": 4.02,
    "isolate.image.build.parser": 4.03,
    "isolate.image.build.instructions": 4.04,
    "isolate.image.build.dockerignore": 4.04,
    "isolate.image.build.state": 4.04,
    "isolate.image.build.tree": 4.04,
    "isolate.image.build.context": 4.05,
    "isolate.image.build.layer": 4.05,
    "isolate.image.build.cache": 4.05,
    "isolate.image.build.files": 4.06,
    "isolate.image.build.plan": 4.06,
    "isolate.image.build.executor": 4.07,
    "isolate.image.build": 4.08,  # the package's __init__ re-exports the parts
    "isolate._caller": 4,
    "isolate.runtime": 4.2,  # the runtime config and its compiler: uses the L3 blocks
    "isolate._fuse_root": 4.4,  # fuse-overlayfs fallback for image roots: uses lowlevel
    "isolate._image_root": 4.5,  # image roots for the sandbox: uses image/ and fs/
    "isolate.container": 4.6,  # containers: a preset of the runtime config, state on disk
    "isolate._container_runner": 4.7,  # build RUN steps in containers: the container preset
    "isolate._sandbox_config": 4.9,  # the sandbox's options: imported when a config is made
    "isolate._sandbox_result": 4.9,  # what Sandbox.run returns: a subprocess class
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


def isolate_imports(path: pathlib.Path, *, typing: bool = False) -> set[str]:
    """The isolate modules ``path`` imports (at any level of the file); with ``typing``, also
    those imported for type checkers only (``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    # Imports only for type checkers (if TYPE_CHECKING:) are not dependencies at run time.
    typing_only = set()
    for node in ast.walk(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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
                if any(sub == k or sub.startswith(k + ".") for k in LAYERS if k != "isolate") \
                        or _is_module(sub):
                    found.add(sub)
    return found


def _is_module(name: str) -> bool:
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


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


def _import_graph() -> dict[str, set[str]]:
    """module -> the isolate modules it imports, type-only imports included (a cycle through
    one is still two modules that each need the other). A module and its own packages are not
    edges: Python runs a package's __init__ before its submodules whichever way they import."""
    graph = {}
    for path in modules():
        name = module_name(path)
        graph[name] = {i for i in isolate_imports(path, typing=True)
                       if not (i == name or name.startswith(i + ".") or i.startswith(name + "."))}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets, each as [a, b, ..., a]; iterative."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        todo = [iter(sorted(graph[start]))]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif nxt not in graph or state.get(nxt) == 2:
                continue
            elif state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            else:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph[nxt])))
    return cycles


def test_no_two_modules_import_each_other_even_for_type_checking() -> None:
    cycles = find_cycles(_import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles() -> None:
    # The check above is only as good as this: a graph with cycles must show them.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d2"}, "d2": {"d"}, "e": {"a"}}
    found = {tuple(c) for c in find_cycles(graph)}
    assert found == {("a", "b", "c", "a"), ("d", "d2", "d")}
