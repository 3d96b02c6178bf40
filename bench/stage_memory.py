"""Peak memory (USS) of one worker per label-job stage: the figures in `pipeline/tuning.py`'s STAGE_MEMORY_MB.

Each entry runs in a fresh Python process (so one model's allocations never count for
the next): it imports what the stage imports, builds the stage (random weights of the
real architecture at its real size for model annotators), then labels a batch of 8 real
photos at 512 px short side while a thread samples the process's USS every 20 ms with
psutil. USS (memory unique to the process) is what Ray Data compares against a stage's
`memory` request. Usage:

    python bench/stage_memory.py                      # light stages + the CPU suite
    python bench/stage_memory.py --names hed,pidinet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sampler import Sampler  # noqa: E402 - bench/ is the script's folder, first on the path

DEFAULT = (
    "decode,encode,write,canny,lineart_standard,hed,pidinet,informative_drawings,openpose,normalbae,"
    "depth_anything_v2_small,upernet_ade20k"
)


class PeakUSS(Sampler):
    """Samples this process's USS in a background thread; `.peak` in bytes."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        super().__init__(interval)
        self.proc, self.peak = psutil.Process(), 0

    def sample(self) -> None:
        self.peak = max(self.peak, self.proc.memory_full_info().uss)


def measure_one(name: str) -> float:
    """Peak USS (MiB) of a worker running stage `name` on 8 photos at 512 px."""
    import numpy as np
    import torch

    from label_throughput import real_images

    torch.set_num_threads(1)
    images = real_images(8, 512)
    with PeakUSS() as peak, tempfile.TemporaryDirectory() as tmp:
        if name == "decode":
            from pipeline.decode import DecodeRules, decode_image
            from schemas.codec import encode_file

            blobs = [encode_file("image", im, 95) for im in images]
            [decode_image(b, DecodeRules(512, 512, 100_000_000, False)) for b in blobs]
        elif name in ("encode", "write"):
            from schemas.codec import encode_file
            from schemas.encoding import encode_label

            files = [encode_file("depth", encode_label("depth", np.random.rand(*im.shape[:2])), 95) for im in images]
            if name == "write":
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"f": files}), Path(tmp) / "part.parquet")
        else:
            import annotators
            from label_throughput import random_checkpoints

            builder = random_checkpoints().get(name)  # weights-free annotators have none
            overrides = builder(Path(tmp) / name, full_size=True) if builder else {}
            annotators.build(name, **overrides)({"image": images})
    return peak.peak / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names", default=DEFAULT)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure in this process
    args = p.parse_args()
    if args.one:
        print(json.dumps({args.one: measure_one(args.one)}))
        return 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    for name in args.names.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, env=env)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode or not lines:
            print(f"  {name:26s} failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        print(f"  {name:26s} peak USS {json.loads(lines[-1])[name]:7.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
