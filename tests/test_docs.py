"""The examples in the documentation run: every ```python block of README.md and docs/*.md.

The blocks of one page run in order, in one fresh interpreter, in an empty temporary directory
(HOME and XDG_DATA_HOME point there too), so a page can build on its earlier blocks.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import isolate

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples(page: pathlib.Path) -> str:
    return "\n".join(BLOCK.findall(page.read_text()))


@pytest.mark.root
@pytest.mark.parametrize("page", [p for p in PAGES if p.exists() and examples(p)],
                         ids=lambda p: p.name)
def test_documentation_examples_run(page: pathlib.Path, tmp_path: pathlib.Path) -> None:
    code = examples(page)
    # The examples import the same isolate the tests imported (installed, or ./src in a
    # development checkout), whatever the working directory.
    package_dir = str(pathlib.Path(isolate.__file__).resolve().parent.parent)
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=package_dir)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"the examples of {page.name} failed:\n{proc.stdout}\n{proc.stderr}")
