"""Benchmark: pull an image from a local docker-registry with isolate vs ``skopeo copy``.

Not a test. Starts ``docker-registry`` on 127.0.0.1 (a free port, temp storage), pushes an
image of several layers (busybox + random data) with skopeo, then times, each into a fresh
destination: ``Store.pull`` and ``skopeo copy docker://... oci:DIR``. Prints medians and the
ratio. Usage: ``python benchmarks/bench_pull.py [--runs N] [--mib M]``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time

from _isolate_path import describe

from isolate.image import ImageConfig, Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(work: str) -> tuple[subprocess.Popen[bytes], str]:
    host = f"127.0.0.1:{free_port()}"
    config = os.path.join(work, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {work}/storage\n"
                f"http:\n  addr: {host}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection(host, timeout=1)
            conn.request("GET", "/v2/")
            conn.getresponse()
            return proc, host
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def layer_tar(path: str, size: int, seed_dir: str | None = None) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        if seed_dir:
            tar.add(seed_dir, arcname=".")
        data = os.urandom(size)
        info = tarfile.TarInfo(f"data-{os.urandom(4).hex()}.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=32, help="random data across 4 layers")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-pull-")
    proc, host = start_registry(work)
    try:
        seed = Store(os.path.join(work, "seed"))
        rootfs = os.path.join(work, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
        images = []
        for i in range(4):
            tar = os.path.join(work, f"l{i}.tar.gz")
            layer_tar(tar, args.mib * (1 << 20) // 4, rootfs if i == 0 else None)
            images.append(seed.import_tarball(tar, f"bench/l{i}:1"))
        # One image whose chain is the four layers: stitch the layer blobs into one manifest.
        layers = [(im.diff_ids[0], im.layers[0].digest, im.layers[0].size,
                   im.layers[0].media_type) for im in images]
        image = seed._new_image(layers, "bench/pull:1", ImageConfig(cmd=["/bin/busybox"]),
                                "linux/amd64", "bench")
        ref = f"{host}/bench/pull:1"
        seed.push(image, ref)
        ours, theirs = [], []
        for run in range(args.runs):
            dest = os.path.join(work, f"run{run}")
            t0 = time.perf_counter()
            Store(os.path.join(dest, "store")).pull(ref)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                            "-q", f"docker://{ref}", f"oci:{dest}/oci:1"], check=True)
            theirs.append(time.perf_counter() - t0)
            shutil.rmtree(dest)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"timed: {describe()}")
        print(f"image: 4 layers, {args.mib} MiB random data, {args.runs} runs")
        print(f"isolate Store.pull     median {a * 1000:8.1f} ms")
        print(f"skopeo copy -> oci:DIR median {b * 1000:8.1f} ms")
        print(f"ratio isolate/skopeo   {a / b:.2f}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
