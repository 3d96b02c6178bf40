"""The bundled sample corpus: real photographs that scikit-image ships (no network, nothing vendored).

Used by the demo, the end-to-end smoke run and the benchmarks, so they all label the same pictures.
Each has a short caption written by a person looking at it, saved by the demo as a sidecar file, so every
demo record has a caption (Jodi's training loader draws one caption per record).
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


CAPTIONS = {
    "astronaut": "A smiling astronaut in an orange flight suit beside her helmet, with an American flag "
    "and a model of the space shuttle behind her.",
    "coffee": "A cup of espresso on a red saucer with a silver spoon, on a wooden table.",
    "chelsea": "Close-up of a tabby cat's face with green eyes.",
    "rocket": "A rocket on its launch pad at dusk between tall lattice towers, lights glowing along the ground.",
    "hubble_deep_field": "A deep-space photograph: countless small galaxies scattered across black sky.",
    "immunohistochemistry": "A microscope image of a tissue section stained brown, with blue-stained cells between.",
    "retina": "A photograph of a human retina: an orange-red disc with blood vessels branching from the bright "
    "optic disc.",
    "motorcycle": "A red motorcycle parked in a garage in front of shelves of boxes.",
    "camera": "A black-and-white photo of a man in a dark coat filming with a camera on a tripod on a lawn.",
    "coins": "A black-and-white photo of rows of old coins on a dark background.",
    "moon": "A grey close-up of the cratered surface of the Moon.",
    "colorwheel": "A colour wheel: a disc of hues fading to white at its centre, on a black background.",
}


def load_photo(name: str) -> np.ndarray:
    """One sample photo as scikit-image returns it (HxWx3 or HxW uint8)."""
    from skimage import data

    # stereo_motorcycle() returns (left, right, disparity); the left view is the photo.
    return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
