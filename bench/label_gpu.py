"""GPU label throughput: batched bf16 with device-side resize/normalise vs the per-image fp32 baseline, on CUDA.

Three measurements on one CUDA machine, random weights of the real architectures at
their real sizes (timing does not depend on the weights' values), real photographs:

1. per annotator: ours (`annotators.build(..., dtype="bfloat16")`: one host->device copy
   per batch of uint8 images, resize and normalisation on the GPU, bf16 autocast,
   `max_batch` images per call) vs the per-image fp32 baseline on the same GPU (the
   same network called one image at a time in fp32, as a controlnet_aux detector or a
   transformers pipeline runs it). Images/s of each side, ratio, peak GPU memory.
   Models load before the timed region on both sides; CUDA is synchronised around it.
2. the whole suite: sum of baseline seconds / sum of ours.
3. a full label job (`run_label_job`, local Ray, every annotator as its own GPU stage
   with the fractional GPU share `jodi label --plan` would give it) while a thread samples
   GPU utilisation and memory through NVML every 200 ms: mean and peak utilisation.

On a machine without CUDA it prints one line and exits 0. Usage:

    python bench/label_gpu.py                       # the Joint-1.6M suite, 32 photos at 1024 px
    python bench/label_gpu.py --suite cpu --images 64 --skip-job
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sampler import Sampler  # noqa: E402 - bench/ is on the path from here


class GPUSampler(Sampler):
    """GPU utilisation (%) and memory used (MiB) of device 0, sampled by NVML in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.util, self.memory = [], []

    def open(self) -> None:
        import pynvml  # nvidia-ml-py (the `gpu` extra)

        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def sample(self) -> None:
        import pynvml

        self.util.append(pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        self.memory.append(pynvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20)

    def close(self) -> None:
        import pynvml

        pynvml.nvmlShutdown()


def timed(fn, *args) -> float:
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(*args)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_annotator(name: str, images, folder: Path, repeats: int) -> dict:
    import torch

    import annotators
    from label_throughput import random_checkpoints

    overrides = random_checkpoints()[name](folder, full_size=True)
    rows = {}
    for side, kw in (("ours", {"dtype": "bfloat16"}), ("baseline", {"dtype": "float32", "max_batch": 1})):
        ann = annotators.build(name, device="cuda", **{**overrides, **kw})
        call = (lambda a=ann: a({"image": images})) if side == "ours" else (
            lambda a=ann: [a({"image": [im]}) for im in images]
        )
        call()  # warm-up: cuDNN autotuning, allocator, lazy modules
        torch.cuda.reset_peak_memory_stats()
        best = min(timed(call) for _ in range(repeats))
        rows[side] = (best, torch.cuda.max_memory_allocated() / 2**20)
        del ann
        torch.cuda.empty_cache()
    (t_ours, m_ours), (t_base, m_base) = rows["ours"], rows["baseline"]
    row = {"annotator": name, "ours_s": t_ours, "baseline_s": t_base, "ratio": t_base / t_ours,
           "ours_img_s": len(images) / t_ours, "baseline_img_s": len(images) / t_base,
           "ours_mem_mib": m_ours, "baseline_mem_mib": m_base}
    print(f"  {name:26s} ours {row['ours_img_s']:8.2f} img/s ({m_ours:6.0f} MiB)   baseline "
          f"{row['baseline_img_s']:8.2f} img/s ({m_base:6.0f} MiB)   ratio {row['ratio']:5.2f}x", flush=True)
    return row


def bench_job(names, images, workdir: Path) -> dict:
    """A full label job on the GPU, NVML sampling utilisation throughout."""
    import ray
    from PIL import Image

    from label_throughput import random_checkpoints
    from pipeline.config import LabelJobConfig, StageResources
    from pipeline.job import run_label_job

    src = workdir / "corpus"
    src.mkdir(exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(src / f"img{i:04d}.jpg", quality=95)
    overrides = {n: random_checkpoints()[n](workdir / f"{n}_job", full_size=True) for n in names}
    share = 1.0 / len(names)  # one GPU shared by every stage: each actor holds its model resident
    cfg = LabelJobConfig(
        input=str(src), output=str(workdir / "out"), annotators=tuple(names), overrides=overrides,
        resources={n: StageResources(num_gpus=share, num_cpus=1, batch_size=16) for n in names},
        min_short_side=min(images[0].shape[:2]), target_short_side=min(images[0].shape[:2]), dtype="bfloat16",
    )
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        with GPUSampler() as gpu:
            t0 = time.perf_counter()
            run_label_job(cfg, progress=False)
            wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    util = gpu.util or [0]
    return {"images": len(images), "img_s": len(images) / wall, "wall_s": wall,
            "gpu_util_mean": sum(util) / len(util), "gpu_util_max": max(util),
            "gpu_mem_peak_mib": max(gpu.memory or [0])}


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=("joint", "cpu"), default="joint")
    p.add_argument("--annotators", help="comma list (overrides --suite)")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--short-side", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-job", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench/label_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here); nothing measured")
        return 0
    from label_throughput import SUITES, one_per_domain, real_images

    names = tuple(args.annotators.split(",")) if args.annotators else SUITES[args.suite]
    images = real_images(args.images, args.short_side)
    print(f"GPU label throughput on {torch.cuda.get_device_name(0)}: {len(images)} photos, short side "
          f"{args.short_side}; ours = batched bf16, device-side resize; baseline = per-image fp32", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_annotator(n, images, Path(tmp) / n, args.repeats) for n in names]
        suite = sum(r["baseline_s"] for r in rows) / sum(r["ours_s"] for r in rows)
        print(f"  whole suite ratio: {suite:.2f}x", flush=True)
        if not args.skip_job:
            job = bench_job(one_per_domain(names), images, Path(tmp))
            print(f"  label job: {job['img_s']:.2f} img/s, GPU utilisation mean {job['gpu_util_mean']:.0f}% "
                  f"(max {job['gpu_util_max']}%), GPU memory peak {job['gpu_mem_peak_mib']:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
