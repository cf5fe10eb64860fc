#!/bin/sh
# Run every benchmark and print their Markdown tables. Installs nothing: a benchmark whose
# anchor tool is missing (bwrap, unshare, crun, tar, skopeo, conmon) skips those rows with a note.
# Usage, as root:  sh benchmarks/run_all.sh [ROUNDS]  > results.md
# Times the isolate the interpreter imports: the installed package (pip install .), or this
# tree's src when its C core is built in place (python setup.py build_ext --inplace).
# PYTHON names the interpreter (default: python3's real executable).
set -u
cd "$(dirname "$0")/.." || exit 1
ROUNDS=${1:-100}
# The real interpreter, not a pyenv shim (which adds ~70 ms to every start).
PY=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
if ls src/isolate/_native/_isolate*.so >/dev/null 2>&1; then
    export PYTHONPATH=src
else
    unset PYTHONPATH
fi
status=0
run() {
    echo
    "$PY" "$@" || { echo "**$1 failed (exit $?)**"; status=1; }
}
run benchmarks/bench_spawn.py --rounds "$ROUNDS" --crun
run benchmarks/bench_startup.py --rounds "$((ROUNDS / 2 > 10 ? ROUNDS / 2 : 10))"
run benchmarks/bench_cgroups.py --rounds "$((ROUNDS / 2 > 10 ? ROUNDS / 2 : 10))"
run benchmarks/bench_shim.py --rounds "$ROUNDS"
run benchmarks/bench_rootless.py --rounds "$((ROUNDS / 2 > 10 ? ROUNDS / 2 : 10))"
run benchmarks/bench_containers.py --rounds "$((ROUNDS / 2 > 10 ? ROUNDS / 2 : 10))"
if command -v tar >/dev/null; then
    printf '\n## bench_layers\n'
    run benchmarks/bench_layers.py
else
    echo "bench_layers: skipped, GNU tar (its anchor) is missing"
fi
if command -v skopeo >/dev/null && command -v docker-registry >/dev/null; then
    printf '\n## bench_pull\n'
    run benchmarks/bench_pull.py
else
    echo "bench_pull: skipped, skopeo or docker-registry (its anchors) is missing"
fi
if command -v podman >/dev/null && command -v runc >/dev/null; then
    printf '\n## bench_build\n'
    run benchmarks/bench_build.py --rounds "$((ROUNDS / 10 > 5 ? ROUNDS / 10 : 5))"
else
    printf '\n## bench_build\n'
    run benchmarks/bench_build.py --rounds 5 --no-podman
fi
exit $status
