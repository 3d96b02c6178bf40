"""Marigold normals (Ke et al., "Repurposing Diffusion-Based Image Generators for Monocular Depth
Estimation", CVPR 2024; normals model prs-eth/marigold-normals-v1-1) through diffusers'
`MarigoldNormalsPipeline`, called on whole batches of device tensors.

The pipeline already batches the VAE and UNet; what the per-image loop loses is the
batching across images and the CPU round trips. We hand it the Bx3xhxw [0, 1] tensor the
base class prepared at the working size (`processing_resolution=0`: no second resize) and
one generator per image, so each image's starting noise does not depend on its batch.
Its normals are in the camera frame x right, y up, z towards the viewer
(`MarigoldImageProcessor.visualize_normals`), the frame Joint stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from annotators import sd_common
from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import load_pretrained


@dataclass(frozen=True)
class MarigoldNormalsConfig(AnnotatorConfig):
    model_id: str | None = "prs-eth/marigold-normals-v1-1"
    revision: str | None = "main"  # no commit hash of the hub repo could be verified offline
    # Marigold's default processing resolution is 768 on the long side: 576 short side at 4:3.
    resolution: int = 576
    multiple_of: int = 8
    max_batch: int = 8
    # v1-1 models are trained for few-step DDIM with "trailing" timesteps; 4 steps and one
    # ensemble member are the model cards' fast setting.
    num_inference_steps: int = 4
    ensemble_size: int = 1


def load_marigold(pipeline_cls, annotator: str, config: AnnotatorConfig, device: str):
    """A Marigold pipeline from the hub or a local folder, on `device`, progress bars off."""
    pipe = load_pretrained(pipeline_cls.from_pretrained, annotator, config.model_id, config.revision)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_marigold(pipe, x, config, device: str):
    """One batched pipeline call on x: Bx3xhxw in [0, 1]; returns the `prediction` tensor."""
    b = x.shape[0]
    out = pipe(
        x.contiguous(),
        num_inference_steps=config.num_inference_steps,
        ensemble_size=config.ensemble_size,
        processing_resolution=0,  # x is already at the working size
        match_input_resolution=False,  # and so the output is already at the working size
        batch_size=b * config.ensemble_size,
        generator=sd_common.per_image_generators(b * config.ensemble_size, config.seed, device),
        output_type="pt",
    )
    return out.prediction


class MarigoldNormals(Annotator):
    """Surface normals with Marigold (diffusers MarigoldNormalsPipeline)."""

    domain: ClassVar[str] = "normal"
    out_channels: ClassVar[int] = 3

    def __init__(self, config: MarigoldNormalsConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        sd_common.require_diffusers(self.name)
        from diffusers import MarigoldNormalsPipeline

        self.pipe = load_marigold(MarigoldNormalsPipeline, self.name, config, device)

    def forward(self, x):
        return run_marigold(self.pipe, x, self.config, self.device)  # [B,3,h,w], unit vectors

    def postprocess(self, label: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(label, axis=-1, keepdims=True)
        return (label / np.maximum(norm, 1e-6)).astype(np.float32)
