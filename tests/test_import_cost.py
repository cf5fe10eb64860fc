"""What importing isolate's modules costs, checked structurally (never timed; the timings are
benchmarks/bench_startup.py's): no import pays for work only some callers need."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import isolate


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(isolate.__path__, "isolate.")
                  if not info.name.endswith(("__main__", "_native.build")))


def test_no_module_imports_attrs_when_it_runs() -> None:
    # import attrs is 12-17 ms (inspect, platform, its own classes) and each class it builds
    # compiles its methods (0.5-0.9 ms): isolate's records are isolate._record's, attrs
    # classes only to the type checker (its imports of attrs are under TYPE_CHECKING).
    code = ("import importlib, sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('attr', 'attrs'):\n"
            "            raise ImportError(f'{name} imported')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            f"for name in {_modules()!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('attr', 'attrs')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "[]\n"


def _loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter has after ``statement``, less what its start loads."""
    def modules(code: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(*sys.modules)"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return set(out.split())
    return modules(statement) - modules("")


def test_the_run_paths_modules_leave_out_what_a_plain_run_does_not_need() -> None:
    # The container's store makes no VolumeStore until volumes are used; the supervisor's
    # client connects a socket only to attach; the CLI's run loads the sandbox only for one;
    # the image store's gc/remove/df reports are classes of their own module.
    loaded = _loaded_by("import isolate.container.container, isolate._shim, isolate.cli.run, "
                        "isolate.image.store, isolate.cli.containers")
    assert not loaded & {"isolate.container.volumes", "socket", "isolate.sandbox",
                         "isolate.image._reports", "hashlib", "_hashlib", "secrets", "shutil",
                         "tempfile"}


def test_the_store_reports_load_where_they_are_asked_for() -> None:
    import isolate.image
    import isolate.image.store
    from isolate.image import GcReport
    from isolate.image._reports import DiskUsage, Removed

    assert isolate.image.store.GcReport is GcReport
    assert (isolate.image.DiskUsage, isolate.image.store.Removed) == (DiskUsage, Removed)
    assert {"DiskUsage", "GcReport", "Removed", "Store"} <= set(dir(isolate.image.store))


def test_small_records_are_hashed_without_openssl_and_as_hashlib_hashes_them() -> None:
    import hashlib

    from isolate._digest import SMALL, sha256_hex

    for data in (b"", b"abc", bytes(range(256)) * 1000, b"x" * (SMALL + 1)):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    loaded = _loaded_by("from isolate._digest import sha256_hex\n"
                        "assert len(sha256_hex(b'{}')) == 64")
    assert not loaded & {"hashlib", "_hashlib"}


def test_every_lazy_name_of_the_packages_loads() -> None:
    # isolate._lazy gives the packages their __getattr__ and __dir__ from one table each.
    for name in ("isolate", "isolate.fs", "isolate.image", "isolate.container", "isolate.net"):
        package = importlib.import_module(name)
        for export in package.__all__:
            assert getattr(package, export) is not None, f"{name}.{export}"
            assert export in dir(package)
        try:
            package.no_such_name  # noqa: B018
        except AttributeError as exc:
            assert f"module {name!r} has no attribute 'no_such_name'" in str(exc)
        else:
            raise AssertionError(f"{name}.no_such_name did not raise")

