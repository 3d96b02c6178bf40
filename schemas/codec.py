"""Bytes <-> arrays for stored files. Pure: bytes in, arrays out, no file system."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from schemas.domains import FORMATS, canonical_domain


@dataclass(frozen=True)
class JpegProfile:
    """How JPEG files are written: libjpeg quality (its standard tables scaled) and chroma subsampling."""

    name: str
    quality: int
    subsampling: int  # Pillow's code: 0 = 4:4:4 (full chroma), 2 = 4:2:0 (chroma at half size both ways)


JPEG_PROFILES = {
    # Joint-1.6M's own files (image and every JPEG label) are libjpeg quality-75 tables with 4:2:0
    # chroma: the official samples' quantisation tables start [8, 6, 5, 8] (the standard luminance
    # table [16, 11, 10, 16] at q75) with 2x2 chroma sampling (docs/annotators-parity.md, "JPEG profiles").
    "joint": JpegProfile("joint", 75, 2),
    # The default: q95 with full-resolution chroma. Labels are training targets; 4:2:0 halves the
    # chroma of thin coloured skeleton lines and normal-map boundaries, and q75 adds visible ringing.
    "high": JpegProfile("high", 95, 0),
}
DEFAULT_JPEG_PROFILE = "high"
JPEG_QUALITY = JPEG_PROFILES[DEFAULT_JPEG_PROFILE].quality


def jpeg_profile(quality: int | str) -> JpegProfile:
    """A profile by name, or an explicit quality with full-resolution chroma (4:4:4)."""
    if isinstance(quality, str):
        try:
            return JPEG_PROFILES[quality]
        except KeyError:
            raise ValueError(f"unknown JPEG profile {quality!r}; profiles: {', '.join(JPEG_PROFILES)}") from None
    return JpegProfile(f"q{quality}", int(quality), 0)


def encode_file(domain: str, array: np.ndarray, quality: int | str = DEFAULT_JPEG_PROFILE) -> bytes:
    """uint8 array (already in the stored encoding) -> file bytes in the domain's Joint format.

    `quality` is a profile name ("joint": Joint-1.6M's own q75 4:2:0; "high": q95 4:4:4) or a
    JPEG quality written with full-resolution chroma; segmentation is lossless PNG either way.
    """
    profile = jpeg_profile(quality)
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
        img.save(buf, format="JPEG", quality=profile.quality, subsampling=profile.subsampling)
    return buf.getvalue()


def decode_file(data: bytes, mode: str | None = None) -> np.ndarray:
    """File bytes -> uint8 array (HxW for L, HxWx3 for RGB)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        return np.asarray(img)
