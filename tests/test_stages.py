"""Pipeline stages on hand-built batch dicts (no Ray needed)."""

from __future__ import annotations

import json

import numpy as np

from pipeline.stages import LABEL_NDIM, AnnotateStage, EncodeStage, _column, is_absent, vllm_caption_columns
from tests.bad_inputs import photo


def batch_of(images, **extra):
    n = len(images)
    return {
        "source": _column([f"/x/{i}.jpg" for i in range(n)]),
        "shard": np.zeros(n, int),
        "row": np.full(n, -1),
        "id": _column([f"{i:032x}" for i in range(n)]),
        "image": _column(images),
        "height": np.array([im.shape[0] for im in images]),
        "width": np.array([im.shape[1] for im in images]),
        "error": _column([""] * n),
        "error_stage": _column([""] * n),
        "detail": _column([""] * n),
        "source_caption": _column([""] * n),
        **extra,
    }


def test_one_bad_image_does_not_sink_its_batch():
    good = [photo((40, 50)), photo((50, 40))]
    bad = np.zeros((30, 30, 3), np.float32)  # wrong dtype: the annotator rejects it
    out = AnnotateStage([("canny", {}), ("lineart_standard", {})], device="cpu")(batch_of([good[0], bad, good[1]]))
    assert list(out["error"]) == ["", "ValueError", ""]
    assert out["error_stage"][1] == "annotate:canny"
    assert out["label_edge"][0].shape == (40, 50) and out["label_edge"][2].shape == (50, 40)
    assert is_absent(out["label_edge"][1]) and out["label_edge"][1].ndim == LABEL_NDIM["edge"]
    assert is_absent(out["label_lineart"][1])  # later annotators skip a row that already failed
    assert out["t_canny"].shape == (3,)


def test_encode_stage_writes_joint_files_and_merges_source_captions():
    images = [photo((40, 50))]
    b = AnnotateStage([("canny", {})], device="cpu")(batch_of(images, source_caption=_column(["a red suit"])))
    b["caption__BLIP2-OPT-2.7b"] = _column(["an astronaut"])
    out = EncodeStage(["edge"], source_caption_key="Pexels")(b)
    assert out["file_image"][0][:3] == b"\xff\xd8\xff" and out["file_edge"][0][:3] == b"\xff\xd8\xff"
    assert json.loads(out["captions"][0]) == {"BLIP2-OPT-2.7b": "an astronaut", "Pexels": "a red suit"}


def test_vllm_caption_columns_map_to_caption_key_and_errors():
    b = batch_of([photo((20, 20))] * 3)
    b["error"] = _column(["", "", "truncated"])
    b["caption"] = np.array(["a dog", None, None], dtype=object)
    b["caption_error"] = np.array([None, "empty_caption", None], dtype=object)
    out = vllm_caption_columns(b, "Qwen2-VL-7b-Instruct", "qwen2_vl_7b")
    assert list(out["caption__Qwen2-VL-7b-Instruct"]) == ["a dog", "", ""]
    assert list(out["error"]) == ["", "empty_caption", "truncated"]
    assert out["error_stage"][1] == "annotate:qwen2_vl_7b"
    assert "caption" not in out and "caption_error" not in out


def test_bf16_autocast_on_cpu_is_close_to_fp32(tmp_path):
    """`--dtype bfloat16` runs the model under CPU autocast (fast on AVX512-BF16/AMX CPUs); labels stay close."""
    from tests.builders import RANDOM_CHECKPOINTS

    overrides = RANDOM_CHECKPOINTS["depth_anything_v2_small"](tmp_path / "da")
    images = [photo((56, 70)), photo((70, 56))]
    fp32 = AnnotateStage([("depth_anything_v2_small", overrides)], device="cpu")(batch_of(images))
    bf16 = AnnotateStage([("depth_anything_v2_small", {**overrides, "dtype": "bfloat16"})], device="cpu")(
        batch_of(images)
    )
    for a, b in zip(fp32["label_depth"], bf16["label_depth"], strict=True):
        assert a.shape == b.shape and b.dtype == np.float32
        scale = np.abs(a).max() + 1e-6
        assert np.abs(a - b).max() / scale < 0.05
