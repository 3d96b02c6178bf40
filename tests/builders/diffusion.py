"""Random-weight checkpoints of the diffusion annotators' real architectures, and their per-image baselines.

Each builder writes the folder layout its loader reads (a diffusers pipeline folder:
`unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json`) and returns the
`build()` overrides that load it. `full_size=False` gives a tiny model of the same classes
(seconds on CPU, for tests); `full_size=True` the real Stable Diffusion 2 sizes (865M-param
UNet, ViT-H text encoder), for throughput timing only. The CLIP tokenizer is built offline
from a character-level BPE vocabulary; the real CLIP vocabulary is not needed to run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

# A small working size keeps the tiny models fast; the real presets keep their own.
TINY_RESOLUTION = 64


# ----- components ------------------------------------------------------------------------------
def _tokenizer():
    """A CLIPTokenizer with a character vocabulary (BOS/EOS as in CLIP), built with no download."""
    from transformers import CLIPTokenizer

    chars = "abcdefghijklmnopqrstuvwxyz0123456789()-.,"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_encoder(full_size: bool):
    """CLIP text transformer: SD 2's OpenCLIP ViT-H text tower (1024 wide, 23 layers) or a tiny one."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if full_size:
        cfg = CLIPTextConfig(
            vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
            num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        )  # fmt: skip
    else:
        cfg = CLIPTextConfig(
            vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
            bos_token_id=0, eos_token_id=1, pad_token_id=1,  # the tiny tokenizer's ids
        )  # fmt: skip
    return CLIPTextModel(cfg).eval()


def _vae(full_size: bool):
    """SD's AutoencoderKL (4 latent channels, 8x downsampling) at real or tiny width."""
    from diffusers import AutoencoderKL

    width = (128, 256, 512, 512) if full_size else (8, 16, 16, 16)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=width,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2 if full_size else 1, norm_num_groups=32 if full_size else 8,
        sample_size=768 if full_size else TINY_RESOLUTION, scaling_factor=0.18215,
    )  # fmt: skip


def _unet(full_size: bool, in_channels: int, out_channels: int = 4, **extra):
    """SD 2's UNet2DConditionModel (linear-projection transformers, 1024-d cross-attention) or a tiny one."""
    from diffusers import UNet2DConditionModel

    if full_size:
        return UNet2DConditionModel(
            sample_size=96, in_channels=in_channels, out_channels=out_channels,
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024, use_linear_projection=True,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **extra,
        )  # fmt: skip
    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=out_channels, block_out_channels=(32, 64),
        layers_per_block=1, attention_head_dim=(2, 4), cross_attention_dim=32, use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32, **extra,
    )  # fmt: skip


def _ddim(**kwargs):
    """SD 2's DDIM training schedule (scaled-linear betas 0.00085..0.012)."""
    from diffusers import DDIMScheduler

    base = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    return DDIMScheduler(**{**base, **kwargs})


def _save_sd_folder(folder: Path, pipeline_class: str, unet, full_size: bool, scheduler) -> None:
    """Write an SD-style pipeline folder for a pipeline class that lives outside diffusers."""
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    unet.save_pretrained(folder / "unet")
    _vae(full_size).save_pretrained(folder / "vae")
    _text_encoder(full_size).save_pretrained(folder / "text_encoder")
    _tokenizer().save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": pipeline_class,
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _overrides(folder: Path, full_size: bool, tiny_steps: int | None = None) -> dict:
    """build() overrides: the folder; tiny models also get a tiny working size and fewer denoising steps."""
    out: dict = {"model_id": str(folder)}
    if not full_size:
        out["resolution"] = TINY_RESOLUTION
        if tiny_steps is not None:
            out["num_inference_steps"] = tiny_steps
    return out


def _ensure(checkpoint: Callable, folder: Path, full_size: bool) -> dict:
    """Overrides for `folder`, writing the checkpoint first unless RANDOM_CHECKPOINTS already did."""
    folder = Path(folder)
    return checkpoint(folder, full_size, write=not (folder / "model_index.json").exists())


# ----- checkpoints: one per preset ---------------------------------------------------------------
def lotus_checkpoint(folder: Path, full_size: bool = False, write: bool = True) -> dict:
    """Lotus-D: SD 2 UNet with 4 input channels and the 4-d projection class embedding (the task switcher)."""
    if write:
        _seed()
        unet = _unet(full_size, in_channels=4, class_embed_type="projection", projection_class_embeddings_input_dim=4)
        _save_sd_folder(Path(folder), "LotusDPipeline", unet, full_size, _ddim(prediction_type="sample"))
    return _overrides(Path(folder), full_size)


def rgbx_checkpoint(folder: Path, full_size: bool = False, write: bool = True) -> dict:
    """RGB-X: SD 2 UNet with 8 input channels (noisy latent + image latent), v-prediction DDIM config."""
    if write:
        _seed()
        unet = _unet(full_size, in_channels=8)
        scheduler = _ddim(prediction_type="v_prediction")
        _save_sd_folder(Path(folder), "StableDiffusionAOVMatEstPipeline", unet, full_size, scheduler)
    return _overrides(Path(folder), full_size, tiny_steps=2)


def _marigold_parts(full_size: bool, out_channels: int) -> dict:
    """Marigold's components: the UNet sees the image latent (4) plus every target's latent (`out_channels`)."""
    _seed()
    return {
        "unet": _unet(full_size, in_channels=4 + out_channels, out_channels=out_channels),
        "vae": _vae(full_size),
        "scheduler": _ddim(prediction_type="v_prediction", timestep_spacing="trailing"),
        "text_encoder": _text_encoder(full_size),
        "tokenizer": _tokenizer(),
    }


def marigold_normals_checkpoint(folder: Path, full_size: bool = False, write: bool = True) -> dict:
    """A MarigoldNormalsPipeline folder (model_index.json + components) saved by diffusers itself."""
    from diffusers import MarigoldNormalsPipeline

    if write:
        pipe = MarigoldNormalsPipeline(
            **_marigold_parts(full_size, out_channels=4), prediction_type="normals", use_full_z_range=True,
            default_denoising_steps=4, default_processing_resolution=768,
        )  # fmt: skip
        pipe.save_pretrained(folder)
    return _overrides(Path(folder), full_size, tiny_steps=2)


# The appearance model's targets (albedo + a roughness/metallicity stack), as in its model_index.json.
IID_APPEARANCE_TARGETS = {
    "target_names": ["albedo", "material"],
    "albedo": {"prediction_space": "srgb"},
    "material": {"prediction_space": "stack", "sub_target_names": ["roughness", "metallicity", None]},
    "roughness": {"prediction_space": "linear"},
    "metallicity": {"prediction_space": "linear"},
}


def marigold_albedo_checkpoint(folder: Path, full_size: bool = False, write: bool = True) -> dict:
    """A MarigoldIntrinsicsPipeline folder predicting two targets (UNet 12 -> 8 channels: image + 2 x 4 latents)."""
    from diffusers import MarigoldIntrinsicsPipeline

    if write:
        pipe = MarigoldIntrinsicsPipeline(
            **_marigold_parts(full_size, out_channels=8), prediction_type="intrinsics",
            target_properties=IID_APPEARANCE_TARGETS, default_denoising_steps=4, default_processing_resolution=768,
        )  # fmt: skip
        pipe.save_pretrained(folder)
    return _overrides(Path(folder), full_size, tiny_steps=2)


# ----- baselines: how users run these models today, one image per call, fp32 ----------------------
def _working_long_side(image: np.ndarray, overrides: dict, preset: str) -> int:
    from annotators.base import working_size
    from annotators.registry import resolve

    _, config = resolve(preset)
    res = overrides.get("resolution", config.resolution)
    return max(working_size(image.shape[:2], res, 8))


def _marigold_baseline(pipeline_name: str, preset: str, checkpoint: Callable) -> Callable:
    def make(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
        import diffusers
        import torch

        overrides = _ensure(checkpoint, folder, full_size)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        pipe = getattr(diffusers, pipeline_name).from_pretrained(str(folder)).to(device)
        pipe.set_progress_bar_config(disable=True)
        steps = overrides.get("num_inference_steps", 4)

        def run(image: np.ndarray):
            # The diffusers example: a uint8 image in, the pipeline resizes (long side) and back.
            gen = torch.Generator(device=device).manual_seed(0)
            return pipe(
                image, num_inference_steps=steps, ensemble_size=1,
                processing_resolution=_working_long_side(image, overrides, preset), generator=gen, output_type="np",
            ).prediction  # fmt: skip

        return run

    return make


def _loop_baseline(preset: str, checkpoint: Callable) -> Callable:
    """Lotus and RGB-X have no pipeline in a library: the baseline is the authors' loop, one image per
    call in fp32, i.e. the same model through our annotator with batches of one."""

    def make(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
        import torch

        from annotators.registry import build

        overrides = _ensure(checkpoint, folder, full_size)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        annotator = build(preset, device=device, max_batch=1, dtype="float32", **overrides)
        return lambda image: annotator.annotate([image])[0]

    return make


lotus_normal_baseline = _loop_baseline("lotus_normal", lotus_checkpoint)
lotus_depth_baseline = _loop_baseline("lotus_depth", lotus_checkpoint)
rgbx_albedo_baseline = _loop_baseline("rgbx_albedo", rgbx_checkpoint)
marigold_normals_baseline = _marigold_baseline("MarigoldNormalsPipeline", "marigold_normals", marigold_normals_checkpoint)
marigold_albedo_baseline = _marigold_baseline("MarigoldIntrinsicsPipeline", "marigold_albedo", marigold_albedo_checkpoint)


RANDOM: dict[str, Callable[..., dict]] = {
    "lotus_normal": lotus_checkpoint,
    "lotus_depth": lotus_checkpoint,
    "marigold_normals": marigold_normals_checkpoint,
    "rgbx_albedo": rgbx_checkpoint,
    "marigold_albedo": marigold_albedo_checkpoint,
}
BASELINE: dict[str, Callable[..., Callable]] = {
    "lotus_normal": lotus_normal_baseline,
    "lotus_depth": lotus_depth_baseline,
    "marigold_normals": marigold_normals_baseline,
    "rgbx_albedo": rgbx_albedo_baseline,
    "marigold_albedo": marigold_albedo_baseline,
}
