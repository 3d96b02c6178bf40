"""Cluster throughput path for captioners: Ray Data LLM batch inference with vLLM (`ray.data.llm`).

Selected by a captioner preset with `backend="vllm"`. It is not an in-process
annotator: vLLM runs as its own Ray Data stage (continuous batching, paged
attention, one engine actor per GPU), so the pipeline applies the processor from
`build_caption_processor(config)` to a dataset instead of calling `Captioner`:

    ds = ds.map_batches(...decode...)                     # rows carry "image" (uint8 HxWx3)
    ds = build_caption_processor(config, VLLMResources())(ds)
    # rows gain "caption" (str or None) and "caption_error" (None or "empty_caption"),
    # stored under record.captions[config.caption_key]

Same presets, same prompt (and prompt_version), same greedy decoding (temperature 0)
and the same text cleaning as the transformers backend, which stays the default.
vLLM is optional and not a dependency of this project: `pip install vllm`.

Model support follows vLLM's own model list: BLIP-2 and Qwen2-VL / Qwen2.5-VL run
natively; Janus-Pro has no native vLLM model and is routed to vLLM's Transformers
modeling backend (`model_impl="transformers"`); Florence-2 is an encoder-decoder
model that current vLLM does not serve, so it is refused with a hint.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotators.caption import (
    CaptionerConfig,
    Florence2Captioner,
    JanusCaptioner,
    QwenVLCaptioner,
    clean_caption,
)
from annotators.registry import resolve

INSTALL_HINT = "the vLLM caption backend needs vLLM on the GPU workers: `pip install vllm` (Linux, CUDA)"


@dataclass(frozen=True)
class VLLMResources:
    """Resources of the vLLM engine stage; they come from the job config, not from the preset."""

    batch_size: int = 64  # rows per request batch sent to one engine
    concurrency: int = 1  # engine replicas (one per GPU, or per tensor-parallel group)
    tensor_parallel_size: int = 1
    accelerator_type: str | None = None
    max_model_len: int | None = None  # None: the model's own context length
    gpu_memory_utilization: float = 0.90
    jpeg_quality: int = 95  # images travel to the engine as JPEG data URLs


def preset_config(name: str) -> tuple[type, CaptionerConfig]:
    """(captioner class, preset config) of a registered captioner name."""
    cls, config = resolve(name)
    if not isinstance(config, CaptionerConfig):
        raise ValueError(f"{name!r} is not a model captioner")
    return cls, config


def uses_chat(cls: type) -> bool:
    """Chat-tuned models take OpenAI-style messages (vLLM applies the model's chat template)."""
    return issubclass(cls, (QwenVLCaptioner, JanusCaptioner))


def engine_kwargs(cls: type, config: CaptionerConfig, resources: VLLMResources) -> dict[str, Any]:
    """vLLM engine arguments for a captioner class; refuses models vLLM cannot serve."""
    if issubclass(cls, Florence2Captioner):
        raise NotImplementedError(
            f"{config.caption_key}: Florence-2 is encoder-decoder and not served by vLLM; "
            "use the transformers backend (it is the fast CPU option)"
        )
    kwargs: dict[str, Any] = {
        "revision": config.revision,
        "tensor_parallel_size": resources.tensor_parallel_size,
        "gpu_memory_utilization": resources.gpu_memory_utilization,
        "limit_mm_per_prompt": {"image": 1},
        "dtype": "bfloat16" if config.dtype in ("auto", "bfloat16") else config.dtype,
    }
    if resources.max_model_len is not None:
        kwargs["max_model_len"] = resources.max_model_len
    if issubclass(cls, QwenVLCaptioner):
        # Same pixel budget as the transformers path (Qwen2-VL model card: min/max_pixels).
        kwargs["mm_processor_kwargs"] = {"min_pixels": config.min_pixels, "max_pixels": config.max_pixels}
    if issubclass(cls, JanusCaptioner):
        kwargs["model_impl"] = "transformers"
    return kwargs


def sampling_params(config: CaptionerConfig) -> dict[str, Any]:
    """Greedy decoding with the preset's token budget, as the transformers backend does."""
    return {"temperature": 0.0, "max_tokens": config.max_new_tokens, "skip_special_tokens": True}


def image_data_url(image: np.ndarray, quality: int = 95) -> str:
    """A uint8 HxWx3 image as a `data:image/jpeg;base64,...` URL (what vLLM's chat parser accepts)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def make_preprocess(cls: type, config: CaptionerConfig, quality: int = 95) -> Callable[[dict], dict]:
    """Row function: {"image": uint8 HxWx3, ...} -> the row plus the vLLM request fields."""
    chat = uses_chat(cls)
    params = sampling_params(config)

    def preprocess(row: dict) -> dict:
        image = np.asarray(row["image"], dtype=np.uint8)
        # Keep every column, the image included: later stages of the label job encode and write it.
        request = dict(row)
        if chat:
            content = [
                {"type": "image_url", "image_url": {"url": image_data_url(image, quality)}},
                {"type": "text", "text": config.prompt},
            ]
            request["messages"] = [{"role": "user", "content": content}]
        else:
            from PIL import Image

            request["prompt"] = config.prompt
            request["multimodal_data"] = {"image": Image.fromarray(image)}
        request["sampling_params"] = params
        return request

    return preprocess


def make_postprocess(config: CaptionerConfig) -> Callable[[dict], dict]:
    """Row function: the engine's `generated_text` -> `caption` (cleaned) and `caption_error`."""
    request_keys = {"messages", "prompt", "multimodal_data", "sampling_params", "generated_text"}

    def postprocess(row: dict) -> dict:
        text = clean_caption(row.get("generated_text") or "", config.prompt)
        out = {k: v for k, v in row.items() if k not in request_keys}
        out["caption"] = text or None
        out["caption_error"] = None if text else "empty_caption"
        return out

    return postprocess


def engine_config(name: str, resources: VLLMResources = VLLMResources(), config: CaptionerConfig | None = None):
    """The `ray.data.llm.vLLMEngineProcessorConfig` of a captioner preset (`config` overrides the preset)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    cls, preset = preset_config(name)
    config = config or preset
    chat = uses_chat(cls)
    return vLLMEngineProcessorConfig(
        model_source=config.model_id,
        engine_kwargs=engine_kwargs(cls, config, resources),
        batch_size=resources.batch_size,
        concurrency=resources.concurrency,
        accelerator_type=resources.accelerator_type,
        # Chat models: vLLM extracts the image from the messages and applies the chat template.
        prepare_multimodal_stage=chat,
        chat_template_stage=chat,
        tokenize_stage=True,
        detokenize_stage=True,
        should_continue_on_error=True,  # a failed row becomes an error record, not a failed job
    )


def build_caption_processor(name: str, resources: VLLMResources = VLLMResources(),
                            config: CaptionerConfig | None = None):
    """A Ray Data LLM processor (call it on a dataset) that captions rows with vLLM."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)
    from ray.data.llm import build_processor

    cls, preset = preset_config(name)
    config = config or preset
    return build_processor(
        engine_config(name, resources, config),
        preprocess=make_preprocess(cls, config, resources.jpeg_quality),
        postprocess=make_postprocess(config),
    )
