"""Code run in a fresh interpreter that refuses some modules, for the tests that say which
modules a part of isolate leaves out.

An interpreter's start may load some of them before the code runs: a site-packages ``.pth``
hook (pyenv's here imports certifi, and with it re, enum, contextlib, functools and
collections) is not isolate's doing. So the refused modules already loaded are forgotten and
every later import of one fails: the code's output says what isolate itself loaded, on any
interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping

_PRELUDE = """\
import sys
REFUSED = {refused!r}
def _refused(name):
    return name in REFUSED or name.partition(".")[0] in REFUSED
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if _refused(name):
            raise ImportError(f"refused: {{name}}")
for _name in [m for m in sys.modules if _refused(m)]:
    del sys.modules[_name]
sys.meta_path.insert(0, _Refuse())
"""


def prelude(refused: Iterable[str]) -> str:
    """The lines that forget and then refuse the modules ``refused`` names (and their
    submodules), to put before code of one's own."""
    return _PRELUDE.format(refused=set(refused))


def run_refusing(refused: Iterable[str], code: str, *, env: Mapping[str, str] | None = None,
                 timeout: float = 60) -> str:
    """``code``'s stdout, run by this interpreter with ``refused`` refused; a failure (an
    import of a refused module among them) fails the test with the child's stderr."""
    proc = subprocess.run([sys.executable, "-c", prelude(refused) + code], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
