"""Ray Data tuning of the label job: pure functions that size its stages, called by `run_label_job`.

Three things decide how well a Ray Data job streams on one machine or a cluster:

1. Rows per batch. A batch of a cheap stage (decode, Canny, encode, write) costs
   milliseconds, so with 8 small images per batch Ray's per-batch overhead (task
   hand-off, object-store put/get, metrics) dominates. The light stages take as many
   rows as fit in a fixed pixel budget instead; model stages keep the job config's
   `batch_size`, which is a model/device choice.
2. The `memory` resource of each stage. Ray schedules actors on CPUs and GPUs only
   unless a stage declares memory; Ray Data then warns once a worker's measured USS
   exceeds what it would safely assume per CPU (4 GiB x (1 - reserved - object
   store) ~ 2.4 GiB per CPU, `map_operator.SAFE_DEFAULT_LOGICAL_MEMORY_PER_CPU`), and a
   cluster can pack more model actors on a node than its RAM holds. Each stage
   declares the peak USS measured for it (`STAGE_MEMORY_MB`), so the warning is
   replaced by a correct reservation.
3. `DataContext` knobs: no Ray progress bars or execution banners on the user's
   terminal (the job prints its own progress bar and summary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import StageResources

MiB = 2**20

# Peak USS (MiB) of one Ray worker running the stage: Python + torch + the model + activations, fp32 on
# CPU, a batch of 8 photos at 512 px short side (the Joint default working size). Measured with
# `python bench/stage_memory.py` (a fresh process per entry, USS sampled every 20 ms with psutil while
# the stage labels the batch; USS is what Ray Data compares against the request), plus ~100 MiB for the
# Ray worker runtime a standalone process does not carry (observed: a decode/canny worker at 375 MiB).
# Weights-free annotators (OpenCV) cost what decode costs. Unlisted model annotators use
# UNMEASURED_MODEL_MB until measured; `jodi label --plan` measures each model's footprint on the
# user's hardware and prints it in the job YAML it writes.
STAGE_MEMORY_MB: dict[str, int] = {
    "decode": 450,  # 327 standalone; a canny/decode Ray worker peaked at 375 in tests/test_tuning.py
    "encode": 450,  # 333 standalone
    "write": 500,  # 377 standalone
    "hed": 1500,  # 1367 standalone
}
UNMEASURED_MODEL_MB = 8192  # conservative: a ~1B-parameter model in fp32 plus activations

# Decoded pixels per batch for the light stages: 8 Joint images (1024 short side, 4:3) or 128
# images of 256 px, so that a batch costs tens of milliseconds, far above Ray's per-batch overhead.
LIGHT_BATCH_PIXELS = 8 * 1024 * 1024 * 4 // 3
LIGHT_BATCH_RANGE = (8, 256)


@dataclass(frozen=True)
class StagePlan:
    """Ray `map_batches` arguments of one stage derived here (resources come from the job config)."""

    batch_size: int
    memory: int  # bytes; Ray's `memory` resource of each worker


def light_batch_size(short_side: int, aspect: float = 4 / 3) -> int:
    """Rows per batch for the cheap stages, from the working short side (pixel budget, clamped)."""
    pixels = max(1, short_side) ** 2 * aspect
    lo, hi = LIGHT_BATCH_RANGE
    return int(min(hi, max(lo, round(LIGHT_BATCH_PIXELS / pixels))))


def stage_memory_bytes(name: str, weights_free: bool = False, measured_mb: float | None = None) -> int:
    """The `memory` request of a stage: measured on the user's hardware (plan) > the table > a default."""
    if measured_mb is not None:
        mb = measured_mb
    elif name in STAGE_MEMORY_MB:
        mb = STAGE_MEMORY_MB[name]
    else:
        mb = STAGE_MEMORY_MB["decode"] if weights_free else UNMEASURED_MODEL_MB
    # Ray Data recommends 25% headroom over the observed peak (high_memory_detector._get_recommended_memory).
    return int(math.ceil(mb * 1.25)) * MiB


def light_stage(stage: str, short_side: int) -> StagePlan:
    """Batch size and memory of decode / encode / write."""
    return StagePlan(batch_size=light_batch_size(short_side), memory=stage_memory_bytes(stage))


_DEFAULT_BATCH = StageResources.__dataclass_fields__["batch_size"].default


def annotate_stage(names: list[str], batch_size: int, short_side: int, weights_free: bool,
                   measured_mb: float | None = None) -> StagePlan:
    """One annotator stage (a colocated group holds several models: their footprints add up)."""
    if weights_free and batch_size == _DEFAULT_BATCH:  # a batch size the user chose wins
        batch_size = max(batch_size, light_batch_size(short_side))
    memory = sum(stage_memory_bytes(n, weights_free) for n in names) if measured_mb is None else (
        stage_memory_bytes(names[0], weights_free, measured_mb)
    )
    return StagePlan(batch_size=batch_size, memory=memory)


def scale_to_cluster(requests: dict[str, int], cluster_memory: float) -> dict[str, int]:
    """Scale the stages' memory requests down together when one actor of each would not fit in 80% of
    the cluster's `memory` resource: Ray would otherwise wait forever for an actor it cannot place."""
    total = sum(requests.values())
    if cluster_memory <= 0 or total <= 0.8 * cluster_memory:
        return dict(requests)
    factor = 0.8 * cluster_memory / total
    return {k: max(MiB, int(v * factor)) for k, v in requests.items()}


def configure_data_context(ctx) -> None:
    """Ray Data settings for the label job; `ctx` is `ray.data.DataContext.get_current()`."""
    from pipeline.runtime import ray_logs_shown

    # The job shows one progress bar of its own and a summary; Ray's per-operator bars and
    # "Starting execution of Dataset" banners are noise on the user's terminal (`--verbose` shows them).
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = ray_logs_shown()
    # Labels are images too: a batch of 8 Joint images with 7 float labels is ~300 MB. Blocks larger
    # than Ray's 128 MiB default are split on output anyway; allowing 256 MiB avoids splitting
    # each model batch into several objects (each put/get costs a round trip on a small machine).
    ctx.target_max_block_size = 256 * MiB


def is_weights_free(group: list[str]) -> bool:
    """True when every annotator of the group is an OpenCV filter (no model weights, no torch stack)."""
    from annotators.base import NumpyAnnotator
    from annotators.registry import resolve

    return all(issubclass(resolve(n)[0], NumpyAnnotator) for n in group)


def plan_stages(cfg, groups: list[list[str]], cluster_memory: float) -> dict[str, StagePlan]:
    """Batch size and memory of every stage of a job: annotator groups (keyed by their first name),
    "decode", "encode" and "write"; `cluster_memory` is Ray's `memory` resource (bytes) of the cluster."""
    short = cfg.target_short_side
    plans = {}
    for group in groups:
        batch_size = cfg.resources_for(group[0]).batch_size
        plans[group[0]] = annotate_stage(group, batch_size, short, is_weights_free(group))
    for stage in ("decode", "encode", "write"):
        plans[stage] = light_stage(stage, short)
    memory = scale_to_cluster({k: p.memory for k, p in plans.items()}, cluster_memory)
    return {k: StagePlan(p.batch_size, memory[k]) for k, p in plans.items()}
