"""`jodi label ... --plan`: measure before spending. Calibrate, project, split the hardware, write a job YAML.

Joint's suite is very uneven (RGB-X samples 50 diffusion steps per image, a 7B captioner
writes long text, Canny is free), so equal resources per stage starve the expensive
stages while cheap ones idle. The planner:

1. calibrates each requested annotator on a few of the user's own images on the
   hardware at hand (model loaded outside the timed region, one warm-up image; on CPU
   with one thread, the unit a CPU actor gets), plus decode + encode, the CPU work
   every image needs;
2. splits the hardware so every stage keeps up with the slowest one: devices go one
   increment at a time to the stage that is currently the bottleneck (max-min
   fairness on images/s). Below one device a stage gets a fraction (time-sharing one
   GPU: Ray's fractional `num_gpus`, at least the model's measured memory share),
   above one it gets a pool of whole-device actors. Weights-free annotators and the
   light stages run on CPUs;
3. prints images/s, share of the cost and projected hours, and writes the split as a
   job YAML that `jodi label --config` reads unchanged. No output dataset is written.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

CPU_STEP, GPU_STEP = 0.25, 0.125  # smallest fraction of a device one actor gets
LIGHT_STAGES = "decode+encode+write"


class PlanError(ValueError):
    """The plan cannot be made (e.g. no input image decodes)."""


@dataclass(frozen=True)
class Hardware:
    cpus: float
    gpus: float = 0.0
    gpu_memory_mb: float = 0.0

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"


@dataclass(frozen=True)
class Calibration:
    """One stage measured on one device unit (one GPU, or one CPU thread)."""

    name: str
    seconds_per_image: float
    on_gpu: bool
    memory_mb: float = 0.0  # peak on the device (GPU) or peak process USS growth (CPU)


@dataclass(frozen=True)
class StageSplit:
    name: str
    units: float  # devices given to the stage: GPUs if on_gpu, else CPUs
    on_gpu: bool
    seconds_per_image: float

    @property
    def pool(self) -> int:
        return max(1, math.floor(self.units + 1e-9)) if self.units >= 1 else 1

    @property
    def per_actor(self) -> float:
        return 1.0 if self.units >= 1 else self.units

    @property
    def images_per_second(self) -> float:
        """The stage's capacity: devices / seconds per image on one device (linear in actors)."""
        return self.pool * self.per_actor / self.seconds_per_image


@dataclass(frozen=True)
class Plan:
    hardware: Hardware
    corpus_images: int
    stages: tuple[StageSplit, ...]

    @property
    def images_per_second(self) -> float:
        return min(s.images_per_second for s in self.stages)

    @property
    def bottleneck(self) -> str:
        return min(self.stages, key=lambda s: s.images_per_second).name

    @property
    def hours(self) -> float:
        return self.corpus_images / self.images_per_second / 3600


def split(calibrations: list[Calibration], hw: Hardware, corpus_images: int) -> Plan:
    """Give each stage devices until the budget is spent, always to the current bottleneck (pure)."""
    # Each GPU actor also takes one CPU for its host-side work (at most one actor per GPU stage and GPU).
    gpu_stages = sum(c.on_gpu for c in calibrations)
    pools = {True: float(hw.gpus), False: float(hw.cpus) - min(hw.cpus / 2, hw.gpus + gpu_stages if gpu_stages else 0)}
    alloc: dict[str, float] = {}
    for c in calibrations:
        alloc[c.name] = _minimum(c, hw)
        pools[c.on_gpu] -= alloc[c.name]
    if min(pools.values()) < -1e-9:
        raise PlanError(f"not enough devices for one actor per stage: {hw} for {[c.name for c in calibrations]}")
    while True:
        # The bottleneck among the stages that can still grow within their device pool.
        growable = [c for c in calibrations if _step(alloc[c.name], c.on_gpu) <= pools[c.on_gpu] + 1e-9]
        if not growable:
            break
        c = min(growable, key=lambda c: (alloc[c.name] / c.seconds_per_image, -c.seconds_per_image))
        step = _step(alloc[c.name], c.on_gpu)
        # Stop once the slowest stage cannot grow: more devices for cheap stages buy nothing.
        slowest = min(calibrations, key=lambda c: alloc[c.name] / c.seconds_per_image)
        if c is not slowest and alloc[slowest.name] / slowest.seconds_per_image < alloc[c.name] / c.seconds_per_image:
            break
        alloc[c.name] += step
        pools[c.on_gpu] -= step
    stages = tuple(StageSplit(c.name, alloc[c.name], c.on_gpu, c.seconds_per_image) for c in calibrations)
    return Plan(hw, corpus_images, stages)


def _minimum(c: Calibration, hw: Hardware) -> float:
    if not c.on_gpu:
        return CPU_STEP
    # A fractional GPU must still hold the model: at least its measured share of the GPU's memory.
    share = c.memory_mb / hw.gpu_memory_mb if hw.gpu_memory_mb else 0.0
    return min(1.0, max(GPU_STEP, math.ceil(share / GPU_STEP) * GPU_STEP))


def _step(units: float, on_gpu: bool) -> float:
    """Fractions up to one device (one actor time-shares it), then one more whole-device actor."""
    if units < 1:
        return min(GPU_STEP if on_gpu else CPU_STEP, 1.0 - units)
    return 1.0


# ----- calibration on the hardware at hand -----------------------------------------------------
class PeakMemory:
    """Peak growth of this process's USS (sampled by a thread every 20 ms) and, on CUDA, of allocated GPU memory."""

    def __init__(self, cuda: bool = False, interval: float = 0.02) -> None:
        import psutil

        self.proc, self.cuda, self.interval = psutil.Process(), cuda, interval
        self.start = self.peak = self.proc.memory_full_info().uss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_full_info().uss)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return (self.peak - self.start) / 2**20


def calibrate(name: str, overrides: dict, images: list[np.ndarray], device: str, batch_size: int) -> Calibration:
    """Seconds per image of one annotator on one device unit; its model loads outside the timed region."""
    import torch

    import annotators
    from annotators.base import NumpyAnnotator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a CPU actor's unit; the plan scales by actors
    on_gpu = device == "cuda"
    try:
        with PeakMemory(cuda=on_gpu) as mem:
            ann = annotators.build(name, device=device, **overrides)
            on_gpu = on_gpu and not isinstance(ann, NumpyAnnotator)  # OpenCV annotators run on CPUs
            ann({"image": images[:1]})  # warm-up: lazy initialisation, allocator, kernel selection
            # On CPU, process time: the CPU seconds an image costs, robust to other load on the machine.
            clock = time.perf_counter if on_gpu else time.process_time
            if on_gpu:
                torch.cuda.synchronize()
            t0 = clock()
            for start in range(0, len(images), batch_size):
                ann({"image": images[start : start + batch_size]})
            if on_gpu:
                torch.cuda.synchronize()
            seconds = (clock() - t0) / len(images)
    finally:
        torch.set_num_threads(threads)
    return Calibration(name, max(seconds, 1e-6), on_gpu, mem.mb)


def calibrate_light(blobs: list[bytes], rules) -> Calibration:
    """Decode + encode of the sample files on one CPU thread (the work every image needs)."""
    from pipeline.decode import decode_image
    from schemas.codec import encode_file

    t0 = time.process_time()
    for data in blobs:
        encode_file("image", decode_image(data, rules), 95)
    return Calibration(LIGHT_STAGES, max((time.process_time() - t0) / len(blobs), 1e-6), on_gpu=False)


def local_hardware() -> Hardware:
    import os

    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        mem = torch.cuda.get_device_properties(0).total_memory / 2**20
        return Hardware(cpus=float(os.cpu_count() or 1), gpus=float(n), gpu_memory_mb=mem)
    return Hardware(cpus=float(os.cpu_count() or 1))


# ----- report and job YAML ------------------------------------------------------------------------
def job_yaml(plan: Plan, cfg, calibrations: dict[str, Calibration]) -> str:
    """The split as a job file for `jodi label --config` (resources per annotator; the rest from cfg)."""
    import yaml

    resources = {}
    for s in plan.stages:
        if s.name == LIGHT_STAGES:
            continue
        res = cfg.resources_for(s.name)
        resources[s.name] = {
            "num_gpus": s.per_actor if s.on_gpu else 0.0,
            "num_cpus": 1.0 if s.on_gpu else s.per_actor,
            "batch_size": res.batch_size,
            "pool_min": s.pool,
            "pool_max": s.pool,
        }
    data = {"annotators": [s.name for s in plan.stages if s.name != LIGHT_STAGES], "resources": resources}
    if cfg.dtype:
        data["dtype"] = cfg.dtype
    if cfg.overrides:
        data["overrides"] = {k: dict(v) for k, v in cfg.overrides.items()}
    for key in ("min_short_side", "target_short_side", "shard_size"):
        data[key] = getattr(cfg, key)
    header = [
        f"# jodi label --plan: {plan.hardware.cpus:g} CPUs, {plan.hardware.gpus:g} GPUs; "
        f"{plan.images_per_second:.3g} images/s projected, bottleneck {plan.bottleneck}.",
        *(f"# {n}: {c.seconds_per_image:.4g} s/image on one {'GPU' if c.on_gpu else 'CPU'}, "
          f"peak memory {c.memory_mb:.0f} MiB" for n, c in calibrations.items()),
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False)


def report(plan: Plan) -> str:
    total = sum(s.seconds_per_image for s in plan.stages)
    lines = [
        f"plan for {plan.corpus_images} images on {plan.hardware.cpus:g} CPUs and {plan.hardware.gpus:g} GPUs:",
        f"  {'stage':26s} {'img/s (1 unit)':>14s} {'cost share':>10s} {'actors x device':>18s} {'stage img/s':>11s}",
    ]
    for s in plan.stages:
        device = f"{s.pool} x {s.per_actor:g} {'GPU' if s.on_gpu else 'CPU'}"
        lines.append(
            f"  {s.name:26s} {1 / s.seconds_per_image:14.3g} {s.seconds_per_image / total:10.1%} "
            f"{device:>18s} {s.images_per_second:11.3g}"
        )
    lines.append(
        f"  projected: {plan.images_per_second:.3g} images/s, {plan.hours:.3g} hours for the corpus; "
        f"bottleneck: {plan.bottleneck}"
    )
    return "\n".join(lines)


def plan_label_job(cfg, sample_images: int = 4, hardware: Hardware | None = None) -> tuple[Plan, str]:
    """Calibrate on the first decodable inputs of `cfg.input` and split `hardware` (default: this machine).
    Returns the plan and its job YAML; writes nothing."""
    from annotators.registry import canonical_name
    from pipeline.decode import DecodeError, DecodeRules, decode_image, read_bytes
    from pipeline.sources import list_sources

    hw = hardware or local_hardware()
    sources = list_sources(cfg.input, cfg.hf_split)
    rules = DecodeRules(cfg.min_short_side, cfg.target_short_side, cfg.max_pixels, cfg.allow_animated)
    blobs, images = [], []
    for src in sources:
        try:
            data = read_bytes(src)
            images.append(decode_image(data, rules))
            blobs.append(data)
        except (DecodeError, OSError, ValueError):
            continue  # the run files these as errors; the plan calibrates on images that label
        if len(images) == sample_images:
            break
    if not images:
        raise PlanError(f"no input of {cfg.input} decodes under the job's rules (e.g. --min-short-side) to calibrate on")
    names = list(dict.fromkeys(canonical_name(a) for a in cfg.annotators))
    device = "cuda" if hw.gpus > 0 else "cpu"
    overrides = {canonical_name(k): v for k, v in cfg.overrides.items()}
    dtype = {"dtype": cfg.dtype} if cfg.dtype else {}
    cals = {
        n: calibrate(n, {**dtype, **overrides.get(n, {})}, images, device, cfg.resources_for(n).batch_size)
        for n in names
    }
    cals[LIGHT_STAGES] = calibrate_light(blobs, rules)
    plan = split(list(cals.values()), hw, len(sources))
    return plan, job_yaml(plan, cfg, cals)
