"""Random-weight checkpoints of the real architectures, for tests and benchmarks (no hub needed).

RANDOM_CHECKPOINTS maps a registry name to `fn(folder: Path, full_size: bool = False) -> dict`:
it writes a checkpoint of the annotator's real architecture into `folder` (tiny by
default; the real size with `full_size=True`, for timing) and returns the `build()`
overrides that load it through the annotator's real loading path (e.g. `{"model_id": str(folder)}`).

BASELINES maps a registry name to `fn(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]`:
the way users label today, one image per call (controlnet_aux detector / transformers
pipeline, fp32), over the same weights, for bench/label_throughput.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

RANDOM_CHECKPOINTS: dict[str, Callable[..., dict[str, Any]]] = {}
BASELINES: dict[str, Callable[..., Callable]] = {}

# Each annotator module registers its builders in its own section below.

# --- diffusion normal/albedo/depth (annotators/diffusion_random.py) ---
from annotators import diffusion_random as _diffusion  # noqa: E402

RANDOM_CHECKPOINTS.update(
    {
        "lotus_normal": _diffusion.lotus_checkpoint,
        "lotus_depth": _diffusion.lotus_checkpoint,
        "marigold_normals": _diffusion.marigold_normals_checkpoint,
        "rgbx_albedo": _diffusion.rgbx_checkpoint,
        "marigold_albedo": _diffusion.marigold_albedo_checkpoint,
    }
)
BASELINES.update(
    {
        "lotus_normal": _diffusion.lotus_normal_baseline,
        "lotus_depth": _diffusion.lotus_depth_baseline,
        "marigold_normals": _diffusion.marigold_normals_baseline,
        "rgbx_albedo": _diffusion.rgbx_albedo_baseline,
        "marigold_albedo": _diffusion.marigold_albedo_baseline,
    }
)
# --- end diffusion normal/albedo/depth ---

# --- edge and lineart (annotators/edge_lineart_random.py) ---
from annotators import edge_lineart_random as _edge_lineart  # noqa: E402

RANDOM_CHECKPOINTS.update(_edge_lineart.RANDOM)
BASELINES.update(_edge_lineart.BASELINE)
# --- end edge and lineart ---

# --- depth and segmentation (annotators/depth_seg_random.py) ---
from annotators import depth_seg_random as _depth_seg  # noqa: E402

RANDOM_CHECKPOINTS.update(_depth_seg.RANDOM)
BASELINES.update(_depth_seg.BASELINE)
# --- end depth and segmentation ---

# --- pose and normalbae (annotators/pose_random.py) ---
from annotators import pose_random as _pose  # noqa: E402

RANDOM_CHECKPOINTS.update(_pose.RANDOM)
BASELINES.update(_pose.BASELINE)
# --- end pose and normalbae ---

# --- captioners (annotators/caption_random.py) ---
from annotators import caption_random as _caption  # noqa: E402

RANDOM_CHECKPOINTS.update(_caption.RANDOM)
BASELINES.update(_caption.BASELINE)
# --- end captioners ---
