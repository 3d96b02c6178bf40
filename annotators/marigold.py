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

SRGB_GAMMA = sd_common.SRGB_GAMMA  # sRGB <-> linear for the lighting model's linear-space outputs


@dataclass(frozen=True)
class MarigoldConfig(AnnotatorConfig):
    """What both Marigold v1-1 models share."""

    revision: str | None = "main"  # no commit hash of the hub repos could be verified offline
    # Marigold's default processing resolution is 768 on the long side: 576 short side at 4:3.
    resolution: int = 576
    multiple_of: int = 8
    max_batch: int = 8
    # v1-1 models are trained for few-step DDIM with "trailing" timesteps; 4 steps and one
    # ensemble member are the model cards' fast setting.
    num_inference_steps: int = 4
    ensemble_size: int = 1


@dataclass(frozen=True)
class MarigoldNormalsConfig(MarigoldConfig):
    model_id: str | None = "prs-eth/marigold-normals-v1-1"


@dataclass(frozen=True)
class MarigoldAlbedoConfig(MarigoldConfig):
    model_id: str | None = "prs-eth/marigold-iid-appearance-v1-1"
    target: str = "albedo"


class MarigoldAnnotator(Annotator):
    """A diffusers Marigold pipeline (`pipeline_class`) called on whole batches; `forward` gives its
    `prediction` tensor at the working size."""

    pipeline_class: ClassVar[str]

    def __init__(self, config: MarigoldConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        sd_common.require_diffusers(self.name)
        import diffusers

        cls = getattr(diffusers, self.pipeline_class)
        self.pipe = load_pretrained(cls.from_pretrained, self.name, config.model_id, config.revision).to(device)
        self.pipe.set_progress_bar_config(disable=True)

    def forward(self, x):
        """One batched pipeline call on x: Bx3xhxw in [0, 1]."""
        cfg, b = self.config, x.shape[0]
        out = self.pipe(
            x.contiguous(),
            num_inference_steps=cfg.num_inference_steps,
            ensemble_size=cfg.ensemble_size,
            processing_resolution=0,  # x is already at the working size
            match_input_resolution=False,  # and so the output is already at the working size
            batch_size=b * cfg.ensemble_size,
            generator=sd_common.per_image_generators(b * cfg.ensemble_size, cfg.seed, self.device),
            output_type="pt",
        )
        return out.prediction


class MarigoldNormals(MarigoldAnnotator):
    """Surface normals with Marigold (diffusers MarigoldNormalsPipeline)."""

    domain: ClassVar[str] = "normal"
    out_channels: ClassVar[int] = 3
    pipeline_class = "MarigoldNormalsPipeline"

    def postprocess(self, label: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(label, axis=-1, keepdims=True)
        return (label / np.maximum(norm, 1e-6)).astype(np.float32)


class MarigoldAlbedo(MarigoldAnnotator):
    """Albedo with Marigold intrinsics (diffusers MarigoldIntrinsicsPipeline), in sRGB [0, 1]."""

    domain: ClassVar[str] = "albedo"
    out_channels: ClassVar[int] = 3
    pipeline_class = "MarigoldIntrinsicsPipeline"

    def __init__(self, config: MarigoldAlbedoConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
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
        pred = super().forward(x)  # [B*T,3,h,w] in [0, 1]
        albedo = pred.reshape(x.shape[0], self.n_targets, *pred.shape[1:])[:, self.target_index].float()
        return albedo.clamp(0.0, 1.0).pow(1.0 / SRGB_GAMMA) if self.linear else albedo.clamp(0.0, 1.0)


MARIGOLD_NORMALS = MarigoldNormalsConfig()
MARIGOLD_ALBEDO = MarigoldAlbedoConfig()
