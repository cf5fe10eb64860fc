"""The exit command isolate-shim runs once a container has ended for good (as conmon runs
``podman container cleanup``): settle the run -- release its cgroup and network, record
its end -- and remove an ``auto_remove`` container, so that ``run -d --rm`` leaves nothing
once its container ends, whether or not anyone looks at the store again.

It runs as ``python -S -c _CLEANUP STORE_ROOT ID NETWORK_HOST PATH...`` (``_CLEANUP`` in
:mod:`isolate.container.container`) in a process of its own (the
shim does not wait for it), with stdio on /dev/null: whatever fails is left for the next
reader of the store, which settles and removes as this does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Clean up after container ``argv[1]`` of the store at ``argv[0]``, its networks built
    in the namespace at path ``argv[2]`` ("": this process's own; absent in the command of
    an older version); 0 when done or nothing was left to do, 1 when something failed (said
    on stderr)."""
    from isolate.container.container import ContainerStore
    from isolate.errors import IsolateError, NotFoundError
    from isolate.image import Store

    root, cid, *rest = argv
    try:
        store = ContainerStore(Store(root), network_host=rest[0] if rest and rest[0] else None)
        store.get(cid)._after_end()
    except NotFoundError:
        return 0  # removed meanwhile (by a waiter, a lister, rm)
    except (IsolateError, OSError) as exc:
        print(f"isolate: cleaning up after container {cid[:12]}: {exc}", file=sys.stderr)
        return 1
    return 0
