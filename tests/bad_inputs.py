"""Builders of good and deliberately bad image files, shared by the decode and label-job tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(size=(96, 128)) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    return (resize(data.astronaut(), size, anti_aliasing=True) * 255).astype(np.uint8)


def jpeg_bytes(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def png_header_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with a tiny IDAT: decoding it would need GBs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def exif_rotated_jpeg(a: np.ndarray) -> bytes:
    """Pixels stored landscape with EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


def write_corpus(folder: Path) -> dict[str, str | None]:
    """Write one file per case; returns {file name: expected error reason or None (must be labeled)}."""
    folder.mkdir(parents=True, exist_ok=True)
    a = photo()
    expected: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (folder / name).write_bytes(data)
        expected[name] = reason

    good = jpeg_bytes(a)
    put("good.jpg", good, None)
    put("truncated.jpg", good[: len(good) // 2], "truncated")
    put("zero.jpg", b"", "empty_file")
    put("text.jpg", b"this is a text file, not a JPEG\n" * 10, "not_an_image")
    put("bomb.png", png_header_bomb(), "decompression_bomb")
    buf = io.BytesIO()
    Image.fromarray(a).convert("CMYK").save(buf, format="JPEG", quality=92)
    put("cmyk.jpg", buf.getvalue(), None)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(buf, format="PNG")  # 16-bit greyscale
    put("grey16.png", buf.getvalue(), None)
    buf = io.BytesIO()
    rgba = np.dstack([a, np.full(a.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(buf, format="PNG")
    put("rgba.png", buf.getvalue(), None)
    buf = io.BytesIO()
    frames = [Image.fromarray(a), Image.fromarray(255 - a)]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buf.getvalue(), "animated")
    put("exif_rotated.jpg", exif_rotated_jpeg(a), None)
    put("small.jpg", jpeg_bytes(photo((20, 24))), "too_small")
    buf = io.BytesIO()
    Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, format="PNG")
    put("palette.png", buf.getvalue(), None)
    put("with space ünïcode 写真.png", _png(photo((80, 100))), None)
    return expected


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()
