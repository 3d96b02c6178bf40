"""DINOv2 patch features of clean images, the REPA target (Yu et al., arXiv 2410.06940 §3).

Computed once by the latent cache job (opt-in `dino` column), never per training step. The image is resized
so DINOv2's patch grid equals the latent grid (latent side x DINOv2 patch 14: a 1024 px bucket -> 32 x 32
latents -> 448 x 448 px for DINOv2, REPA's 512 px setting), so feature n belongs to latent token n.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from common.hub import load_pretrained
from jodi.codecs import folder_hint

# DINOv2 ViT-B/14 (REPA's default target encoder, REPA §4). Revision "main": no commit pinned yet, like the
# other encoders in jodi/codecs.py.
DINO_ID = "facebook/dinov2-base"
DINO_REVISION = "main"
# ImageNet normalisation of DINOv2's image processor (facebook/dinov2-base `preprocessor_config.json`).
DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)


class DinoFeatures:
    """uint8 images -> DINOv2 last-layer patch tokens on a given grid, float32 (B, h*w, F)."""

    def __init__(self, model):
        self.model = model.eval().requires_grad_(False)
        self.patch = int(model.config.patch_size)
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path_or_id: str = DINO_ID, revision: str | None = DINO_REVISION) -> DinoFeatures:
        from transformers import Dinov2Model

        return cls(load_pretrained(Dinov2Model.from_pretrained, "dinov2", path_or_id, revision, folder_hint("--dino")))

    def to(self, device) -> DinoFeatures:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
        """images: uint8 (B, H, W, 3); grid: (h, w) tokens wanted -> float32 (B, h * w, F)."""
        device = next(self.model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
        size = (grid[0] * self.patch, grid[1] * self.patch)
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mean = torch.tensor(DINO_MEAN, device=device)[:, None, None]
        std = torch.tensor(DINO_STD, device=device)[:, None, None]
        out = self.model(pixel_values=(x - mean) / std).last_hidden_state  # (B, 1 + registers + h*w, F)
        return out[:, -grid[0] * grid[1]:].float().cpu()  # patch tokens only, row-major like the latents
