"""Build the cffi extension isolate._native._isolate (declared in src/isolate/_native/build.py)
and, beside it, the isolate-shim program (installed as isolate/_native/isolate-shim)."""

import importlib.util
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

_BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "isolate", "_native",
                      "build.py")


def _native_build():
    spec = importlib.util.spec_from_file_location("isolate_native_build", _BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExtWithShim(build_ext):
    """build_ext, then the supervisor program with the same compiler."""

    def _shim_path(self):
        native = _native_build()
        if self.inplace:
            return os.path.join(os.path.dirname(_BUILD), native.SHIM_NAME)
        return os.path.join(self.build_lib, "isolate", "_native", native.SHIM_NAME)

    def run(self):
        super().run()
        if self.compiler is None or isinstance(self.compiler, str):
            from distutils.ccompiler import new_compiler
            from distutils.sysconfig import customize_compiler

            compiler = new_compiler(compiler=self.compiler, force=self.force)
            customize_compiler(compiler)
        else:
            compiler = self.compiler
        _native_build().build_shim(compiler, self.build_temp, self._shim_path())

    def get_outputs(self):
        return [*super().get_outputs(), self._shim_path()]


setup(cffi_modules=["src/isolate/_native/build.py:ffi"], cmdclass={"build_ext": BuildExtWithShim})
