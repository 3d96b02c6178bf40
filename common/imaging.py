"""Resizing uint8 RGB images so the short side has a given length, with one kernel per purpose.

- `DATASET_KERNEL` (Lanczos): the pictures the label job stores (short side 1024, as Joint keeps them,
  docs/joint-format.md). A high-quality windowed-sinc filter for the one resize a stored image gets.
- `MODEL_INPUT_KERNEL` (bicubic): pictures handed to Jodi at evaluation, the kernel of Jodi's own
  training transform (docs/joint-format.md#loader-behaviour, "Transform": bicubic to cover the bucket), so
  an evaluated image is resampled the way the model saw its training images.

Both shrink with Pillow's `reducing_gap=3.0` (a box reduction first when the factor is large), which
Pillow documents as indistinguishable from direct resampling in most cases, and far cheaper on big scans.
"""

from __future__ import annotations

import numpy as np

DATASET_KERNEL = "lanczos"
MODEL_INPUT_KERNEL = "bicubic"
REDUCING_GAP = 3.0


def short_side_size(h: int, w: int, target: int) -> tuple[int, int]:
    """(width, height) with min == target, aspect kept (PIL's order)."""
    scale = target / min(h, w)
    if h <= w:
        return max(1, round(w * scale)), target
    return target, max(1, round(h * scale))


def pil_kernel(kernel: str):
    """A kernel name of this module -> Pillow's resampling filter."""
    from PIL import Image

    return {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}[kernel]


def resize_short_side(rgb: np.ndarray, target: int, kernel: str = DATASET_KERNEL) -> np.ndarray:
    """uint8 (H, W[, C]) -> the same with min(H, W) == target, aspect kept; unchanged when target <= 0 or
    already there."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if target <= 0 or min(h, w) == target:
        return np.ascontiguousarray(rgb)
    size = short_side_size(h, w, target)
    return np.asarray(Image.fromarray(rgb).resize(size, pil_kernel(kernel), reducing_gap=REDUCING_GAP))
