"""The exit command isolate-shim runs once a container has ended for good (as conmon runs
``podman container cleanup``): settle the run -- release its cgroup and network, record
its end -- and remove an ``auto_remove`` container, so that ``run -d --rm`` leaves nothing
once its container ends, whether or not anyone looks at the store again.

It runs as ``python -S -c BOOTSTRAP STORE_ROOT ID PATH...`` in a process of its own (the
shim does not wait for it), with stdio on /dev/null: whatever fails is left for the next
reader of the store, which settles and removes as this does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: The ``-c`` program: our caller's ``sys.path`` comes after the two arguments (``-S`` skips
#: ``site``: no ``.pth`` files at start-up, and the shim's environment has only PATH).
BOOTSTRAP = ("import sys; sys.path[:0] = sys.argv[3:]; "
             "from isolate.container._cleanup import main; "
             "raise SystemExit(main(sys.argv[1:3]))")


def main(argv: Sequence[str]) -> int:
    """Clean up after container ``argv[1]`` of the store at ``argv[0]``; 0 when done or
    nothing was left to do, 1 when something failed (said on stderr)."""
    from isolate.container.container import ContainerStore
    from isolate.errors import IsolateError, NotFoundError
    from isolate.image import Store

    root, cid = argv
    try:
        store = ContainerStore(Store(root))
        store.get(cid)._after_end()
    except NotFoundError:
        return 0  # removed meanwhile (by a waiter, a lister, rm)
    except (IsolateError, OSError) as exc:
        print(f"isolate: cleaning up after container {cid[:12]}: {exc}", file=sys.stderr)
        return 1
    return 0
