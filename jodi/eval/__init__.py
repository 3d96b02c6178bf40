"""Evaluation of Jodi perception and controllable generation, and of annotators against ground truth.

Metric families (one file each): `depth`, `normal`, `edge`, `seg`, `image` (PSNR/SSIM/LPIPS), `generation`
(FID, condition consistency); `metrics` routes a domain to its family; `runner` evaluates a model over a split.
Imports only `schemas` of ours, like the rest of `jodi`.
"""

from jodi.eval.metrics import FAMILY, MetricsConfig, headline, score, summarize

__all__ = ["FAMILY", "MetricsConfig", "headline", "score", "summarize"]
