"""Build the cffi extension isolate._native._isolate (declared in src/isolate/_native/build.py)."""

from setuptools import setup

setup(cffi_modules=["src/isolate/_native/build.py:ffi"])
