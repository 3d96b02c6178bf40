"""Monocular depth on transformers' depth-estimation heads: Depth Anything V2, ZoeDepth, MiDaS (DPT).

Joint-1.6M's depth maps are relative inverse depth, near = bright (README.md, "What the
job writes"), which is what Depth Anything V2 and MiDaS predict. ZoeDepth predicts metric depth in
metres; it is inverted here so that every preset returns "larger = nearer".

All three share one model call, `AutoModelForDepthEstimation(pixel_values).predicted_depth`;
they differ only in what their hub processor config does before it (normalisation,
fixed input size, ZoeDepth's reflect padding), which is preset data below. The base class
resizes to the working size; normalisation and padding run here on the device, batched.

Parity. Depth Anything V2's own `infer_image` (DepthAnything/Depth-Anything-V2,
depth_anything_v2/dpt.py + util/transform.py) resizes the float image with OpenCV INTER_CUBIC
so that the short side is at least 518 (each side rounded to a multiple of 14, rounded up when
rounding would go below 518) and brings the depth back with bilinear `align_corners=True`.
Batching resizes on the device (bilinear + antialias) instead; `parity=True` restores the
authors' resizes exactly (tests/test_parity.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import load_pretrained
from annotators.preprocess import HALF, IMAGENET_MEAN, IMAGENET_STD, Normalizer, UpstreamResize


@dataclass(frozen=True)
class DepthConfig(AnnotatorConfig):
    """A transformers depth-estimation checkpoint and the preprocessing of its hub processor config."""

    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    # The model takes exactly resolution x resolution (DPT-Hybrid's position embeddings are not interpolated).
    square: bool = False
    # ZoeDepth pads int(sqrt(side / 2) * 3) px by reflection against border artefacts (ZoeDepthImageProcessor);
    # here `side` is the working size (the processor uses the input size, before its resize).
    reflect_pad: bool = False
    # The model predicts metric depth (larger = farther): return its inverse so that near = large.
    metric: bool = False
    min_depth: float = 1e-3  # metres; clamps metric depth before inverting
    parity: bool = False  # True: Depth Anything V2's own resizes (see the module docstring)


class TransformersDepth(UpstreamResize, Annotator):
    """Relative inverse depth (float HxW, larger = nearer) from a transformers depth-estimation model."""

    domain = "depth"
    # Depth Anything V2 small, 8 photos at 518 px, 2 CPU threads: 10.5 s one image at a time, 9.3 s two at
    # once (docs/benchmarks.md); ZoeDepth and MiDaS are the same ViT + DPT family.
    cpu_image_parallel = True

    def __init__(self, config: DepthConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from transformers import AutoModelForDepthEstimation

        model = load_pretrained(
            AutoModelForDepthEstimation.from_pretrained, type(self).__name__, config.model_id, config.revision
        )
        self.model = model.eval().to(device)
        self.normalize = Normalizer(config.image_mean, config.image_std, device)

    # ----- Depth Anything V2's resizes, for parity=True -----------------------------------------
    def upstream_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """util/transform.py `Resize(keep_aspect_ratio=True, resize_method="lower_bound")`."""
        res, m = self.config.resolution, self.config.multiple_of
        scale = max(res / hw[0], res / hw[1])

        def constrain(x: float) -> int:
            y = int(np.round(x / m) * m)
            return y if y >= res else int(math.ceil(x / m) * m)

        return constrain(scale * hw[0]), constrain(scale * hw[1])

    def resize_in(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        import cv2

        return cv2.resize(image.astype(np.float32) / 255.0, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)

    def resize_back(self, label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        y = F.interpolate(torch.from_numpy(label)[None, None], size=hw, mode="bilinear", align_corners=True)
        return y[0, 0].numpy()

    def forward(self, x):
        import torch.nn.functional as F

        cfg = self.config
        if cfg.square:
            x = F.interpolate(x, size=(cfg.resolution, cfg.resolution), mode="bicubic", align_corners=False).clamp(0, 1)
        pad_h = pad_w = 0
        if cfg.reflect_pad:
            pad_h, pad_w = (int((side / 2) ** 0.5 * 3) for side in x.shape[-2:])
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
        pixel_values = self.normalize(x)
        depth = self.model(pixel_values=pixel_values).predicted_depth.unsqueeze(1).float()
        if pad_h or pad_w:
            # The prediction may be at another scale than the padded input: crop the same fraction.
            sy, sx = depth.shape[-2] / x.shape[-2], depth.shape[-1] / x.shape[-1]
            ch, cw = round(pad_h * sy), round(pad_w * sx)
            depth = depth[..., ch : depth.shape[-2] - ch, cw : depth.shape[-1] - cw]
        if cfg.metric:
            depth = 1.0 / depth.clamp_min(cfg.min_depth)
        return depth


class MetricDepth(TransformersDepth):
    """Metric depth in metres (float HxW, larger = farther): a domain beyond Joint's seven.

    Joint's depth is relative, min-max scaled per image, so a generator trained on it cannot say how
    far anything is. Metric depth is what robotics, AR and 3D-aware generation condition on (the
    field's metric models: ZoeDepth, Depth Pro, Depth Anything 3 metric, MoGe-2), and it costs one
    more forward of a depth model the registry already has. Stored on a fixed log scale
    (schemas.encoding.encode_log_depth) so a grey level means the same distance in every image.
    """

    domain = "metric_depth"


# ----- presets ------------------------------------------------------------------------------------
# Depth Anything V2 (model cards depth-anything/Depth-Anything-V2-*-hf): DINOv2 backbone with
# 14 px patches, processor short side 518 keeping aspect, ImageNet mean/std; relative disparity.
# Revisions are "main": no verified commit hash was available offline; pin one when mirroring.


def depth_anything_v2(size: str) -> DepthConfig:
    return DepthConfig(
        model_id=f"depth-anything/Depth-Anything-V2-{size}-hf",
        revision="main",
        resolution=518,
        multiple_of=14,
        max_batch=8,
    )


# Intel/zoedepth-nyu-kitti: BEiT-L/16 at 384 (processor 384x512 keeping aspect, multiple of 32),
# mean/std 0.5, reflect padding; metric depth in metres -> inverted.
ZOEDEPTH = DepthConfig(
    model_id="Intel/zoedepth-nyu-kitti",
    revision="main",
    resolution=384,
    multiple_of=32,
    max_batch=8,
    image_mean=HALF,
    image_std=HALF,
    reflect_pad=True,
    metric=True,
)

# The same model with its metres kept (not inverted), for the metric_depth domain.
ZOEDEPTH_METRIC = dataclasses.replace(ZOEDEPTH, metric=False)

# Intel/dpt-hybrid-midas = MiDaS v3 DPT-Hybrid (the ControlNet "depth_midas" model): a fixed
# 384x384 input (processor keep_aspect_ratio=False), mean/std 0.5; relative inverse depth.
MIDAS = DepthConfig(
    model_id="Intel/dpt-hybrid-midas",
    revision="main",
    resolution=384,
    multiple_of=32,
    max_batch=8,
    image_mean=HALF,
    image_std=HALF,
    square=True,
)
