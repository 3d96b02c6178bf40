"""Shared pieces of the Stable-Diffusion-based annotators (Lotus, RGB-X, Marigold): loading, prompts, noise.

Lotus-D and RGB-X ship as diffusers pipeline folders (`unet/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`, `model_index.json`) whose pipeline classes live outside
diffusers. We load the standard components with their library classes and write only
the sampling glue. The text prompt is fixed per annotator, so it is encoded once at
construction and the text encoder is dropped: no CLIP call in the hot path.
"""

from __future__ import annotations

from annotators.loading import load_pretrained

# The sRGB <-> linear approximation x ** 2.2 that RGB-X (rgb2x/load_image.py) and Marigold's lighting model use.
SRGB_GAMMA = 2.2


def require_diffusers(annotator: str):
    """Import diffusers + transformers or fail at construction with an install hint."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - both are core dependencies of this project
        raise ImportError(f"{annotator} needs diffusers and transformers: pip install diffusers transformers") from exc


def load_component(cls, annotator: str, model_id: str | None, revision: str | None, subfolder: str):
    """`cls.from_pretrained(model_id, subfolder=...)` with the one-line missing-weights error."""
    return load_pretrained(cls.from_pretrained, annotator, model_id, revision, subfolder=subfolder)


def load_unet_vae(annotator: str, model_id: str | None, revision: str | None, device: str):
    """The UNet and VAE of an SD-style folder, in eval mode on `device` (fp32 weights; the base class autocasts)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = load_component(UNet2DConditionModel, annotator, model_id, revision, "unet").to(device).eval()
    vae = load_component(AutoencoderKL, annotator, model_id, revision, "vae").to(device).eval()
    return unet, vae


def encode_prompt(annotator: str, model_id: str | None, revision: str | None, prompt: str, pad: bool, device: str):
    """CLIP text embedding [1, L, D] of `prompt`, computed once on `device`.

    `pad=False` tokenises without padding ("do_not_pad": Lotus and Marigold use the 2-token
    embedding of the empty prompt, BOS + EOS); `pad=True` pads to the tokenizer's max length
    (77), as the stock Stable Diffusion / RGB-X prompt encoder does.
    """
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = load_component(CLIPTokenizer, annotator, model_id, revision, "tokenizer")
    text_encoder = load_component(CLIPTextModel, annotator, model_id, revision, "text_encoder").to(device).eval()
    ids = tokenizer(
        prompt,
        padding="max_length" if pad else "do_not_pad",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    with torch.inference_mode():
        embedding = text_encoder(ids)[0].float()
    del text_encoder  # never needed again: the prompt is fixed
    return embedding.clone()


def vae_scale(vae) -> float:
    """Latent scaling factor of the VAE (0.18215 for SD 2)."""
    return float(vae.config.scaling_factor)


def encode_image(vae, rgb_pm1):
    """Image in [-1, 1] -> scaled latent, using the posterior mean (deterministic; Marigold and RGB-X do the same)."""
    return vae.encode(rgb_pm1).latent_dist.mode() * vae_scale(vae)


def decode_latent(vae, latent):
    """Scaled latent -> decoded image in [-1, 1] (clamped)."""
    return vae.decode(latent / vae_scale(vae), return_dict=False)[0].clamp(-1.0, 1.0)


def seeded_noise(shape, seed: int, device: str, dtype):
    """Gaussian noise [B, ...] where every sample comes from its own generator seeded with `seed`.

    Each image therefore gets the same starting noise whether it runs alone or in a
    batch, so batched labels equal per-image labels (and reruns are reproducible).
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    gens = per_image_generators(shape[0], seed, device)
    return randn_tensor(tuple(shape), generator=gens, device=torch.device(device), dtype=dtype)


def per_image_generators(n: int, seed: int, device: str):
    """One generator per image, each seeded with `seed` (diffusers pipelines accept the list)."""
    import torch

    return [torch.Generator(device=torch.device(device)).manual_seed(seed) for _ in range(n)]
