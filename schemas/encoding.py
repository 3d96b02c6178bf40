"""Pure label encodings: model outputs (float arrays) <-> the uint8 arrays Joint-1.6M stores.

Every function is pure numpy: no I/O, no global state. Conventions are those
observed on the official Joint samples (README.md, "What the job writes"):

| domain       | model output (input here)            | stored array                        |
|--------------|--------------------------------------|-------------------------------------|
| depth        | float HxW, larger = nearer           | uint8 HxW (mode L), min-max 0..255  |
| normal       | float HxWx3 unit vectors in [-1, 1]  | uint8 HxWx3, (n + 1) / 2 * 255      |
| edge         | float HxW in [0, 1], 1 = edge        | uint8 HxWx3 grey, white on black    |
| lineart      | float HxW in [0, 1], 1 = ink         | uint8 HxWx3 grey, black on white    |
| albedo       | float HxWx3 in [0, 1]                | uint8 HxWx3                         |
| seg_12colors | int HxW class ids 0..11              | uint8 HxWx3 palette colours         |
| openpose     | uint8 HxWx3 rendered skeleton        | unchanged                           |

Domains beyond Joint (`schemas.domains.EXTRA_FORMATS`) name one of `EXTRA_ENCODERS`:

| encoding  | raw label                              | stored array                             |
|-----------|----------------------------------------|------------------------------------------|
| grey      | float HxW in [0, 1]                    | uint8 HxW (mode L)                       |
| rgb       | float HxWx3 in [0, 1]                  | uint8 HxWx3                              |
| log_depth | float HxW metric depth in metres       | uint8 HxW, log scale 0.1 m .. 100 m      |
"""

from __future__ import annotations

import numpy as np

from schemas.domains import EXTRA_FORMATS
from schemas.palette import PALETTE, ade150_lookup_table


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _grey3(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=-1)


def encode_depth(depth: np.ndarray, near_is_large: bool = True) -> np.ndarray:
    """float HxW depth or disparity -> uint8 HxW, per-image min-max, near = bright.

    Pass `near_is_large=False` for metric depth (larger = farther): it becomes inverse
    depth first, so the stored map is disparity-like with near bright, as in Joint
    (whose maps come from Depth Anything, a disparity model). Non-finite pixels and,
    for metric depth, non-positive ones become 0.
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {d.shape}")
    if not near_is_large:
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(d > 0, 1.0 / d, np.nan)
    finite = np.isfinite(d)
    if not finite.any():
        return np.zeros(d.shape, np.uint8)
    lo, hi = d[finite].min(), d[finite].max()
    scaled = (d - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(d)
    return _to_uint8(np.where(finite, scaled, 0.0))


def decode_depth(stored: np.ndarray) -> np.ndarray:
    """uint8 HxW (or HxWx3 grey) -> float32 HxW relative inverse depth in [0, 1] (near = 1)."""
    a = np.asarray(stored)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    return (a.astype(np.float32) / 255.0).astype(np.float32)


def encode_normal(normal: np.ndarray) -> np.ndarray:
    """float HxWx3 normals -> uint8 HxWx3 via (n + 1) / 2 * 255, after re-normalising to unit length."""
    n = np.asarray(normal, dtype=np.float64)
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"normal must be HxWx3, got shape {n.shape}")
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-8, n / np.maximum(norm, 1e-8), np.array([0.0, 0.0, 1.0]))
    return _to_uint8((n + 1.0) / 2.0 * 255.0)


def decode_normal(stored: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 HxWx3 unit normals (re-normalised after JPEG rounding)."""
    n = np.asarray(stored, dtype=np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return (n / np.maximum(norm, 1e-6)).astype(np.float32)


def encode_edge(edge: np.ndarray) -> np.ndarray:
    """float HxW soft edge probability in [0, 1] -> uint8 HxWx3, white edges on black."""
    e = np.asarray(edge, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"edge must be HxW, got shape {e.shape}")
    return _grey3(_to_uint8(np.clip(e, 0.0, 1.0) * 255.0))


def decode_edge(stored: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 (or HxW) -> float32 HxW edge strength in [0, 1]."""
    a = np.asarray(stored, dtype=np.float32)
    return (a.mean(axis=-1) if a.ndim == 3 else a) / 255.0


def encode_lineart(ink: np.ndarray) -> np.ndarray:
    """float HxW ink strength in [0, 1] (1 = line) -> uint8 HxWx3, black lines on white."""
    x = np.asarray(ink, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"lineart must be HxW, got shape {x.shape}")
    return _grey3(_to_uint8((1.0 - np.clip(x, 0.0, 1.0)) * 255.0))


def decode_lineart(stored: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 (or HxW) black-on-white -> float32 HxW ink strength in [0, 1]."""
    a = np.asarray(stored, dtype=np.float32)
    return 1.0 - (a.mean(axis=-1) if a.ndim == 3 else a) / 255.0


def encode_albedo(albedo: np.ndarray) -> np.ndarray:
    """float HxWx3 albedo in [0, 1] -> uint8 HxWx3."""
    a = np.asarray(albedo, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"albedo must be HxWx3, got shape {a.shape}")
    return _to_uint8(np.clip(a, 0.0, 1.0) * 255.0)


def decode_albedo(stored: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 HxWx3 in [0, 1]."""
    return np.asarray(stored, dtype=np.float32) / 255.0


def ade150_to_12(ade: np.ndarray, zero_based: bool = True) -> np.ndarray:
    """ADE20K-150 class ids -> Jodi 12-class ids (uint8).

    transformers' ADE20K heads predict 0-based ids (0 = wall); the CSV is 1-based.
    """
    ids = np.asarray(ade).astype(np.int64) + (1 if zero_based else 0)
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 150:
        raise ValueError("ADE20K ids out of range")
    return ade150_lookup_table()[ids]


def encode_seg(classes: np.ndarray) -> np.ndarray:
    """int HxW 12-class ids -> uint8 HxWx3 palette image (stored losslessly as PNG)."""
    c = np.asarray(classes)
    if c.ndim != 2:
        raise ValueError(f"segmentation must be HxW, got shape {c.shape}")
    if c.min(initial=0) < 0 or c.max(initial=0) >= len(PALETTE):
        raise ValueError("segmentation class ids must be in 0..11")
    return PALETTE[c.astype(np.int64)]


def decode_seg(stored: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> uint8 HxW class ids, by the nearest palette colour (exact for a clean PNG)."""
    rgb = np.asarray(stored, dtype=np.int32)
    dist = ((rgb[..., None, :] - PALETTE.astype(np.int32)) ** 2).sum(axis=-1)
    return dist.argmin(axis=-1).astype(np.uint8)


def palette_only(stored: np.ndarray) -> bool:
    """True when every pixel of an HxWx3 array is one of the 12 palette colours."""
    rgb = np.asarray(stored, dtype=np.uint8).reshape(-1, 3)
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    pal = (PALETTE[:, 0].astype(np.uint32) << 16) | (PALETTE[:, 1].astype(np.uint32) << 8) | PALETTE[:, 2]
    return bool(np.isin(packed, pal).all())


def encode_openpose(canvas: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 rendered skeleton on black -> unchanged (validated)."""
    a = np.asarray(canvas)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"openpose must be uint8 HxWx3, got {a.dtype} {a.shape}")
    return a


def encode_grey(x: np.ndarray) -> np.ndarray:
    """float HxW in [0, 1] -> uint8 HxW (a scalar map of a domain beyond Joint)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"a grey label must be HxW, got shape {a.shape}")
    return _to_uint8(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0)


def decode_grey(stored: np.ndarray) -> np.ndarray:
    """uint8 HxW (or HxWx3 grey) -> float32 HxW in [0, 1]."""
    a = np.asarray(stored, dtype=np.float32)
    return (a.mean(axis=-1) if a.ndim == 3 else a) / 255.0


def encode_rgb(x: np.ndarray) -> np.ndarray:
    """float HxWx3 in [0, 1] -> uint8 HxWx3 (a 3-channel map of a domain beyond Joint)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"an rgb label must be HxWx3, got shape {a.shape}")
    return _to_uint8(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0)


# Metric depth range of the log scale: 0.1 m (close-up) to 100 m (far outdoor), which covers the
# ranges metric depth models are trained on (ZoeDepth: NYU 0.001-10 m indoor, KITTI to 80 m; model
# card Intel/zoedepth-nyu-kitti). One uint8 step is a factor 1000 ** (1 / 255) = 1.0275, i.e. 2.7 %.
LOG_DEPTH_MIN, LOG_DEPTH_MAX = 0.1, 100.0


def encode_log_depth(depth: np.ndarray) -> np.ndarray:
    """float HxW metres -> uint8 HxW on a fixed log scale, near = bright (as Joint's depth), 0 = invalid
    or beyond 100 m. Fixed, not per-image: a value means the same distance in every image."""
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"metric depth must be HxW, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    d = np.clip(np.where(valid, d, LOG_DEPTH_MAX), LOG_DEPTH_MIN, LOG_DEPTH_MAX)
    far = np.log(d / LOG_DEPTH_MIN) / np.log(LOG_DEPTH_MAX / LOG_DEPTH_MIN)  # 0 at 0.1 m, 1 at 100 m
    return _to_uint8((1.0 - far) * 255.0)


def decode_log_depth(stored: np.ndarray) -> np.ndarray:
    """uint8 HxW (or HxWx3 grey) -> float32 HxW metres (100 m where 0 was stored)."""
    a = np.asarray(stored, dtype=np.float64)
    far = 1.0 - (a.mean(axis=-1) if a.ndim == 3 else a) / 255.0
    return (LOG_DEPTH_MIN * (LOG_DEPTH_MAX / LOG_DEPTH_MIN) ** far).astype(np.float32)


# Encodings a domain beyond Joint names in its DomainFormat, with each one's raw label rank and decoder.
EXTRA_ENCODERS = {"grey": encode_grey, "rgb": encode_rgb, "log_depth": encode_log_depth}
EXTRA_DECODERS = {"grey": decode_grey, "rgb": decode_albedo, "log_depth": decode_log_depth}
EXTRA_LABEL_NDIM = {"grey": 2, "rgb": 3, "log_depth": 2}


ENCODERS = {
    "depth": encode_depth,
    "normal": encode_normal,
    "edge": encode_edge,
    "lineart": encode_lineart,
    "albedo": encode_albedo,
    "seg_12colors": encode_seg,
    "openpose": encode_openpose,
}

DECODERS = {
    "depth": decode_depth,
    "normal": decode_normal,
    "edge": decode_edge,
    "lineart": decode_lineart,
    "albedo": decode_albedo,
    "seg_12colors": decode_seg,
}


def _extra_encoding(domain: str) -> str:
    try:
        return EXTRA_FORMATS[domain].encoding
    except KeyError:
        known = ", ".join((*ENCODERS, *EXTRA_FORMATS))
        raise ValueError(
            f"no encoder for domain {domain!r}; known: {known} (a new domain needs a row in "
            "schemas/domains.py EXTRA_FORMATS)"
        ) from None


def encode_label(domain: str, label: np.ndarray) -> np.ndarray:
    """Dispatch to the domain's encoder (Joint's own, or its DomainFormat's); returns the uint8 array to store."""
    if domain in ENCODERS:
        return ENCODERS[domain](label)
    return EXTRA_ENCODERS[_extra_encoding(domain)](label)


def decode_label(domain: str, stored: np.ndarray) -> np.ndarray:
    """The inverse of `encode_label` where one exists (not for openpose, a rendering)."""
    if domain in DECODERS:
        return DECODERS[domain](stored)
    return EXTRA_DECODERS[_extra_encoding(domain)](stored)


def label_ndim(domain: str) -> int:
    """Rank of a domain's raw label: 2 (HxW) or 3 (HxWx3)."""
    joint = {"depth": 2, "edge": 2, "lineart": 2, "seg_12colors": 2, "normal": 3, "albedo": 3, "openpose": 3}
    return joint[domain] if domain in joint else EXTRA_LABEL_NDIM[_extra_encoding(domain)]
