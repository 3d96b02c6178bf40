"""Bytes <-> arrays for stored files. Pure: bytes in, arrays out, no file system."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from schemas.domains import FORMATS, canonical_domain

JPEG_QUALITY = 95  # Joint files are high-quality JPEGs; 95 keeps label edges crisp at ~1/3 the PNG size


def encode_file(domain: str, array: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """uint8 array (already in the stored encoding) -> file bytes in the domain's Joint format."""
    fmt = FORMATS[canonical_domain(domain)]
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"{domain}: stored arrays are uint8, got {a.dtype}")
    if fmt.image_mode == "L" and a.ndim == 3:
        a = a[..., 0]
    img = Image.fromarray(a, mode=None).convert(fmt.image_mode)
    buf = io.BytesIO()
    if fmt.codec == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        # 4:4:4 chroma keeps thin coloured skeleton/normal edges; Joint labels are saved the same way.
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def decode_file(data: bytes, mode: str | None = None) -> np.ndarray:
    """File bytes -> uint8 array (HxW for L, HxWx3 for RGB)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        return np.asarray(img)
