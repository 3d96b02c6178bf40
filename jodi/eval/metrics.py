"""One entry point for every perception domain: decode the Joint encodings, score one image, summarise many.

Which metric family scores a domain follows the Jodi paper's evaluation (docs/jodi-paper-results.md#protocols): depth ->
AbsRel/delta, normal -> angular errors, edge -> BSDS ODS/OIS/AP, segmentation -> mIoU. Lineart is scored
like edges (ink strength as the soft map). Albedo, the image and the rendered openpose skeleton, which the
paper does not score, get picture similarity (PSNR, SSIM, LPIPS).

Domains beyond Joint (schemas.domains.EXTRA_FORMATS) are scored by their encoding: metric depth (log_depth)
as depth in metres without scale-and-shift alignment, as metric models are evaluated (ZoeDepth, arXiv
2302.12288 §4); any other grey or RGB map by picture similarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jodi.eval.depth import DepthEvalConfig, depth_metrics, summarize_depth
from jodi.eval.edge import EdgeEvalConfig, edge_counts, summarize_edge
from jodi.eval.image import Lpips, image_metrics, summarize_image
from jodi.eval.normal import normal_stats, summarize_normal
from jodi.eval.seg import confusion, summarize_seg
from schemas.domains import EXTRA_FORMATS
from schemas.encoding import decode_depth, decode_edge, decode_lineart, decode_normal, decode_seg
from schemas.encoding import decode_label as decode_extra

_EXTRA_FAMILY = {"log_depth": "depth", "grey": "image", "rgb": "image"}  # by DomainFormat.encoding
FAMILY = {
    "depth": "depth", "normal": "normal", "edge": "edge", "lineart": "edge", "seg_12colors": "seg",
    "albedo": "image", "image": "image", "openpose": "image",
    **{d: _EXTRA_FAMILY[f.encoding] for d, f in EXTRA_FORMATS.items()},
}
# Metric depth is compared raw, in metres: its decoded labels and its ground truth are both depth.
METRIC_DEPTH = DepthEvalConfig(pred_kind="depth", gt_kind="depth", align_space="depth", align=False)
# The columns of the summary table, per family (lower is better for abs_rel, rmse, mean, median, lpips).
HEADLINE = {
    "depth": ("abs_rel", "delta1", "rmse"),
    "normal": ("mean", "median", "within_11.25", "within_30"),
    "edge": ("ods", "ois", "ap"),
    "seg": ("miou", "pixel_acc"),
    "image": ("psnr", "ssim", "lpips"),
}


@dataclass(frozen=True)
class MetricsConfig:
    """`lpips_backbone`: "pretrained" (torchvision ImageNet weights), "random" (tests) or "none" (skip LPIPS)."""

    depth: DepthEvalConfig = field(default_factory=DepthEvalConfig)
    edge: EdgeEvalConfig = field(default_factory=EdgeEvalConfig)
    lpips_net: str = "alex"
    lpips_backbone: str = "pretrained"


def build_lpips(cfg: MetricsConfig, device: str = "cpu") -> Lpips | None:
    return None if cfg.lpips_backbone == "none" else Lpips(cfg.lpips_net, cfg.lpips_backbone, device)


def decode_label(domain: str, stored: np.ndarray) -> np.ndarray:
    """A uint8 picture in the Joint encoding -> what the metric compares (float maps, class ids, or uint8)."""
    decoders = {"depth": decode_depth, "normal": decode_normal, "edge": decode_edge, "lineart": decode_lineart,
                "seg_12colors": decode_seg}
    if domain in EXTRA_FORMATS and FAMILY[domain] == "depth":
        return decode_extra(domain, stored)  # metres
    return decoders[domain](stored) if domain in decoders else np.asarray(stored)


def resize_to(domain: str, array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 Joint picture to (H, W): nearest for class maps, bilinear otherwise."""
    from PIL import Image

    if array.shape[:2] == tuple(hw):
        return array
    resample = Image.NEAREST if domain == "seg_12colors" else Image.BILINEAR
    return np.asarray(Image.fromarray(array).resize((hw[1], hw[0]), resample))


def score(domain: str, pred: np.ndarray, ref: np.ndarray, cfg: MetricsConfig = MetricsConfig(),
          lpips: Lpips | None = None, ref_decoded: bool = False, mask: np.ndarray | None = None) -> Any:
    """One image's mergeable stats. `pred` is a uint8 Joint picture (resized to the reference's size);
    `ref` is one too, or, with `ref_decoded`, real ground truth already in metric form (e.g. metric depth)."""
    ref_hw = np.asarray(ref).shape[:2]
    p = decode_label(domain, resize_to(domain, np.asarray(pred), ref_hw))
    r = np.asarray(ref) if ref_decoded else decode_label(domain, ref)
    family = FAMILY[domain]
    if family == "depth":
        return depth_metrics(p, r, mask, METRIC_DEPTH if domain in EXTRA_FORMATS else cfg.depth)
    if family == "normal":
        return normal_stats(p, r, mask)
    if family == "edge":
        return edge_counts(p, r, cfg.edge)
    if family == "seg":
        return confusion(p, r, mask)
    return image_metrics(p, r, lpips)


def summarize(domain: str, stats: list[Any], cfg: MetricsConfig = MetricsConfig()) -> dict:
    """Merge one domain's per-image stats into its dataset-level metrics."""
    family = FAMILY[domain]
    if family == "depth":
        return summarize_depth(stats)
    if family == "normal":
        return summarize_normal(stats)
    if family == "edge":
        return summarize_edge(stats, cfg.edge)
    if family == "seg":
        return {**summarize_seg(stats), "images": len(stats)}
    return summarize_image(stats)


def headline(domain: str, summary: dict) -> dict[str, float | None]:
    """The few numbers of a domain that go in the summary table."""
    return {k: summary.get(k) for k in HEADLINE[FAMILY[domain]]}
