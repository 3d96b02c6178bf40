"""Surface-normal metrics: mean and median angular error, and the share of pixels within 11.25/22.5/30 degrees.

The usual protocol (DSINE arXiv 2403.00712, Lotus, StableNormal; the Jodi paper's normal table in
docs/jodi-paper-results.md#normals): angles between unit vectors over valid pixels, pooled over the whole
dataset (not per image). Per-image stats are a histogram of errors in 0.01-degree bins, so they merge by
addition over any number of images and workers; the median is read from it to within 0.005 degree, the mean
and the shares are exact.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS_DEG = (11.25, 22.5, 30.0)
BINS_PER_DEG = 100
N_BINS = 180 * BINS_PER_DEG + 1


def angular_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """HxWx3 normals (any length) -> HxW angle between them in degrees; zero-length vectors give nan."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if p.shape != g.shape or p.shape[-1] != 3:
        raise ValueError(f"normals must both be HxWx3, got {p.shape} and {g.shape}")
    pn, gn = np.linalg.norm(p, axis=-1), np.linalg.norm(g, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (p * g).sum(-1) / (pn * gn)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def normal_stats(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One image -> mergeable stats: error histogram, error sum and the count under each threshold."""
    err = angular_error_deg(pred, gt)
    valid = np.isfinite(err) if mask is None else np.isfinite(err) & np.asarray(mask, bool)
    e = err[valid]
    return {
        "hist": np.bincount(np.rint(e * BINS_PER_DEG).astype(np.int64), minlength=N_BINS),
        "sum": np.array(e.sum()),
        "within": np.array([(e < t).sum() for t in THRESHOLDS_DEG]),
    }


def summarize_normal(stats: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Dataset-level mean, median (degrees) and % of pixels within each threshold."""
    if not stats:
        return {"pixels": 0}
    hist = np.sum([s["hist"] for s in stats], axis=0)
    n = int(hist.sum())
    if n == 0:
        return {"pixels": 0}
    within = np.sum([s["within"] for s in stats], axis=0)
    cum = np.cumsum(hist)
    kth = lambda k: int(np.searchsorted(cum, k)) / BINS_PER_DEG  # noqa: E731  (k-th smallest error, 1-based)
    median = (kth((n + 1) // 2) + kth(n // 2 + 1)) / 2  # as np.median: the middle pair's mean for even n
    out = {"mean": float(sum(float(s["sum"]) for s in stats) / n), "median": median}
    for t, c in zip(THRESHOLDS_DEG, within):
        out[f"within_{t:g}"] = 100.0 * float(c) / n
    return {**out, "pixels": n}
