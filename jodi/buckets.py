"""Jodi's 15 aspect-ratio buckets (docs/joint-format.md#loader-behaviour, Jodi `JodiDataset`).

Keys are height / width, values (H, W) at the 1024 px base. `nearest_bucket` picks the closest ratio, as the
loader does from `info.height / info.width`; other base resolutions scale every bucket and round to a
multiple of the autoencoder's downsampling factor (32 for DC-AE f32c32) so latents stay whole.
"""

from __future__ import annotations

import numpy as np

BASE_RESOLUTION = 1024

BUCKETS: dict[float, tuple[int, int]] = {
    0.25: (512, 2048),
    0.33: (576, 1728),
    0.4: (640, 1600),
    0.5: (704, 1408),
    0.67: (768, 1152),
    0.75: (864, 1152),
    0.82: (896, 1088),
    1.0: (1024, 1024),
    1.21: (1088, 896),
    1.33: (1152, 864),
    1.5: (1152, 768),
    2.0: (1408, 704),
    2.5: (1600, 640),
    3.0: (1728, 576),
    4.0: (2048, 512),
}


def nearest_ratio(height: int, width: int) -> float:
    """The bucket key closest to height / width (ties go to the smaller ratio)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    ratio = height / width
    return min(BUCKETS, key=lambda r: (abs(r - ratio), r))


def nearest_bucket(height: int, width: int, resolution: int = BASE_RESOLUTION, multiple: int = 32) -> tuple[int, int]:
    """(H, W) of the bucket nearest to height / width, scaled to `resolution` and rounded to `multiple`."""
    bh, bw = BUCKETS[nearest_ratio(height, width)]
    if resolution == BASE_RESOLUTION and bh % multiple == 0 and bw % multiple == 0:
        return bh, bw
    scale = resolution / BASE_RESOLUTION

    def snap(v: int) -> int:
        return max(multiple, int(round(v * scale / multiple)) * multiple)

    return snap(bh), snap(bw)


# ---------------------------------------------------------------- latent-cache buckets (keyed by ratio string)


def bucket_sizes(resolution: int) -> dict[str, tuple[int, int]]:
    """The reference's 15 buckets scaled to `resolution` (1024 = as in the paper), in pixels,
    each side a multiple of 32 (the DC-AE downsampling factor) and at least 32."""
    out = {}
    for ratio, (h, w) in BUCKETS.items():
        scale = resolution / 1024
        out[str(float(ratio))] = tuple(max(32, int(round(s * scale / 32)) * 32) for s in (h, w))
    return out


def nearest_bucket_key(height: int, width: int) -> str:
    """The bucket whose ratio h/w is closest, chosen from the stored size without opening the image."""
    ratio = height / width
    return str(float(min(BUCKETS, key=lambda r: abs(float(r) - ratio))))


def fit_to_bucket(img, size: tuple[int, int]) -> np.ndarray:
    """PIL image -> uint8 (H, W, 3): bicubic resize to cover the bucket, then centre crop, as the
    reference loader does for every domain (segmentation included)."""
    from PIL import Image

    bh, bw = size
    img = img.convert("RGB")
    scale = max(bh / img.height, bw / img.width)
    new = (max(bw, round(img.width * scale)), max(bh, round(img.height * scale)))
    img = img.resize(new, Image.BICUBIC)
    left, top = (img.width - bw) // 2, (img.height - bh) // 2
    return np.asarray(img.crop((left, top, left + bw, top + bh)))
