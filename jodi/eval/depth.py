"""Depth metrics for affine-invariant predictions: AbsRel, delta1/2/3 and RMSE after least-squares alignment.

Protocol of Marigold (arXiv 2312.02145 §4.1) and Lotus (arXiv 2409.18124), which the Jodi paper follows for
its depth table (docs/jodi-paper-results.md#depth): the prediction is aligned to the ground truth with a least-squares
scale and shift over the valid pixels, then compared in depth space, and every metric is averaged per image.
Relative-depth models that predict disparity (Depth Anything, and so Joint-1.6M's labels) are aligned in
disparity space and then inverted; metric-depth ones in depth space. Both are options here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("depth", "disparity")


@dataclass(frozen=True)
class DepthEvalConfig:
    """`pred_kind`/`gt_kind`: what the arrays hold (larger = farther for depth, nearer for disparity).
    `align_space`: where the scale and shift are fitted. `align=False` compares raw values (metric models)."""

    pred_kind: str = "disparity"
    gt_kind: str = "disparity"
    align_space: str = "disparity"
    align: bool = True

    def __post_init__(self):
        for name in ("pred_kind", "gt_kind", "align_space"):
            if getattr(self, name) not in KINDS:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {', '.join(KINDS)}")


def _convert(x: np.ndarray, kind: str, to: str) -> np.ndarray:
    """depth <-> disparity is 1/x (up to the unknown scale that alignment absorbs); non-positive -> nan."""
    if kind == to:
        return x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, 1.0 / x, np.nan)


def fit_scale_shift(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising sum (s * pred + t - gt)^2 over 1-D arrays; a constant prediction gets s = 0."""
    a = np.stack([pred, np.ones_like(pred)], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, gt, rcond=None)
    return float(s), float(t)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                  cfg: DepthEvalConfig = DepthEvalConfig()) -> dict[str, float]:
    """One image: HxW float `pred` and `gt` (kinds from `cfg`), optional boolean valid mask.

    Valid pixels: finite, positive ground truth, inside `mask`. The aligned depth is clipped to the range of
    the ground-truth depth of the image when aligning (Marigold clips to the dataset's depth range, which is
    unknown for relative labels). Returns abs_rel, delta1, delta2, delta3 (fractions) and rmse (in ground-truth units
    of depth), or an empty dict when no pixel is valid.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    if valid.sum() < 2:
        return {}
    space = cfg.align_space if cfg.align else cfg.gt_kind
    p = _convert(pred[valid], cfg.pred_kind, space)
    g = _convert(gt[valid], cfg.gt_kind, space)
    ok = np.isfinite(p)  # a non-positive prediction cannot be inverted: left out of the fit, scored as is
    if cfg.align:
        s, t = fit_scale_shift(p[ok], g[ok]) if ok.sum() >= 2 else (0.0, float(g.mean()))
        p = s * p + t
    p = np.where(np.isfinite(p), p, 0.0)
    d_gt = _convert(g, space, "depth")
    d_pred = _convert(p, space, "depth")
    # An affine fit can overshoot to absurd or negative depths: clip to the image's ground-truth range
    # when aligning; raw (metric) predictions are only kept positive.
    d_pred = np.clip(d_pred, d_gt.min(), d_gt.max()) if cfg.align else np.maximum(d_pred, 1e-6)
    d_pred = np.where(np.isfinite(d_pred), d_pred, d_gt.max())  # non-positive disparity = as far as the scene
    ratio = np.maximum(d_pred / d_gt, d_gt / d_pred)
    return {
        "abs_rel": float(np.mean(np.abs(d_pred - d_gt) / d_gt)),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "rmse": float(np.sqrt(np.mean((d_pred - d_gt) ** 2))),
    }


def summarize_depth(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Per-image mean of each metric (images with no valid pixel are skipped), plus the image count."""
    rows = [r for r in per_image if r]
    if not rows:
        return {"images": 0}
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {**out, "images": len(rows)}
