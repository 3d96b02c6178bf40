"""Marigold (Ke et al., "Repurposing Diffusion-Based Image Generators for Monocular Depth Estimation",
CVPR 2024): normals (prs-eth/marigold-normals-v1-1) and intrinsics albedo
(prs-eth/marigold-iid-appearance-v1-1) through diffusers' `MarigoldNormalsPipeline` and
`MarigoldIntrinsicsPipeline`, called on whole batches of device tensors.

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

SRGB_GAMMA = 2.2  # sRGB <-> linear approximation for the lighting model's linear-space outputs


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


@dataclass(frozen=True)
class MarigoldAlbedoConfig(AnnotatorConfig):
    model_id: str | None = "prs-eth/marigold-iid-appearance-v1-1"
    revision: str | None = "main"  # no commit hash of the hub repo could be verified offline
    resolution: int = 576  # Marigold's 768 long-side default at 4:3
    multiple_of: int = 8
    max_batch: int = 8
    num_inference_steps: int = 4  # v1-1 few-step DDIM ("trailing"), as for the other v1-1 models
    ensemble_size: int = 1
    target: str = "albedo"


class MarigoldAlbedo(Annotator):
    """Albedo with Marigold intrinsics (diffusers MarigoldIntrinsicsPipeline), in sRGB [0, 1]."""

    domain: ClassVar[str] = "albedo"
    out_channels: ClassVar[int] = 3

    def __init__(self, config: MarigoldAlbedoConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        sd_common.require_diffusers(self.name)
        from diffusers import MarigoldIntrinsicsPipeline

        self.pipe = load_marigold(MarigoldIntrinsicsPipeline, self.name, config, device)
        props = self.pipe.target_properties or {}
        names = list(props.get("target_names", []))
        if config.target not in names:
            raise ValueError(f"{self.name}: model predicts {names}, not {config.target!r}")
        self.target_index = names.index(config.target)
        self.n_targets = len(names)
        # The appearance model predicts albedo in sRGB; the lighting model in linear space.
        space = props.get(config.target, {}).get("prediction_space", "srgb")
        self.linear = space == "linear"

    def forward(self, x):
        pred = run_marigold(self.pipe, x, self.config, self.device)  # [B*T,3,h,w] in [0, 1]
        albedo = pred.reshape(x.shape[0], self.n_targets, *pred.shape[1:])[:, self.target_index].float()
        return albedo.clamp(0.0, 1.0).pow(1.0 / SRGB_GAMMA) if self.linear else albedo.clamp(0.0, 1.0)


MARIGOLD_NORMALS = MarigoldNormalsConfig()
MARIGOLD_ALBEDO = MarigoldAlbedoConfig()
