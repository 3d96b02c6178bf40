"""Random-weight checkpoints of the real architectures and per-image baselines, for tests and bench/ only.

RANDOM_CHECKPOINTS maps a registry name to `fn(folder: Path, full_size: bool = False) -> dict`:
it writes a checkpoint of the annotator's real architecture into `folder` (tiny by
default; the real size with `full_size=True`, for timing) and returns the `build()`
overrides that load it through the annotator's real loading path (e.g. `{"model_id": str(folder)}`).

BASELINES maps a registry name to `fn(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]`:
the way users label today, one image per call (controlnet_aux detector / transformers
pipeline, fp32), over the same weights, for the parity tests and bench/label_throughput.py.

Nothing here ships with the product: `annotators/` never imports this package. Bench scripts
import it from the repository root (`from tests.builders import ...`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.builders import caption, depth_seg, diffusion, edge_lineart, new_models, pose

RANDOM_CHECKPOINTS: dict[str, Callable[..., dict[str, Any]]] = {
    **diffusion.RANDOM,
    **edge_lineart.RANDOM,
    **depth_seg.RANDOM,
    **pose.RANDOM,
    **caption.RANDOM,
    **new_models.RANDOM,
}
BASELINES: dict[str, Callable[..., Callable]] = {
    **diffusion.BASELINE,
    **edge_lineart.BASELINE,
    **depth_seg.BASELINE,
    **pose.BASELINE,
    **caption.BASELINE,
    **new_models.BASELINES,
}
