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
