"""The documentation is true: its examples run, and every public name is documented.

Every ```python block of README.md and docs/*.md runs: the blocks of one page in order, in one
fresh interpreter, in an empty temporary directory (HOME and XDG_DATA_HOME point there too), so
a page can build on its earlier blocks. Every program in docs/examples/ runs the same way and
must exit 0 (they check what they did themselves). Every public module lists its public names
in ``__all__``, each documented, and ``help()`` of the module shows them.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pathlib
import pkgutil
import pydoc
import re
import subprocess
import sys

import pytest

import isolate
from sandbox_helpers import busybox_rootfs

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# The examples import the same isolate the tests imported (installed, or ./src in a
# development checkout), whatever the working directory.
PACKAGE_DIR = str(pathlib.Path(isolate.__file__).resolve().parent.parent)


def examples(page: pathlib.Path) -> str:
    return "\n".join(BLOCK.findall(page.read_text()))


def run_python(args: list[str], tmp_path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # The examples make their work dirs with tempfile.mkdtemp(), as a reader's script would,
    # and leave them: $TMPDIR puts them in tmp_path, which pytest removes.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=PACKAGE_DIR, TMPDIR=str(tmp_path / "tmp"))
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.root
@pytest.mark.parametrize("page", [p for p in PAGES if p.exists() and examples(p)],
                         ids=lambda p: p.name)
def test_documentation_examples_run(page: pathlib.Path, tmp_path: pathlib.Path) -> None:
    proc = run_python(["-c", examples(page)], tmp_path)
    assert proc.returncode == 0, (
        f"the examples of {page.name} failed:\n{proc.stdout}\n{proc.stderr}")


def need_busybox() -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")


@pytest.mark.root
@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.name)
def test_example_programs_run(program: pathlib.Path, tmp_path: pathlib.Path) -> None:
    need_busybox()
    proc = run_python([str(program)], tmp_path)
    assert proc.returncode == 0, f"{program.name} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.name)
def test_example_programs_use_only_the_public_api(program: pathlib.Path) -> None:
    private = []
    for node in ast.walk(ast.parse(program.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        private += [n for n in names if n.startswith("isolate")
                    and any(part.startswith("_") for part in n.split("."))]
    assert not private, f"{program.name} imports private names: {private}"


@pytest.mark.root
def test_the_mini_runtime_runs_an_image_of_two_layers_the_test_built(
        tmp_path: pathlib.Path) -> None:
    from isolate.image import Store

    store = Store(tmp_path / "store")
    with busybox_rootfs() as rootfs:
        base = store.from_directory(rootfs, "test/mini:base")
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "motd").write_text("hello from the top layer\n")
    image = store.commit(base, top, "test/mini:1")
    assert len(image.layers) == 2
    proc = run_python([str(ROOT / "docs" / "examples" / "mini_runtime.py"),
                       str(store.root), "test/mini:1"], tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "exec in the container: mini\nexit status 3, memory peak" in proc.stdout
    # The container held its image only while it ran; nothing of it is left in the store.
    assert not os.listdir(tmp_path / "store" / "holds")


# -- every public name is documented -----------------------------------------------------------

def public_modules() -> list[str]:
    names = ["isolate", "isolate._plan"]  # _plan is public as isolate.lowlevel.plan
    for info in pkgutil.walk_packages(isolate.__path__, "isolate."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def undocumented(owner: str, value: object) -> list[str]:
    """``owner`` if ``value`` (a class or function) has no docstring of its own, and the
    public methods and properties of a class of isolate's that have none."""
    if not (inspect.isclass(value) or inspect.isroutine(value)):
        return []
    missing = [] if value.__doc__ else [owner]
    if inspect.isclass(value) and value.__module__.startswith("isolate"):
        for name, member in vars(value).items():
            if name.startswith("_"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            documentable = isinstance(member, property) or inspect.isroutine(member)
            if documentable and not member.__doc__:
                missing.append(f"{owner}.{name}")
    return missing


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_name_has_a_docstring_and_help_lists_it(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no docstring"
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    missing = []
    for name in names:
        missing += undocumented(f"{module_name}.{name}", getattr(module, name))
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)
    text = pydoc.render_doc(module, renderer=pydoc.plaintext)
    unlisted = [name for name in names if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not unlisted, f"help({module_name}) does not show {unlisted}"


def test_subpackages_are_attributes_of_a_plain_import_isolate() -> None:
    code = ("import sys, isolate\n"
            "assert 'isolate.fs' not in sys.modules  # cheap: nothing loaded yet\n"
            "print(isolate.fs.layers.extract.__name__, isolate.lowlevel.spawn.__name__,\n"
            "      isolate.cgroups.CGroup.__name__, isolate.fs.Bind.__name__,\n"
            "      isolate.lowlevel.plan.mount.__name__, isolate.namespaces.Namespace.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=PACKAGE_DIR), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["extract", "spawn", "CGroup", "Bind", "mount", "Namespace"]
