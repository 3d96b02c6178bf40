"""Qwen3-VL-Instruct captioner (Qwen team 2025; transformers `Qwen3VLForConditionalGeneration`).

Same chat prompt and batched greedy generation as the Qwen2-VL captioner (annotators/caption.py),
under its own caption key so its captions sit next to Joint's BLIP-2 and Qwen2-VL ones. What
differs is the vision side: Qwen3-VL's ViT uses 16 px patches merged 2x2, so one visual token
covers 32 x 32 px (Qwen/Qwen3-VL-*-Instruct preprocessor_config.json: patch_size 16,
merge_size 2), against Qwen2-VL's 28 x 28; the pixel budget below keeps the Qwen2-VL preset's
256-1024 visual tokens per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotators.base import Annotator, AnnotatorConfig
from annotators.caption import DETAILED_PROMPT, DETAILED_PROMPT_VERSION, QwenVLCaptioner, QwenVLConfig

TOKEN_PX = 32  # 16 px patch x merge size 2 (Qwen3-VL preprocessor_config.json)


@dataclass(frozen=True)
class Qwen3VLCaptionConfig(QwenVLConfig):
    # Pixel budget per image: 256-1024 visual tokens of 32 x 32 px.
    min_pixels: int = 256 * TOKEN_PX * TOKEN_PX
    max_pixels: int = 1024 * TOKEN_PX * TOKEN_PX


class Qwen3VLCaptioner(QwenVLCaptioner):
    """Qwen3-VL-Instruct: the Qwen2-VL chat prompt and pixel-budget processor call, its own model class."""

    model_class = "Qwen3VLForConditionalGeneration"


def _preset(size: str, max_batch: int) -> tuple[type[Annotator], AnnotatorConfig]:
    return (Qwen3VLCaptioner, Qwen3VLCaptionConfig(
        model_id=f"Qwen/Qwen3-VL-{size}-Instruct", revision="main", caption_key=f"Qwen3-VL-{size}-Instruct",
        prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=max_batch))


# Qwen/Qwen3-VL-{2B,8B}-Instruct (model cards: licence apache-2.0). Revisions "main", as the other
# captioners: no commit hash could be looked up offline; pin one for a reproducible run.
PRESETS: dict[str, tuple[type[Annotator], AnnotatorConfig]] = {
    "qwen3_vl_2b": _preset("2B", 16),
    "qwen3_vl_8b": _preset("8B", 8),
}
