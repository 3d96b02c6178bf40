"""The bundled sample corpus: real photographs that scikit-image ships (no network, nothing vendored).

Used by the demo, the end-to-end smoke run and the benchmarks, so they all label the same pictures.
"""

from __future__ import annotations

import numpy as np

COLOUR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
)
# Grey and synthetic ones exercise the RGB conversion and the annotators' odd cases.
PHOTOS = (*COLOUR_PHOTOS, "camera", "coins", "moon", "colorwheel")


def load_photo(name: str) -> np.ndarray:
    """One sample photo as scikit-image returns it (HxWx3 or HxW uint8)."""
    from skimage import data

    # stereo_motorcycle() returns (left, right, disparity); the left view is the photo.
    return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
