"""Read and decode one input: bytes -> id (md5) -> RGB uint8 at the target size, or a reason it failed.

Pure functions over bytes plus one read through `schemas.storage.resolve`, so every rule is
testable on a hand-made file. Reasons are short classes (`empty_file`, `not_an_image`, ...)
that end up in the errors table.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

# The stored picture's resize, and its kernel (Lanczos), are shared with the rest of the repository.
from common.imaging import DATASET_KERNEL, REDUCING_GAP, pil_kernel, resize_short_side, short_side_size


class DecodeError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodeRules:
    min_short_side: int = 1024
    target_short_side: int = 1024
    max_pixels: int = 100_000_000
    allow_animated: bool = False


# A caption is a sentence or a paragraph (Jodi's text encoder reads 300 tokens); anything far larger is not one.
MAX_CAPTION_BYTES = 64 * 1024


def read_bytes(uri: str) -> bytes:
    from schemas.storage import resolve

    try:
        fs, path = resolve(uri)
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise DecodeError("missing_file", f"{uri} vanished after listing") from exc
    except OSError as exc:
        raise DecodeError("read_failed", f"{type(exc).__name__}: {exc}") from exc


def parse_caption(data: bytes, kind: str) -> str:
    """A caption file's text: `kind` "txt" (the whole file) or "json" (its `caption` field, as img2dataset
    writes it). Undecodable or oversized captions are a `bad_caption` error, never silently dropped."""
    if len(data) > MAX_CAPTION_BYTES:
        raise DecodeError("bad_caption", f"caption of {len(data)} bytes > {MAX_CAPTION_BYTES}")
    try:
        text = data.decode("utf-8")
        if kind == "json":
            value = json.loads(text)
            text = value.get("caption") if isinstance(value, dict) else None
            if text is None:
                return ""  # img2dataset writes a .json for every sample; a missing caption is allowed
            if not isinstance(text, str):
                raise ValueError(f"`caption` is {type(text).__name__}, not a string")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("bad_caption", f"{type(exc).__name__}: {exc}") from exc
    return text.strip()


def read_caption(uri: str) -> str:
    """The caption in a sidecar file (`photo.txt`, or `photo.json` with a `caption` field)."""
    return parse_caption(read_bytes(uri), "json" if uri.lower().endswith(".json") else "txt")


def content_id(data: bytes) -> str:
    """Joint names files by the md5 hex of the original file bytes."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def decode_image(data: bytes, rules: DecodeRules) -> np.ndarray:
    """Original file bytes -> uint8 HxWx3 RGB, EXIF-oriented, resized so the short side is the target."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image
    if not data:
        raise DecodeError("empty_file", "zero-byte file")
    with _job_pixel_limit_only(Image):
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise DecodeError("not_an_image", "no image format recognised the bytes") from exc
        # The header gives the size before any pixel is decoded: refuse bombs here, at no memory cost.
        w, h = img.size
        if w * h > rules.max_pixels:
            raise DecodeError("decompression_bomb", f"{w}x{h} = {w * h} pixels > max_pixels {rules.max_pixels}")
        if getattr(img, "n_frames", 1) > 1 and not rules.allow_animated:
            raise DecodeError(
                "animated", f"{img.format} with {img.n_frames} frames (set allow_animated to take frame 0)"
            )
        try:
            img.load()
        except OSError as exc:
            raise DecodeError("truncated", f"{type(exc).__name__}: {exc}") from exc
        img = ImageOps.exif_transpose(img)
    short = min(img.size)
    if short < rules.min_short_side:
        raise DecodeError("too_small", f"short side {short} < min_short_side {rules.min_short_side}")
    if img.mode in ("RGB", "L") and rules.target_short_side > 0:
        # Resampling commutes with L -> RGB channel copies, so shrink first: a 100-megapixel greyscale scan is
        # then never expanded to 300 MB of RGB. Other modes convert first (16-bit scaling, alpha compositing).
        size = short_side_size(*img.size[::-1], rules.target_short_side)
        img = img.resize(size, pil_kernel(DATASET_KERNEL), reducing_gap=REDUCING_GAP)
    return resize_short_side(to_rgb(img), rules.target_short_side)


@contextmanager
def _job_pixel_limit_only(Image):
    """Pillow's own bomb guard (MAX_IMAGE_PIXELS, 89,478,485 by default) would override the job's
    `max_pixels` in both directions; the header check above is the one limit, so Pillow's is off meanwhile.
    Decode workers run one decode at a time, so the process-wide setting is restored before anyone else reads it."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def to_rgb(img) -> np.ndarray:
    """Any PIL mode -> uint8 HxWx3. 16-bit is scaled (not clipped), alpha is composited on white, CMYK converted."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        # 16-bit PNGs hold 0..65535; "I" from other sources may hold anything: scale by the format's range.
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a8 = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=-1)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanmin(a), np.nanmax(a)
        a8 = np.zeros(a.shape, np.uint8) if hi <= lo else np.rint((a - lo) / (hi - lo) * 255).astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))
