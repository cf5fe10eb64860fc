"""``python -m isolate.cli``."""

from isolate.cli import entry

entry()
