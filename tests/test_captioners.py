"""Captioners: tiny random-weight models of each real architecture, loaded through the real loading code."""

from __future__ import annotations

import dataclasses
import json
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from annotators import caption_vllm, registry
from annotators.base import AnnotationError
from annotators.caption import AltTextCaptioner, CaptionerConfig, caption_stats, clean_caption
from tests.builders import BASELINES
from tests.builders.tiny import tiny_annotator, tiny_overrides
from schemas.record import LabeledRecord

CAPTIONERS = [name for name, e in registry.REGISTRY.items() if e.domain == "caption"]
MODEL_PRESETS = [name for name in CAPTIONERS if registry.REGISTRY[name].cls is not AltTextCaptioner]


@pytest.fixture(scope="module")
def small_images(sample_images) -> list[np.ndarray]:
    """Three sample photographs at ~64-100 px: mixed sizes and aspect ratios (square, 3:2, 4:3)."""
    return [np.ascontiguousarray(im[:: min(im.shape[:2]) // 64, :: min(im.shape[:2]) // 64])
            for im in sample_images[:3]]


@pytest.fixture(scope="module")
def checkpoints():
    """name -> build() overrides of its tiny checkpoint (shared with the contract test)."""
    return tiny_overrides


def build(name: str, overrides: dict, **extra):
    return registry.build(name, **{**overrides, **extra})


@pytest.fixture(scope="module")
def captioners():
    return tiny_annotator


# ----- registry and keys -------------------------------------------------------------------------


def test_caption_keys_and_generation_settings():
    keys = {name: registry.resolve(name)[1].caption_key for name in CAPTIONERS}
    assert keys["blip2_opt_2_7b"] == "BLIP2-OPT-2.7b"
    assert keys["qwen2_vl_7b"] == "Qwen2-VL-7b-Instruct"
    assert keys["alt_text"] == "Pexels"
    assert len(set(keys.values())) == len(keys), "every captioner writes its own key"
    for name in MODEL_PRESETS:
        config = registry.resolve(name)[1]
        assert config.model_id and config.revision and config.prompt_version
        assert config.backend == "transformers" and config.num_beams == 1


def test_joint_caption_keys(joint_example):
    """The keys of the Joint default captioners are the ones Joint-1.6M's metadata uses."""
    lines = (joint_example / "metadata.jsonl").read_text().splitlines()
    joint_keys = set().union(*(json.loads(line)["caption"] for line in lines))
    ours = {registry.resolve(n)[1].caption_key for n in ("blip2_opt_2_7b", "qwen2_vl_7b")}
    assert ours <= joint_keys


# ----- every model preset ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_captioner_batch_determinism_and_record(name, captioners, small_images):
    cap = captioners(name)
    out = cap({"image": small_images})
    assert list(out) == ["caption"]
    texts = out["caption"]
    assert len(texts) == len(small_images)
    for text in texts:
        assert isinstance(text, str) and text, text
        assert text == " ".join(text.split()), "whitespace collapsed"
        assert "<|" not in text and "</s>" not in text and "<image" not in text
    # Greedy decoding: the same captions twice (per image == batch is the shared contract's).
    assert cap({"image": small_images})["caption"] == texts
    # The pipeline stores the string under the preset's key; it survives the Joint record round trip.
    key = cap.config.caption_key
    record = LabeledRecord(id="0" * 32, source="x", image=b"", height=1, width=1, captions={key: texts[0]})
    assert record.joint_metadata()["caption"] == {key: texts[0]}
    assert LabeledRecord.from_row(record.to_row()).captions == {key: texts[0]}
    assert json.loads(cap.provenance()["parameters"])["prompt_version"] == cap.config.prompt_version


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_empty_output_is_an_error_record(name, checkpoints, small_images):
    """A model that stops at once (eos forced as the only new token) gives AnnotationError, not ''."""
    from transformers import AutoProcessor

    eos_id = AutoProcessor.from_pretrained(checkpoints(name)["model_id"]).tokenizer.eos_token_id
    cap = build(name, checkpoints(name), max_new_tokens=1, generate_kwargs=(("forced_eos_token_id", eos_id),))
    out = cap({"image": small_images[:2]})["caption"]
    assert all(isinstance(e, AnnotationError) and e.reason == "empty_caption" for e in out), out


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_baseline_runs(name, checkpoints, small_images):
    folder = checkpoints(name)["model_id"]
    result = BASELINES[name](Path(folder))(small_images[0])
    generated = result[0]["generated_text"]
    assert generated  # str for prompt models, a chat transcript for chat models


def test_vllm_backend_is_refused_in_process(checkpoints):
    with pytest.raises(ValueError, match="caption_vllm"):
        registry.build("blip2_opt_2_7b", backend="vllm", **checkpoints("blip2_opt_2_7b"))


# ----- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prompt", "expected"),
    [
        ("<|im_start|>assistant\n  The image   shows\na cat.<|im_end|>", "", "The image shows a cat."),
        ("</s>a dog on a rock<pad><pad>", "", "a dog on a rock"),
        ("a photo of a bridge", "a photo of", "a bridge"),
        ("Describe this image. The sky is blue", "Describe this image.", "The sky is blue"),
        ("<｜end▁of▁sentence｜> A parrot\ufffd\x05", "", "A parrot"),
        ("   \n<pad> ", "", ""),
    ],
)
def test_clean_caption(raw, prompt, expected):
    assert clean_caption(raw, prompt) == expected


def test_caption_stats():
    stats = caption_stats(["a cat", "a dog on a rock", "", "one two three four five six"])
    assert stats["count"] == 4 and stats["empty"] == 1
    assert stats["mean_words"] == pytest.approx((2 + 5 + 6) / 3, abs=0.01)
    assert stats["median_words"] == 5 and stats["max_words"] == 6
    assert stats["max_chars"] == len("one two three four five six")
    assert 5 <= stats["p95_words"] <= 6
    assert json.loads(json.dumps(stats)) == stats  # goes into stats.json as is
    assert caption_stats([])["count"] == 0 and caption_stats([])["mean_words"] == 0.0


def test_alt_text_keeps_source_captions(small_images):
    cap = registry.build("alt_text")
    assert cap.config.caption_key == "Pexels"
    out = cap({"image": small_images[:3], "source_caption": ["  A woman\n in a  red coat ", None, "  "]})["caption"]
    assert out[0] == "A woman in a red coat"
    assert all(isinstance(e, AnnotationError) and e.reason == "empty_caption" for e in out[1:])
    assert all(isinstance(e, AnnotationError) for e in cap({"image": small_images[:2]})["caption"])
    with pytest.raises(ValueError):
        cap({"image": small_images[:2], "source_caption": ["one"]})
    custom = registry.build("alt_text", caption_key="alt")
    assert custom.config.caption_key == "alt"


# ----- vLLM backend (config and row functions; vLLM itself is not installed here) ---------------


def test_vllm_engine_config_and_rows(small_images):
    config = caption_vllm.engine_config("qwen2_vl_7b")
    assert config.model_source == "Qwen/Qwen2-VL-7B-Instruct"
    assert config.engine_kwargs["mm_processor_kwargs"]["max_pixels"] == registry.resolve("qwen2_vl_7b")[1].max_pixels
    assert config.prepare_multimodal_stage and config.chat_template_stage

    cls, preset = caption_vllm.preset_config("qwen2_vl_7b")
    row = caption_vllm.make_preprocess(cls, preset)({"image": small_images[0], "id": "abc"})
    assert row["id"] == "abc" and row["image"].shape[2] == 3  # kept: later label-job stages write it
    content = row["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert content[1]["text"] == preset.prompt
    assert row["sampling_params"] == {"temperature": 0.0, "max_tokens": preset.max_new_tokens,
                                      "skip_special_tokens": True}

    blip_cls, blip = caption_vllm.preset_config("blip2_opt_2_7b")
    prompt_row = caption_vllm.make_preprocess(blip_cls, blip)({"image": small_images[1]})
    assert prompt_row["prompt"] == "" and prompt_row["multimodal_data"]["image"].size == small_images[1].shape[1::-1]
    assert not caption_vllm.engine_config("blip2_opt_2_7b").chat_template_stage

    post = caption_vllm.make_postprocess(preset)
    done = post({"id": "abc", "generated_text": " The image  shows a cat.<|im_end|>", "messages": []})
    assert done == {"id": "abc", "caption": "The image shows a cat.", "caption_error": None}
    assert post({"id": "x", "generated_text": "  "})["caption_error"] == "empty_caption"

    with pytest.raises(NotImplementedError, match="Florence-2"):
        caption_vllm.engine_config("florence2_base")
    with pytest.raises(ValueError):
        caption_vllm.preset_config("alt_text")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_missing_gives_install_hint():
    with pytest.raises(ImportError, match="pip install vllm"):
        caption_vllm.build_caption_processor("qwen2_vl_7b")


def test_config_is_frozen():
    config = registry.resolve("blip2_opt_2_7b")[1]
    assert isinstance(config, CaptionerConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.prompt = "x"  # type: ignore[misc]
