"""Depth (Depth Anything V2, ZoeDepth, MiDaS) and segmentation (OneFormer, Mask2Former, UperNet) annotators.

Every preset is built with tiny random weights of its real transformers architecture
(annotators/depth_seg_random.py), saved to a folder and loaded through the annotator's
own loading path, offline.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from annotators.base import AnnotatorConfig
from annotators.loading import ModelUnavailableError
from tests.builders import BASELINES, RANDOM_CHECKPOINTS
from annotators.registry import DOMAIN_DEFAULTS, REGISTRY, build
from schemas.codec import decode_file, encode_file
from schemas.encoding import ade150_to_12, decode_depth, decode_seg, encode_label, palette_only

DEPTH = ["depth_anything_v2_small", "depth_anything_v2_base", "depth_anything_v2_large", "zoedepth", "midas"]
SEG = ["oneformer_ade20k", "mask2former_ade20k", "upernet_ade20k"]
PRESETS = DEPTH + SEG


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> build() overrides of its tiny random checkpoint, written once per module."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = RANDOM_CHECKPOINTS[name](tmp_path_factory.mktemp(name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def annotators(checkpoints):
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = build(name, **checkpoints(name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def images(sample_images):
    """The sample photographs at 1/5 to 1/8 size: mixed sizes and aspects, 60-130 px."""
    return [img[::step, ::step].copy() for img, step in zip(sample_images, (5, 6, 7, 8))]


def test_registry_presets_and_defaults():
    assert DOMAIN_DEFAULTS["depth"] == "depth_anything_v2_large"
    assert DOMAIN_DEFAULTS["seg_12colors"] == "oneformer_ade20k"
    for name in PRESETS:
        cls, config = REGISTRY[name]
        assert isinstance(config, AnnotatorConfig) and config.model_id and config.revision
        assert name in RANDOM_CHECKPOINTS and name in BASELINES
        assert cls.domain == ("depth" if name in DEPTH else "seg_12colors")
    assert REGISTRY["depth_anything_v2_large"][1].model_id == "depth-anything/Depth-Anything-V2-Large-hf"
    assert REGISTRY["depth_anything_v2_large"][1].resolution == 518


@pytest.mark.parametrize("name", PRESETS)
def test_labels_match_inputs_and_are_deterministic(name, annotators, images):
    annotator = annotators(name)
    labels = annotator({"image": images})[annotator.domain]
    assert len(labels) == len(images)
    for img, label in zip(images, labels):
        assert label.shape == img.shape[:2]
        if name in DEPTH:
            assert label.dtype == np.float32 and np.isfinite(label).all()
            assert label.min() >= 0  # disparity / inverse depth is never negative
            assert label.std() > 0  # the random model is not constant: a real map came back
        else:
            assert label.dtype == np.uint8 and label.max() <= 11
    again = annotator({"image": images})[annotator.domain]
    for a, b in zip(labels, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["depth_anything_v2_small", "zoedepth", "midas", *SEG])
def test_batched_equals_one_by_one(name, annotators, images):
    annotator = annotators(name)
    # Two same-size images make a real batch of two in one forward call.
    same = [images[0], images[0][:, ::-1].copy(), images[1]]
    batched = annotator.annotate(same)
    for img, label in zip(same, batched):
        single = annotator.annotate([img])[0]
        if name in DEPTH:
            np.testing.assert_allclose(label, single, rtol=1e-4, atol=1e-4 * float(np.abs(single).max()))
        else:
            assert (label == single).mean() > 0.999  # argmax ties may flip on float noise


def test_zoedepth_metric_depth_is_inverted(checkpoints, images):
    """Near = large: the metric preset returns 1 / depth of the same model run without inversion."""
    overrides = checkpoints("zoedepth")
    metric = build("zoedepth", **overrides)
    raw = build("zoedepth", **overrides, metric=False)
    # An input at exactly the working size (64x64) has no resize after the inversion.
    img = images[0][:64, :64].copy()
    inverse, depth = metric.annotate([img])[0], raw.annotate([img])[0]
    assert (depth > 0).all()
    np.testing.assert_allclose(inverse, 1.0 / np.maximum(depth, 1e-3), rtol=1e-5)


# Mask2Former is left out: its post-processing first resizes masks to a fixed 384x384.
@pytest.mark.parametrize("name", ["depth_anything_v2_small", "zoedepth", "midas", "oneformer_ade20k", "upernet_ade20k"])
def test_same_result_as_the_hub_processor(name, annotators, images):
    """On an input already at the working size (no resize on either side), the annotator equals the model run
    through its saved processor and post-processing: normalisation, padding, task tokens and score maps agree."""
    import torch
    from transformers import AutoProcessor

    annotator = annotators(name)
    side = annotator.config.resolution
    img = images[0][:side, :side].copy()
    ours = annotator.annotate([img])[0]
    processor = AutoProcessor.from_pretrained(annotator.config.model_id)
    extra = {"task_inputs": ["semantic"]} if name == "oneformer_ade20k" else {}
    inputs = processor(images=img, do_resize=False, return_tensors="pt", **extra)
    with torch.no_grad():
        out = annotator.model(**inputs)
    if annotator.domain == "depth":
        sizes = {"source_sizes": [(side, side)]} if name == "zoedepth" else {"target_sizes": [(side, side)]}
        ref = processor.post_process_depth_estimation(out, **sizes)[0]["predicted_depth"].numpy()
        ref = 1.0 / np.maximum(ref, 1e-3) if name == "zoedepth" else ref
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    else:
        ref = processor.post_process_semantic_segmentation(out, target_sizes=[(side, side)])[0]
        assert (ours == ade150_to_12(ref.numpy())).mean() > 0.99


@pytest.mark.parametrize("name", ["depth_anything_v2_small", "oneformer_ade20k"])
def test_encoded_labels_have_joint_properties(name, annotators, images, joint_example):
    annotator = annotators(name)
    domain = annotator.domain
    rows = [json.loads(line) for line in (joint_example / "metadata.jsonl").read_text().splitlines()]
    reference = Image.open(joint_example / rows[0][f"annotation_{domain}"])
    for label in annotator.annotate(images):
        data = encode_file(domain, encode_label(domain, label))
        stored = Image.open(io.BytesIO(data))
        assert (stored.mode, stored.format) == (reference.mode, reference.format)
        decoded = decode_file(data)
        if domain == "depth":
            # Min-max to 0..255 with near = bright: the nearest pixel of the label is the brightest.
            assert decoded.shape == label.shape and decoded.min() <= 2 and decoded.max() >= 253
            corr = np.corrcoef(decode_depth(decoded).ravel(), label.ravel())[0, 1]
            assert corr > 0.99
        else:
            assert palette_only(decoded) and palette_only(np.asarray(reference.convert("RGB")))
            np.testing.assert_array_equal(decode_seg(decoded), label)


def test_score_upsampling_matches_processor_postprocessing():
    """Chunked resize + running argmax + 150->12 equals OneFormer's post-processing followed by the mapping."""
    import torch
    from transformers import OneFormerImageProcessor
    from transformers.models.oneformer.modeling_oneformer import OneFormerForUniversalSegmentationOutput

    from annotators.segmentation import OneFormerSegmenter, SegConfig, mask_class_scores

    g = torch.Generator().manual_seed(0)
    class_logits = torch.randn(2, 6, 151, generator=g) * 3
    mask_logits = torch.randn(2, 6, 9, 11, generator=g) * 3
    outputs = OneFormerForUniversalSegmentationOutput(
        class_queries_logits=class_logits, masks_queries_logits=mask_logits
    )
    sizes = [(37, 45), (20, 24)]
    expected = OneFormerImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=sizes)

    # Only the post-processing of the class is exercised here: no model is loaded.
    tail = object.__new__(OneFormerSegmenter)
    tail.config = SegConfig(upsample_chunk=16)
    tail._to12 = torch.from_numpy(ade150_to_12(np.arange(150)))
    scores = mask_class_scores(class_logits, mask_logits)
    for i, size in enumerate(sizes):
        ours = tail._back_to_numpy(scores[i : i + 1], size)
        np.testing.assert_array_equal(ours, ade150_to_12(expected[i].numpy()))


def test_oneformer_task_tokens_match_processor(checkpoints):
    from transformers import AutoTokenizer, OneFormerProcessor

    from annotators.segmentation import task_tokens

    folder = checkpoints("oneformer_ade20k")["model_id"]
    processor = OneFormerProcessor.from_pretrained(folder)
    expected = processor(images=[np.zeros((32, 32, 3), np.uint8)], task_inputs=["semantic"], return_tensors="pt")
    ours = task_tokens(AutoTokenizer.from_pretrained(folder), "the task is semantic", 77)
    assert ours.shape == (1, 77) and (ours[0, 5:] == 0).any()
    np.testing.assert_array_equal(ours.numpy(), expected["task_inputs"].numpy())


@pytest.mark.parametrize("name", ["depth_anything_v2_small", "oneformer_ade20k"])
def test_missing_model_gives_one_line_error(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        build(name, model_id="no-such-org/no-such-model-depth-seg")
    message = str(err.value)
    assert "no-such-org/no-such-model-depth-seg" in message and "\n" not in message


@pytest.mark.parametrize("name", ["depth_anything_v2_small", "zoedepth", "midas", *SEG])
def test_baseline_runs(name, tmp_path, annotators, images):
    run = BASELINES[name](tmp_path / name)
    out = run(images[1])
    if name in DEPTH:
        depth = np.asarray(out, dtype=np.float32)
        assert depth.shape == images[1].shape[:2] and np.isfinite(depth).all()
    elif name == "oneformer_ade20k":
        assert tuple(out.shape) == images[1].shape[:2]
    else:
        assert out and all(np.asarray(seg["mask"]).shape == images[1].shape[:2] for seg in out)
