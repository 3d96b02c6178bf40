"""Weights-free annotators on OpenCV: they run anywhere, offline, and make the demo work with no hub."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.base import AnnotatorConfig, NumpyAnnotator


@dataclass(frozen=True)
class CannyConfig(AnnotatorConfig):
    # controlnet_aux's CannyDetector defaults; thresholds are on the 0..255 gradient magnitude.
    low_threshold: int = 100
    high_threshold: int = 200
    blur_sigma: float = 0.0  # >0 smooths JPEG noise first
    resolution: int = 0  # native size: Canny is cheap and resizing would move edges


class CannyEdge(NumpyAnnotator):
    """Binary Canny edges (white on black), OpenCV."""

    domain = "edge"

    def __init__(self, config: CannyConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import cv2

        self._cv2 = cv2

    def label_one(self, image: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.config.blur_sigma > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), self.config.blur_sigma)
        edges = cv2.Canny(grey, self.config.low_threshold, self.config.high_threshold)
        return edges.astype(np.float32) / 255.0


@dataclass(frozen=True)
class LineartStandardConfig(AnnotatorConfig):
    # Difference-of-Gaussians line extraction, as ControlNet's "lineart_standard" preprocessor does.
    gaussian_sigma: float = 6.0
    intensity_threshold: float = 8.0
    resolution: int = 0


class LineartStandard(NumpyAnnotator):
    """Weights-free lineart: dark detail relative to a Gaussian-blurred copy, normalised by its median."""

    domain = "lineart"

    def __init__(self, config: LineartStandardConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import cv2

        self._cv2 = cv2

    def label_one(self, image: np.ndarray) -> np.ndarray:
        x = image.astype(np.float32)
        blurred = self._cv2.GaussianBlur(x, (0, 0), self.config.gaussian_sigma)
        # A pixel darker than its neighbourhood in every channel is ink.
        ink = np.clip((blurred - x).min(axis=2), 0.0, 255.0)
        strong = ink[ink > self.config.intensity_threshold]
        scale = max(16.0, float(np.median(strong))) if strong.size else 16.0
        # Map the typical line strength to mid-grey (0.5) and saturate stronger lines.
        return np.clip(ink / scale * 0.5, 0.0, 1.0).astype(np.float32)
