"""Jodi's 12-colour segmentation palette and the ADE20K-150 -> 12 mapping.

Palette: Jodi `model/postprocess/seg.py` `colors12` (paper Table 7). Mapping:
Jodi `model/postprocess/mapping.csv` (columns class150, classname, class8); every
ADE20K class not listed maps to 0 ("others"). A test checks this table against
a copy of Jodi's mapping.csv (docs/joint-format.md#ade20k-150-to-12-classes) when that file is present.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "others",
    "person",
    "animal",
    "plant",
    "water",
    "mountain",
    "sky",
    "building",
    "vehicle",
    "wall",
    "road",
    "furniture",
)

PALETTE = np.array(
    [
        (0, 0, 127),
        (255, 127, 255),
        (255, 127, 0),
        (127, 255, 0),
        (0, 127, 255),
        (0, 255, 127),
        (127, 255, 255),
        (255, 0, 127),
        (127, 0, 255),
        (255, 255, 127),
        (127, 0, 0),
        (0, 127, 0),
    ],
    dtype=np.uint8,
)

# ADE20K-150 class index (1-based, as in the CSV) -> 12-class index.
ADE150_TO_12: dict[int, int] = {
    13: 1,  # person
    127: 2,  # animal
    **{c: 3 for c in (5, 10, 18, 30, 67, 73)},  # tree grass plant field flower palm
    **{c: 4 for c in (22, 27, 57, 61, 105, 110, 114, 129)},  # water sea pool river ...
    **{c: 5 for c in (17, 35, 69)},  # mountain rock hill
    3: 6,  # sky
    **{c: 7 for c in (2, 26, 49, 52, 62, 80, 85, 89, 115, 141)},  # building house bridge tent pier ...
    **{c: 8 for c in (21, 77, 81, 84, 91, 103, 104, 117, 123, 128)},  # car boat bus truck airplane ...
    **{c: 9 for c in (1, 4, 6, 29)},  # wall floor ceiling rug
    **{c: 10 for c in (7, 12, 14, 47, 53, 55, 92, 95)},  # road sidewalk earth sand path ...
    **{c: 11 for c in (8, 16, 20, 24, 31, 32, 34, 46, 70, 76, 98, 111)},  # bed table chair sofa ...
}


def ade150_lookup_table() -> np.ndarray:
    """uint8 table of length 151: entry i is the 12-class index of 1-based ADE20K class i (0 = unlabeled)."""
    table = np.zeros(151, dtype=np.uint8)
    for ade, cls in ADE150_TO_12.items():
        table[ade] = cls
    return table
