"""Segmentation metrics over Jodi's 12 classes: per-class IoU and mIoU from a dataset-level confusion matrix.

The paper's segmentation table (docs/jodi-paper-results.md#segmentation) averages 11 classes: the mean
of the first 11 numbers of each row is the mIoU, so class 0 "others" is left out of the mean, as here.
IoU is computed once from the confusion matrix summed over the dataset (as mmsegmentation does), not
averaged per image; a class that appears neither in the ground truth nor in the predictions has no IoU
and is left out of the mean.
"""

from __future__ import annotations

import numpy as np

from schemas.palette import CLASS_NAMES

NUM_CLASSES = len(CLASS_NAMES)
IGNORED = (0,)  # "others"


def confusion(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """HxW class ids -> (12, 12) int64 counts, rows = ground truth, columns = prediction."""
    p, g = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    valid = (g >= 0) & (g < NUM_CLASSES) & (p >= 0) & (p < NUM_CLASSES)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    return np.bincount(g[valid] * NUM_CLASSES + p[valid], minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def summarize_seg(matrices: list[np.ndarray]) -> dict:
    """mIoU (%) over the classes other than "others", per-class IoU (%, None where undefined), pixel accuracy."""
    cm = np.sum(matrices, axis=0) if matrices else np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    scored = [c for c in range(NUM_CLASSES) if c not in IGNORED and union[c] > 0]
    total = cm.sum()
    return {
        "miou": float(100.0 * np.mean(iou[scored])) if scored else None,
        "pixel_acc": float(100.0 * tp.sum() / total) if total else None,
        "iou": {CLASS_NAMES[c]: (None if np.isnan(iou[c]) else float(100.0 * iou[c])) for c in range(NUM_CLASSES)},
        "classes_scored": len(scored),
    }
