"""Captioners: vision-language models that write `caption: {model_name: text}` (Jodi App. A, Joint-1.6M).

Joint-1.6M stores one caption per captioning model: BLIP2-OPT-2.7b gives a short
subject caption, Qwen2-VL-7b-Instruct a long paragraph (Jodi, arXiv
2505.19084, App. A); the trainer picks one per sample with configurable weights. Each
captioner here is an `Annotator` of domain `caption` whose config names the key it
writes (`caption_key`). The pipeline stores each returned string under
`record.captions[config.caption_key]`.

What every captioner shares lives in `Captioner`: the model and processor are
loaded once through `load_pretrained`; `annotate()` batches images through the
model's own processor (resize and normalise on the device, left padding), runs
greedy `generate()` (deterministic), keeps only the new tokens, and cleans the text
(`clean_caption`). An empty caption is an `AnnotationError("empty_caption")`, never
an empty string. A model family writes only how its prompt looks (`prompt_text`).

Prompts are part of the preset and versioned (`prompt_version`, stored in the
record's provenance), so captions made with different prompts can be told apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from annotators.base import AnnotationError, Annotator, AnnotatorConfig, check_image
from annotators.loading import load_pretrained


@dataclass(frozen=True)
class CaptionerConfig(AnnotatorConfig):
    """A captioning preset. `resolution=0`: images go to the model's processor at full size and
    it resizes them (on the device) to the size the model was trained at."""

    caption_key: str = ""
    prompt: str = ""
    prompt_version: str = "v1"
    max_new_tokens: int = 64
    num_beams: int = 1  # 1 = greedy, deterministic
    # Extra `generate()` keyword arguments as (name, value) pairs (a tuple keeps the config frozen and hashable).
    generate_kwargs: tuple[tuple[str, Any], ...] = ()
    # "transformers" runs in-process (this module); "vllm" = a Ray Data LLM stage (annotators/caption_vllm.py).
    backend: str = "transformers"
    resolution: int = 0
    multiple_of: int = 1
    max_batch: int = 16


# Leftover special tokens some tokenizers do not mark as special: ChatML `<|...|>`, DeepSeek `<｜...｜>`,
# BART/OPT `<s>`/`</s>`/`<pad>`, image placeholders and Florence-2 location tokens.
_SPECIAL_TOKENS = re.compile(r"<\|[^<>|]*\|>|<｜[^<>｜]*｜>|</?s>|<pad>|<unk>|<image>|<image_placeholder>|<loc_\d+>")
# Role labels a chat model may echo at the start of its answer.
_ROLE_ECHO = re.compile(r"^(?:assistant|<\|assistant\|>)\s*[:\n]\s*", re.IGNORECASE)


# Control characters and U+FFFD (what a byte-level tokenizer decodes half a UTF-8 character to, when
# generation stops inside one).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def clean_caption(text: str, prompt: str = "") -> str:
    """Caption text without special tokens, prompt echo or role label, whitespace collapsed to single spaces."""
    text = _UNPRINTABLE.sub("", _SPECIAL_TOKENS.sub(" ", text)).lstrip()
    # Before collapsing whitespace: a role label is one only when a newline or colon follows it.
    text = " ".join(_ROLE_ECHO.sub("", text).split())
    echo = " ".join(prompt.split())
    if echo and text.lower().startswith(echo.lower()):
        text = text[len(echo) :]
    return text.strip()


def caption_stats(texts: Sequence[str]) -> dict[str, float | int]:
    """Length statistics of a list of captions, for stats.json: count, empty count, and
    mean/median/p95/max of words and characters over the non-empty ones."""
    lengths = [(len(t.split()), len(t)) for t in texts if t and t.strip()]
    stats: dict[str, float | int] = {"count": len(texts), "empty": len(texts) - len(lengths)}
    for i, unit in enumerate(("words", "chars")):
        values = np.array([pair[i] for pair in lengths], dtype=np.float64)
        if values.size == 0:
            stats.update({f"mean_{unit}": 0.0, f"median_{unit}": 0.0, f"p95_{unit}": 0.0, f"max_{unit}": 0})
            continue
        stats[f"mean_{unit}"] = round(float(values.mean()), 2)
        stats[f"median_{unit}"] = round(float(np.median(values)), 2)
        stats[f"p95_{unit}"] = round(float(np.percentile(values, 95)), 2)
        stats[f"max_{unit}"] = int(values.max())
    return stats


class Captioner(Annotator):
    """Base of the transformers captioners: one batched `generate()` per chunk of images."""

    domain = "caption"
    # The transformers class of the model, by name (imported lazily so the registry stays light).
    model_class: ClassVar[str]

    def __init__(self, config: CaptionerConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        if config.backend != "transformers":
            raise ValueError(
                f"{self.name}: backend {config.backend!r} runs as a Ray Data stage, not in-process; "
                "build it with annotators.caption_vllm.build_caption_processor(name)"
            )
        import torch
        import transformers

        label = config.caption_key or self.name
        self.processor = load_pretrained(transformers.AutoProcessor.from_pretrained, label, config.model_id,
                                         config.revision)
        # Batched decoder-only generation needs the prompts right-aligned.
        self.processor.tokenizer.padding_side = "left"
        self.dtype = self.autocast_dtype() or torch.float32
        model = load_pretrained(getattr(transformers, self.model_class).from_pretrained, label, config.model_id,
                                config.revision, dtype=self.dtype)
        self.model = model.to(device).eval()
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))

    # ----- what a model family writes ----------------------------------------------------------
    def prompt_text(self) -> str:
        """The full text input for one image (chat template applied where the model has one)."""
        return self.config.prompt

    def chat_prompt(self) -> str:
        """`prompt` as one user turn holding the image then the text, through the model's chat template."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.config.prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def processor_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the processor call (e.g. Qwen's pixel budget)."""
        return {}

    # ----- the shared generation loop ----------------------------------------------------------
    def annotate(self, images: Sequence[np.ndarray]) -> list[str | AnnotationError]:
        """One caption (or AnnotationError) per uint8 HxWx3 image, in input order."""
        import torch

        for img in images:
            check_image(img)
        # Similar sizes together: fewer pad tokens for models with a variable number of image tokens.
        order = sorted(range(len(images)), key=lambda i: images[i].shape[:2])
        out: list[str | AnnotationError] = [AnnotationError("not_run")] * len(images)
        with torch.inference_mode():
            for start in range(0, len(order), self.config.max_batch):
                chunk = order[start : start + self.config.max_batch]
                for i, text in zip(chunk, self.generate([images[i] for i in chunk]), strict=True):
                    out[i] = self._finish(text)
        return out

    def generate(self, images: list[np.ndarray]) -> list[str]:
        """Raw decoded new text for a batch of images (special tokens skipped, not yet cleaned)."""
        import torch

        # uint8 CHW tensors: the processor resizes and normalises them on `device` (torchvision backend).
        pixels = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in images]
        inputs = self.processor(
            images=pixels,
            text=[self.prompt_text()] * len(images),
            padding=True,
            return_tensors="pt",
            device=self.device,
            **self.processor_kwargs(),
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        generated = self.model.generate(
            **inputs,
            max_new_tokens=self.config.max_new_tokens,
            do_sample=False,
            num_beams=self.config.num_beams,
            **self.generate_extra(),
        )
        if not self.encoder_decoder:  # decoder-only models return prompt + answer
            generated = generated[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(generated, skip_special_tokens=True)

    def generate_extra(self) -> dict[str, Any]:
        return dict(self.config.generate_kwargs)

    def _finish(self, raw: str) -> str | AnnotationError:
        text = clean_caption(raw, self.config.prompt)
        if not text:
            return AnnotationError("empty_caption", f"{self.config.caption_key}: model output {raw[:80]!r} is empty")
        return text


# ----- model families ----------------------------------------------------------------------------


class Blip2Captioner(Captioner):
    """BLIP-2 (Li et al. 2023): Q-Former queries into a frozen OPT; prompt-free it writes a short subject caption."""

    model_class = "Blip2ForConditionalGeneration"


@dataclass(frozen=True)
class QwenVLConfig(CaptionerConfig):
    # Qwen2-VL's pixel budget per image (model card: min_pixels/max_pixels, tokens = pixels / 28^2).
    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1024 * 28 * 28


class QwenVLCaptioner(Captioner):
    """Qwen2-VL-Instruct (Wang et al. 2024), the long captions of Joint-1.6M, via its chat template."""

    model_class = "Qwen2VLForConditionalGeneration"

    def prompt_text(self) -> str:
        return self.chat_prompt()

    def processor_kwargs(self) -> dict[str, Any]:
        return {"size": {"shortest_edge": self.config.min_pixels, "longest_edge": self.config.max_pixels}}


class Qwen25VLCaptioner(QwenVLCaptioner):
    """Qwen2.5-VL-Instruct: same prompt and processor as Qwen2-VL, its own model class."""

    model_class = "Qwen2_5_VLForConditionalGeneration"


class JanusCaptioner(Captioner):
    """Janus-Pro (Chen et al. 2025) in its understanding mode (`generation_mode="text"`)."""

    model_class = "JanusForConditionalGeneration"

    def prompt_text(self) -> str:
        return self.chat_prompt()

    def processor_kwargs(self) -> dict[str, Any]:
        return {"generation_mode": "text"}

    def generate_extra(self) -> dict[str, Any]:
        return {"generation_mode": "text", **super().generate_extra()}


class Florence2Captioner(Captioner):
    """Florence-2 (Xiao et al. 2024), native transformers class: the prompt is a task token."""

    model_class = "Florence2ForConditionalGeneration"


# ----- captions that come with the input ---------------------------------------------------------


@dataclass(frozen=True)
class AltTextConfig(AnnotatorConfig):
    """Keep an input dataset's own caption (alt text) under `caption_key`, as Joint keeps `Pexels`."""

    caption_key: str = "Pexels"
    resolution: int = 0


class AltTextCaptioner(Annotator):
    """Passes `batch["source_caption"]` (one str or None per image, filled by the pipeline from the
    input's caption column) through `clean_caption`; a missing or blank one is an AnnotationError."""

    domain = "caption"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        images = list(batch["image"])
        sources = list(batch.get("source_caption", [None] * len(images)))
        if len(sources) != len(images):
            raise ValueError(f"source_caption has {len(sources)} entries for {len(images)} images")
        return {self.domain: [self.keep(s) for s in sources]}

    def annotate(self, images: Sequence[np.ndarray]) -> list[str | AnnotationError]:
        return [self.keep(None) for _ in images]

    def keep(self, text: str | None) -> str | AnnotationError:
        cleaned = clean_caption(text) if isinstance(text, str) else ""
        if not cleaned:
            return AnnotationError("empty_caption", f"{self.config.caption_key}: no source caption for this image")
        return cleaned


# ----- presets -----------------------------------------------------------------------------------

# Revisions are "main": the hub was unreachable from where these presets were written, so no commit
# hash could be looked up; pin one (`--model name=...` or dataclasses.replace) for a reproducible run.
# The long-caption prompt is not given by the Jodi paper; Joint's Qwen2-VL captions read like answers
# to a plain "describe this image" request ("The image depicts ..."), which is what this prompt asks.
DETAILED_PROMPT = "Describe this image in detail."
DETAILED_PROMPT_VERSION = "detailed-v1"

# Joint-1.6M's short caption: BLIP-2 prompt-free, greedy (captions of ~10 words).
BLIP2_OPT_2_7B = CaptionerConfig(
    model_id="Salesforce/blip2-opt-2.7b", revision="main", caption_key="BLIP2-OPT-2.7b",
    prompt="", prompt_version="none-v1", max_new_tokens=30, max_batch=32)
# Joint-1.6M's long caption.
QWEN2_VL_7B = QwenVLConfig(
    model_id="Qwen/Qwen2-VL-7B-Instruct", revision="main", caption_key="Qwen2-VL-7b-Instruct",
    prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=8)
QWEN2_5_VL_7B = QwenVLConfig(
    model_id="Qwen/Qwen2.5-VL-7B-Instruct", revision="main", caption_key="Qwen2.5-VL-7b-Instruct",
    prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=8)
QWEN2_5_VL_3B = QwenVLConfig(
    model_id="Qwen/Qwen2.5-VL-3B-Instruct", revision="main", caption_key="Qwen2.5-VL-3b-Instruct",
    prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=16)
JANUS_PRO_1B = CaptionerConfig(
    model_id="deepseek-community/Janus-Pro-1B", revision="main", caption_key="Janus-Pro-1B",
    prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=16)
JANUS_PRO_7B = CaptionerConfig(
    model_id="deepseek-community/Janus-Pro-7B", revision="main", caption_key="Janus-Pro-7B",
    prompt=DETAILED_PROMPT, prompt_version=DETAILED_PROMPT_VERSION, max_new_tokens=256, max_batch=8)
# Florence-2 in its native transformers port (florence-community), no remote code; 0.23B/0.77B: CPU-friendly.
FLORENCE2_LARGE = CaptionerConfig(
    model_id="florence-community/Florence-2-large", revision="main", caption_key="Florence-2-large",
    prompt="<MORE_DETAILED_CAPTION>", prompt_version="task-token-v1", max_new_tokens=256, max_batch=16)
FLORENCE2_BASE = CaptionerConfig(
    model_id="florence-community/Florence-2-base", revision="main", caption_key="Florence-2-base",
    prompt="<MORE_DETAILED_CAPTION>", prompt_version="task-token-v1", max_new_tokens=256, max_batch=32)
# An input dataset's own captions under their own key (Joint's pexels-portrait keeps them as "Pexels").
ALT_TEXT = AltTextConfig(caption_key="Pexels")
