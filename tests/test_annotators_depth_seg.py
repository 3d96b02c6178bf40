"""Depth (Depth Anything V2, ZoeDepth, MiDaS) and segmentation (OneFormer, Mask2Former, UperNet) beyond the
shared contract (tests/test_annotator_contract.py): the same result as each hub processor, Joint's file
properties, metric inversion. Tiny random weights of the real architectures (tests/builders/depth_seg.py),
loaded through the annotator's own loading path, offline.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from annotators.registry import build
from schemas.codec import decode_file, encode_file
from schemas.encoding import ade150_to_12, decode_depth, decode_seg, encode_label, palette_only
from tests.builders import BASELINES
from tests.builders.tiny import tiny_annotator, tiny_overrides

DEPTH = ["depth_anything_v2_small", "depth_anything_v2_base", "depth_anything_v2_large", "zoedepth", "midas"]
SEG = ["oneformer_ade20k", "mask2former_ade20k", "upernet_ade20k"]
PRESETS = DEPTH + SEG


@pytest.fixture(scope="module")
def checkpoints():
    """name -> build() overrides of its tiny random checkpoint (shared with the contract test)."""
    return tiny_overrides


@pytest.fixture(scope="module")
def annotators():
    return tiny_annotator


@pytest.fixture(scope="module")
def images(sample_images):
    """The sample photographs at 1/5 to 1/8 size: mixed sizes and aspects, 60-130 px."""
    return [img[::step, ::step].copy() for img, step in zip(sample_images, (5, 6, 7, 8))]


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


def test_upernet_runs_the_main_head_only_and_resizes_its_scores_once(annotators, images):
    """UperNet's forward is the model's main head before transformers upsamples it: resized to the
    working size it is the model's own logits. The auxiliary head (a training loss) never runs."""
    import torch
    import torch.nn.functional as F

    annotator = annotators("upernet_ade20k")
    assert annotator.model.auxiliary_head is not None  # the real config has one: skipping it is the point
    calls = []
    hook = annotator.model.auxiliary_head.register_forward_hook(lambda *args: calls.append(1))
    try:
        side = annotator.config.resolution
        x = annotator._to_tensor([images[0]], (side, side))
        with torch.inference_mode():
            scores = annotator.forward(x)
            assert not calls
            logits = annotator.model(pixel_values=annotator._normalise(x)).logits
        assert calls  # transformers' forward does run it
    finally:
        hook.remove()
    assert scores.shape[-2:] == (side // 4, side // 4) and logits.shape[-2:] == (side, side)
    resized = F.interpolate(scores, size=(side, side), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resized, logits, rtol=1e-5, atol=1e-5)


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
