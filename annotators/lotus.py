"""Lotus-D (He et al., "Lotus: Diffusion-based Visual Foundation Model for High-quality Dense Prediction",
arXiv 2409.18124): Joint-1.6M's normal annotator, and a depth annotator (Jodi, arXiv 2505.19084, §3).

Lotus-D is Stable Diffusion 2 turned into a single-step deterministic predictor. Facts
taken from the authors' code (EnVision-Research/Lotus, `pipeline.py` LotusDPipeline,
`infer.py`, `train_lotus_d.py`) and written here on diffusers' own model classes:

- input RGB in [-1, 1], encoded by the SD VAE and scaled by `vae.config.scaling_factor`;
  the UNet input is that image latent alone (4 channels; no noise, "regression" mode);
- one UNet call at the fixed timestep t = 999 (paper §3.2, "single-step");
- cross-attention on the CLIP embedding of the empty prompt, tokenised without padding
  (2 tokens: BOS, EOS);
- the "task switcher" (paper §3.3, Detail Preserver) is the UNet's class embedding
  (`class_embed_type="projection"`, input dim 4) fed with [sin(s), cos(s)] of s = (1, 0)
  for the dense prediction (s = (0, 1) would reconstruct the RGB image);
- the output latent is decoded by the VAE to [-1, 1]: normals directly (x right, y up,
  z towards the viewer: the convention Joint stores); depth as the channel mean.

Resizes, as `LotusDPipeline` / `infer.py` (utils/image_utils.py `resize_max_res`): the long side
to 768 keeping aspect (bilinear with antialias), the prediction back to the input's size with
nearest-exact, and the normals stored as predicted (`pred * 255` on the (n+1)/2 map), without
renormalising to unit length: Joint's own normals are not unit length either (mean norm ~0.98).
One deliberate difference: the working size is rounded down to a multiple of 8 (the VAE's
stride), where upstream truncates to any integer and lets the VAE pad.

The authors encode the image with `latent_dist.sample()`; we use the posterior mean
(the VAE's posterior std is tiny) so labels are deterministic without a generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from annotators import sd_common
from annotators.base import Annotator, AnnotatorConfig
from annotators.preprocess import UpstreamResize, long_side_size, torch_resize

# The task switcher value for "predict the annotation" (Lotus train_lotus_d.py / infer.py).
_TASK_PREDICT = (1.0, 0.0)


@dataclass(frozen=True)
class LotusConfig(AnnotatorConfig):
    model_id: str | None = "jingheya/lotus-normal-d-v1-1"
    revision: str | None = "main"  # no commit hash of the hub repo could be verified offline
    # The long side the image is processed at (infer.py `--processing_res` default 768, LotusDPipeline
    # `default_processing_resolution`); Lotus was trained on Hypersim at 576 x 768.
    resolution: int = 768
    multiple_of: int = 8  # the VAE's downsampling
    max_batch: int = 8
    timestep: int = 999  # Lotus-D's single step (infer.py `--timestep` default)
    # Depth checkpoints: True when the model predicts disparity (the `-disparity` models,
    # near = large); False for the v1 depth models (far = large), which are inverted.
    disparity: bool = True


def task_embedding(switch: tuple[float, float] = _TASK_PREDICT) -> list[float]:
    """Lotus' task switcher [sin(a), sin(b), cos(a), cos(b)] for switch (a, b)."""
    return [math.sin(v) for v in switch] + [math.cos(v) for v in switch]


class _LotusD(UpstreamResize, Annotator):
    """Shared Lotus-D model call; subclasses choose the domain and read out the decoded image."""

    def __init__(self, config: LotusConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import torch

        sd_common.require_diffusers(self.name)
        self.unet, self.vae = sd_common.load_unet_vae(self.name, config.model_id, config.revision, device)
        self.prompt_embedding = sd_common.encode_prompt(
            self.name, config.model_id, config.revision, "", pad=False, device=device
        )
        self.task_emb = torch.tensor([task_embedding()], device=device)

    # ----- Lotus' own resizes (module docstring) -------------------------------------------------
    def uses_upstream_resize(self) -> bool:
        return True

    def upstream_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        return long_side_size(hw, self.config.resolution, self.config.multiple_of)

    def resize_in(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return torch_resize(image.astype(np.float32) / 255.0, size)

    def resize_back(self, label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        squeeze = label.ndim == 2
        out = torch_resize(label[..., None] if squeeze else label, hw, mode="nearest-exact")
        return out[..., 0] if squeeze else out

    def predict(self, x):
        """x: float Bx3xhxw in [0, 1] -> decoded prediction Bx3xhxw in [-1, 1]."""
        import torch

        b = x.shape[0]
        latent = sd_common.encode_image(self.vae, x * 2.0 - 1.0)
        t = torch.full((b,), self.config.timestep, device=x.device, dtype=torch.long)
        pred = self.unet(
            latent,
            t,
            encoder_hidden_states=self.prompt_embedding.expand(b, -1, -1),
            class_labels=self.task_emb.expand(b, -1),
            return_dict=False,
        )[0]
        return sd_common.decode_latent(self.vae, pred)


class LotusNormal(_LotusD):
    """Surface normals with Lotus-D (Joint-1.6M's normal annotator)."""

    domain: ClassVar[str] = "normal"
    out_channels: ClassVar[int] = 3

    def forward(self, x):
        # The decoded image in [-1, 1] is the normal map, stored as predicted (not renormalised).
        return self.predict(x).float()


class LotusDepth(_LotusD):
    """Relative depth with Lotus-D, returned as disparity in [0, 1] (near = large)."""

    domain: ClassVar[str] = "depth"
    out_channels: ClassVar[int] = 1

    def forward(self, x):
        # The decoded 3-channel image is the depth map repeated; Lotus averages the channels.
        d = (self.predict(x).float().mean(dim=1, keepdim=True) + 1.0) / 2.0
        return d if self.config.disparity else 1.0 - d


LOTUS_NORMAL = LotusConfig()
LOTUS_DEPTH = LotusConfig(model_id="jingheya/lotus-depth-d-v2-0-disparity", disparity=True)
