"""Benchmark what a subordinate id range costs a rootless user: entering a sandbox whose maps
newuidmap/newgidmap write, and extracting an image layer in an id-mapped helper.

Not a test: prints Markdown tables (medians, p90). Run as root, against the installed package
or a source tree built in place (see docs/performance.md):
    python benchmarks/bench_rootless.py [--rounds N]
It times an ordinary user (uid 65534) twice, the way tests/rootless.py runs one: once with no
subordinate ids (one id mapped, the maps written by the child itself) and once with the range
nobody:200000:65536 granted for that run only (bound over /etc/subuid and /etc/subgid in a
private mount namespace; the machine's files are not changed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import textwrap

from _harness import Result, command_line, machine_notes, table
from _isolate_path import describe, pythonpath_prefix

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
BENCH = os.path.dirname(os.path.abspath(__file__))

# Run as the ordinary user: time each candidate, print {name: [seconds...]} as JSON.
_TIMED = """
import json, os, shutil, sys, tempfile
sys.path.insert(0, {bench!r})
from _harness import Candidate, interleave
from isolate import Sandbox
from isolate.image import Store
from isolate._mapped import MappedWorker
from isolate.namespaces import rootless_maps

maps = rootless_maps()
work = tempfile.mkdtemp()
store = Store(os.path.join(work, "store"))
img = store.import_tarball({layer!r}, "bench/layer:1")
path = store.layer_path(img.diff_ids[0])

def enter_and_run():
    with Sandbox() as sb:
        sb.run(["/bin/true"], check=True)

def extract():
    store.layer_dirs(img)
    if maps.subordinate:   # (removing it is part of the round, not of the extraction)
        with MappedWorker(maps) as worker:
            worker.remove([path])
    else:
        shutil.rmtree(path)

def helper():
    with MappedWorker(maps) as worker:
        worker.remove([])   # nothing: start, one job, stop
        worker.copy_metadata([(work, work)])

cands = [Candidate("sandbox: enter + run /bin/true", enter_and_run),
         Candidate("store: extract a busybox layer (+ remove)", extract)]
if maps.subordinate:
    cands.append(Candidate("the id-mapped helper alone: start, a job, stop", helper))
results = interleave(cands, {rounds})
shutil.rmtree(work)
print(json.dumps({{r.name: r.samples for r in results}}))
"""


def _busybox_layer(path: str) -> None:
    with tarfile.open(path, "w") as t:
        for d in ("bin", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        t.add("/bin/busybox", "bin/busybox")
        info = tarfile.TarInfo("etc/owned")
        info.uid = info.gid = 1000
        t.addfile(info)
    os.chmod(path, 0o644)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/bin/busybox"):
        print("bench_rootless: needs root (to run code as uid 65534) and /bin/busybox")
        return 0
    sys.path.insert(0, TESTS)
    try:  # tests/rootless.py: the staged copy, the interpreter, the private binds
        import rootless
    except ImportError as exc:
        print(f"bench_rootless: needs the test tools (scripts/install.sh --test): {exc}")
        return 0

    work = tempfile.mkdtemp(prefix="isolate-bench-rootless-", dir="/var/tmp")
    try:
        os.chmod(work, 0o755)
        layer = os.path.join(work, "layer.tar")
        _busybox_layer(layer)
        code = textwrap.dedent(_TIMED.format(bench=BENCH, layer=layer, rounds=args.rounds))
        runs = {}
        for subids in (False, True):
            try:
                proc = rootless.run_unprivileged(code, subids=subids, check=False,
                                                 timeout=1800)
            except BaseException as exc:  # a pytest skip outside pytest: say why, go on
                print(f"bench_rootless: cannot run as an ordinary user here: {exc}")
                return 0
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            runs[subids] = json.loads(proc.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = []
    for subids, label in ((False, "one id"), (True, "subordinate range")):
        for name, samples in runs[subids].items():
            results.append(Result(f"{name}, {label}", "", tuple(samples)))
    print("### Rootless: one id mapped against a subordinate range (uid 65534)\n")
    enter, extract = (f"{name}, one id" for name in list(runs[False])[:2])
    print(table(results, [("vs enter, one id", enter), ("vs extract, one id", extract)]))
    print(f"\nTimed: {describe()}. {machine_notes()}. Command: "
          f"`{command_line(pythonpath_prefix())}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
