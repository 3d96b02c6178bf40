"""RGB-X, Joint-1.6M's albedo annotator.

RGB-X (Zeng et al., "RGB<->X: Image decomposition and synthesis using material- and
lighting-aware diffusion models", SIGGRAPH 2024; zheng95z/rgb-to-x) is a Stable Diffusion 2
model whose UNet takes 8 channels (noisy target latent + image latent) and whose text
prompt selects the output channel. Facts from the authors' code (zheng95z/rgbx,
`rgb2x/pipeline_rgb2x.py`, `rgb2x/gradio_demo_rgb2x.py`, `rgb2x/load_image.py`):

- the photo is converted sRGB -> linear (x ** 2.2) first, then resized so that its long side is
  1000 (the other side truncated, both floored to a multiple of 8 when either is not;
  torchvision `Resize`, bilinear with antialias), scaled to [-1, 1] and encoded with the
  VAE posterior mean, times `scaling_factor`; latent order is [noisy, image];
- prompt "Albedo (diffuse basecolor)", padded to 77 tokens; no classifier-free guidance
  (guidance_scale 0);
- DDIM from the model's scheduler config with `rescale_betas_zero_snr=True` and
  `timestep_spacing="trailing"` (the demo's override; the model predicts v), 50 steps;
- the decoded albedo is denormalised to [0, 1], gamma-corrected (x ** (1 / 2.2)) and resized
  back to the photo's size with the same torchvision `Resize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from annotators import sd_common
from annotators.base import Annotator, AnnotatorConfig
from annotators.preprocess import UpstreamResize, torch_resize

RGBX_PROMPTS = {
    # rgb2x/gradio_demo_rgb2x.py `prompts`
    "albedo": "Albedo (diffuse basecolor)",
    "normal": "Camera-space Normal",
    "roughness": "Roughness",
    "metallic": "Metallicness",
    "irradiance": "Irradiance (diffuse lighting)",
}
SRGB_GAMMA = sd_common.SRGB_GAMMA  # as the authors linearise (load_image.py, VaeImageProcrssorAOV)


@dataclass(frozen=True)
class RGBXConfig(AnnotatorConfig):
    model_id: str | None = "zheng95z/rgb-to-x"
    revision: str | None = "main"  # no commit hash of the hub repo could be verified offline
    # The long side the demo processes at (gradio_demo_rgb2x.py `max_side = 1000`).
    resolution: int = 1000
    multiple_of: int = 8
    max_batch: int = 4
    num_inference_steps: int = 50  # the demo's default
    aov: str = "albedo"


class RGBXAlbedo(UpstreamResize, Annotator):
    """Albedo with RGB-X: a DDIM loop around diffusers' UNet/VAE/scheduler, batched and seeded.

    `forward` takes the *linear* image: `resize_in` linearises before resizing, as the demo does.
    """

    domain: ClassVar[str] = "albedo"
    out_channels: ClassVar[int] = 3

    def __init__(self, config: RGBXConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        sd_common.require_diffusers(self.name)
        from diffusers import DDIMScheduler

        if config.aov not in ("albedo", "irradiance"):
            # Only the gamma-corrected colour outputs fit this annotator's domain.
            raise ValueError(f"{self.name}: aov must be 'albedo' or 'irradiance', got {config.aov!r}")
        self.unet, self.vae = sd_common.load_unet_vae(self.name, config.model_id, config.revision, device)
        base = sd_common.load_component(DDIMScheduler, self.name, config.model_id, config.revision, "scheduler")
        self.scheduler = DDIMScheduler.from_config(
            base.config, rescale_betas_zero_snr=True, timestep_spacing="trailing"
        )
        self.prompt_embedding = sd_common.encode_prompt(
            self.name, config.model_id, config.revision, RGBX_PROMPTS[config.aov], pad=True, device=device
        )

    # ----- the demo's resizes (module docstring) -----------------------------------------------
    def uses_upstream_resize(self) -> bool:
        return True

    def upstream_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        h, w = hw
        side = self.config.resolution
        if h > w:
            h, w = side, int(side / (h / w))
        else:
            h, w = int(side * (h / w)), side
        if h % 8 or w % 8:
            h, w = h // 8 * 8, w // 8 * 8
        return max(8, h), max(8, w)

    def resize_in(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return torch_resize((image.astype(np.float32) / 255.0) ** SRGB_GAMMA, size)

    def resize_back(self, label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return np.clip(torch_resize(label, hw), 0.0, 1.0)

    def forward(self, x):
        import torch

        b = x.shape[0]
        linear = x.float()
        image_latent = sd_common.encode_image(self.vae, linear * 2.0 - 1.0)
        text = self.prompt_embedding.expand(b, -1, -1)
        self.scheduler.set_timesteps(self.config.num_inference_steps, device=x.device)
        latents = sd_common.seeded_noise(image_latent.shape, self.config.seed, self.device, torch.float32)
        latents = latents * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            model_in = self.scheduler.scale_model_input(latents, t)
            # Channel order of the authors' pipeline: [noisy target latent, image latent].
            model_in = torch.cat([model_in, image_latent.to(model_in.dtype)], dim=1)
            out = self.unet(model_in, t, encoder_hidden_states=text, return_dict=False)[0]
            latents = self.scheduler.step(out.float(), t, latents.float(), return_dict=False)[0]
        decoded = sd_common.decode_latent(self.vae, latents)
        return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0).pow(1.0 / SRGB_GAMMA)


RGBX_ALBEDO = RGBXConfig()
