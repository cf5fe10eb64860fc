"""podman as the benchmarks run it: every directory it keeps state in, and its locks, are a
run's own, and what it leaves is removed by pid.

podman's defaults (``/run/libpod``, the shm segment ``/dev/shm/libpod_lock``) are shared by every
podman on the machine: another's ``system reset`` (a concurrent run of a benchmark) wipes them,
after which this run's ``rm -f`` reports success and leaves the container and its conmon
running; and the shm segment stays on the machine after the run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time


def private_env(base: str) -> dict[str, str]:
    """Write a containers.conf and storage.conf below ``base`` (made here) -- runc, cgroupfs,
    rlimits root may set, file locks, storage, run and temp dirs all in ``base`` -- and return
    an environment that points podman at them."""
    os.makedirs(os.path.join(base, "run"))
    with open(os.path.join(base, "containers.conf"), "w") as f:
        f.write(f'[engine]\ntmp_dir = "{base}/tmp"\nlock_type = "file"\n'
                'runtime = "runc"\ncgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n[containers]\n'
                'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n')
    with open(os.path.join(base, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/storage"\n'
                f'runroot = "{base}/run"\n')
    return dict(os.environ, CONTAINERS_CONF=os.path.join(base, "containers.conf"),
                CONTAINERS_STORAGE_CONF=os.path.join(base, "storage.conf"),
                TMPDIR=os.path.join(base, "run"))


def reset(env: dict[str, str] | str) -> None:
    """Remove what podman made in ``env`` (from :func:`private_env`; a string is the reason
    podman was not used, and nothing is done). A conmon of it still running after that, and
    the container process under it, is ended by pid, and said; so are its cgroups."""
    if isinstance(env, str):
        return
    subprocess.run(["podman", "system", "reset", "--force"], env=env, capture_output=True)
    base = os.path.dirname(env["CONTAINERS_CONF"]).encode()
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            continue
        if argv[0].endswith(b"/conmon") and any(a.startswith(base) for a in argv):
            print(f"{os.path.basename(sys.argv[0])}: podman left conmon {pid} running; ended",
                  file=sys.stderr)
            for victim in (*children, pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
            # ... and the container's cgroups (cgroupfs manager), which podman's cleanup
            # would have removed: libpod_parent/libpod-ID in each hierarchy.
            ctr = argv[argv.index(b"-c") + 1].decode() if b"-c" in argv else None
            for _ in range(100) if ctr else ():
                left = glob.glob(f"/sys/fs/cgroup/*/libpod_parent/libpod-{ctr}")
                for d in left:
                    with contextlib.suppress(OSError):  # busy until its tasks have exited
                        os.rmdir(d)
                if not left:
                    break
                time.sleep(0.02)
