"""Controllable-generation metrics (Jodi paper Table 2,
docs/jodi-paper-results.md#controllable-generation): FID of the generated images and condition
consistency, the LPIPS distance between the input condition and the same condition re-extracted
from the generated image with the annotator that made it.

FID is torchmetrics' `FrechetInceptionDistance`. Its default feature extractor is the FID Inception-v3 of
`torch-fidelity` (pip install torch-fidelity; the weights are downloaded on first use). Any `nn.Module`
returning (N, d) features can stand in through the library's own `feature=` argument (tests, smoke runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from jodi.eval.image import Lpips, MetricWeightsUnavailableError, to_batch


class Fid:
    """Accumulates real and generated pictures (any size: they are resized to `size`) and computes FID."""

    def __init__(self, feature: int | torch.nn.Module = 2048, size: int = 299):
        from torchmetrics.image.fid import FrechetInceptionDistance

        try:
            self.metric = FrechetInceptionDistance(feature=feature, normalize=True, reset_real_features=False)
        except (ModuleNotFoundError, OSError, RuntimeError) as exc:
            raise MetricWeightsUnavailableError(
                f"FID: the Inception-v3 feature extractor is unavailable ({type(exc).__name__}: {exc}); "
                "`pip install torch-fidelity` and run once where github.com is reachable"
            ) from exc
        self.size, self.custom = size, not isinstance(feature, int)
        self.count = {"real": 0, "fake": 0}

    def _prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        resized = [torch.nn.functional.interpolate(to_batch([a]), size=(self.size, self.size), mode="bilinear",
                                                   antialias=True, align_corners=False) for a in images]
        return torch.cat(resized).clamp(0, 1)

    def update(self, images: list[np.ndarray], real: bool) -> None:
        self.metric.update(self._prepare(images), real=real)
        self.count["real" if real else "fake"] += len(images)

    def compute(self) -> float | None:
        """FID, or None with fewer than 2 pictures on either side (the covariance is undefined)."""
        if min(self.count.values()) < 2:
            return None
        return float(self.metric.compute())


def condition_consistency(
    conditions: list[np.ndarray], generated: list[np.ndarray], extract: Callable[[np.ndarray], np.ndarray],
    lpips: Lpips,
) -> list[float]:
    """LPIPS between each input condition and `extract(generated image)` (resized to the condition's size)."""
    from PIL import Image

    out = []
    for cond, image in zip(conditions, generated):
        again = np.asarray(extract(image))
        if again.shape[:2] != cond.shape[:2]:
            again = np.asarray(Image.fromarray(again).resize((cond.shape[1], cond.shape[0]), Image.BILINEAR))
        out.append(lpips([_rgb(cond)], [_rgb(again)])[0])
    return out


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a
