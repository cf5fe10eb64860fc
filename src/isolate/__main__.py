"""``python -m isolate``: the isolate command line."""

from isolate.cli import entry

entry()
