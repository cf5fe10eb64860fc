#!/usr/bin/env bash
# Install isolate (the isolate-linux distribution) into this Python, with what it needs to build.
#   bash scripts/install.sh          the library and the `isolate` command
#   bash scripts/install.sh --test   also everything the test suite needs (Debian packages
#                                    too, when run as root or with sudo)
#   bash scripts/install.sh --bench  the test set and the benchmarks' anchors the tests do not
#                                    run (crun), so that every row of benchmarks/ is measured
#   bash scripts/install.sh --debian-python
#                                    only bring Debian's own python3 (/usr/bin/python3) up to
#                                    Debian's current security release, with venv and headers:
#                                    the interpreter of a fresh Debian machine, which .ci/run
#                                    also tests under (installs nothing into it)
# Debian packages: gcc, Python headers and libffi to build the C core; the test set adds the
# programs the tests run for real (busybox, a registry, skopeo, umoci, bwrap, a proxy ...).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
with_bench=0
debian_python=0
case "${1:-}" in
    --test) with_tests=1 ;;
    --bench) with_tests=1; with_bench=1 ;;
    --debian-python) debian_python=1 ;;
esac

PYTHON=${PYTHON:-python3}
build_pkgs=(gcc libc6-dev libffi-dev python3-dev python3-pip)
test_pkgs=(busybox-static util-linux iproute2 uidmap docker-registry skopeo umoci
           apache2-utils fuse-overlayfs zstd bubblewrap linux-libc-dev
           golang-github-containers-common procps nftables passt slirp4netns tinyproxy
           debootstrap podman runc strace)
bench_pkgs=(crun)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else return 1
    fi
}

apt_install() {
    # Others may run apt at the same time: wait for the lock rather than fail.
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$@" >/dev/null
}

if [ "$debian_python" = 1 ]; then
    # Installing a package that is there upgrades it to the candidate: after an update, that
    # is the current security release (whose stdlib, tarfile among it, differs from older
    # builds). The -minimal and -dev packages are pinned to the same version, so all go.
    v=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    debian_python_pkgs=(python3 python3-venv python3-dev "python$v" "python$v-venv"
                        "python$v-dev" "python$v-minimal" "libpython$v-stdlib"
                        "libpython$v-minimal" "libpython$v-dev")
    echo "bringing Debian's python$v to its current release: ${debian_python_pkgs[*]}" >&2
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_install "${debian_python_pkgs[@]}"
    dpkg-query -W -f='${Package} ${Version}\n' "python$v" "libpython$v-stdlib" >&2
    exit 0
fi

missing=()
wanted=("${build_pkgs[@]}")
[ "$with_tests" = 1 ] && wanted+=("${test_pkgs[@]}")
[ "$with_bench" = 1 ] && wanted+=("${bench_pkgs[@]}")
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
fi
# A pyenv or venv interpreter brings its own headers and pip: no need for Debian's.
if "$PYTHON" -c 'import sys; sys.exit(sys.prefix == "/usr")'; then
    filtered=()
    for p in "${missing[@]+"${missing[@]}"}"; do
        case "$p" in python3-dev|python3-pip) ;; *) filtered+=("$p") ;; esac
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    if ! { as_root apt-get -o DPkg::Lock::Timeout=600 update -qq && \
           apt_install "${missing[@]}"; }; then
        echo "warning: could not install ${missing[*]} (not root and no sudo?)" >&2
    fi
fi

pip_args=(--quiet --disable-pip-version-check)
# Debian's own python3 refuses system-wide installs (PEP 668) unless told otherwise.
if "$PYTHON" -c 'import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    pip_args+=(--break-system-packages)
fi
target=.
[ "$with_tests" = 1 ] && target=".[test]"
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install "${pip_args[@]}" "$target"
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
echo "isolate installed: $("$PYTHON" -c 'import isolate; print(isolate.__file__)')" >&2
