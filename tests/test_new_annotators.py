"""The newer annotators: Depth Pro, MoGe-2, ViTPose + RT-DETR, EoMT and Qwen3-VL.

Every model is built with tiny random weights of its real transformers architecture
(tests/builders/new_models.py), saved to a folder and loaded through the annotator's own
loading path, offline. Where the model card's own recipe runs here, our label is compared
with it on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from annotators.loading import ModelUnavailableError
from annotators.multi import label_domains
from annotators.registry import REGISTRY, build
from pipeline.preflight import PreflightError, check_annotators
from pipeline.stages import AnnotateStage, _column
from schemas.encoding import ade150_to_12, encode_label
from tests.builders.new_models import BASELINES, RANDOM
from tests.builders.tiny import label_photos, tiny_checkpoint

NEW = ["depth_pro", "depth_pro_geometry", "moge2_vitl_normal", "vitpose_base", "eomt_ade20k", "qwen3_vl_2b",
       "qwen3_vl_8b"]


@pytest.fixture(scope="module")
def built():
    """name -> (folder, overrides) of its tiny random checkpoint, written once per session."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def images(sample_images):
    """Real photographs at 1/5 to 1/8 size: mixed sizes and aspects (portrait included), 60-130 px."""
    return [img[::step, ::step].copy() for img, step in zip(sample_images, (5, 6, 7, 8))]


def test_registry_entries_build_tables_and_domains():
    for name in NEW:
        assert name in REGISTRY and name in RANDOM and name in BASELINES, name
        assert REGISTRY[name].preset.model_id, name
    assert label_domains(REGISTRY["depth_pro_geometry"].cls) == ("depth", "normal")
    assert label_domains(REGISTRY["moge2_vitl_normal"].cls) == ("depth", "normal")
    assert label_domains(REGISTRY["depth_pro"].cls) == ("depth",)
    assert REGISTRY["vitpose_base"].cls.domain == "openpose" and REGISTRY["eomt_ade20k"].cls.domain == "seg_12colors"
    assert REGISTRY["qwen3_vl_8b"].preset.caption_key == "Qwen3-VL-8B-Instruct"


# ----- Depth Pro and the multi-domain contract ------------------------------------------------------


def test_normals_of_planes():
    """A fronto-parallel plane faces the viewer; a plane receding to the right faces right (+x)."""
    import torch

    from annotators.depth_pro import normals_from_inverse_depth

    fov, aspect = torch.tensor([60.0]), torch.tensor([1.0])
    flat = normals_from_inverse_depth(torch.full((1, 1, 16, 16), 0.5), fov, aspect)
    assert torch.allclose(flat, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand_as(flat), atol=1e-6)
    # Depth Z = 2 + 0.1 * u: the right side is farther.
    z = 2.0 + 0.1 * torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    tilted = normals_from_inverse_depth(1.0 / z, fov, aspect)[..., 2:-2, 2:-2]
    assert (tilted[:, 0] > 0.1).all() and (tilted[:, 2] > 0).all() and tilted[:, 1].abs().max() < 1e-5
    assert torch.allclose(tilted.norm(dim=1), torch.ones(1), atol=1e-5)


def test_depth_pro_labels_every_size_in_one_batch_and_matches_single_images(built, images):
    _, overrides = built("depth_pro")
    ann = build("depth_pro", **overrides)
    together = ann.annotate(images)
    # Every image goes to the same square input, so batches are filled regardless of aspect.
    chunks = list(ann.batches(images))
    assert {size for size, _ in chunks} == {(ann.config.resolution,) * 2}
    assert [len(idx) for _, idx in chunks] == [ann.config.max_batch] * (len(images) // ann.config.max_batch)
    for img, label, alone in zip(images, together, [ann.annotate([im])[0] for im in images], strict=True):
        assert label.shape == img.shape[:2] and label.dtype == np.float32 and np.isfinite(label).all()
        assert label.std() > 0  # not a constant map
        np.testing.assert_allclose(label, alone, rtol=1e-4, atol=1e-5)
    assert encode_label("depth", together[0]).shape == images[0].shape[:2]


def test_depth_pro_matches_the_processor_and_model_recipe(built, images):
    import torch
    import torch.nn.functional as F
    from transformers import DepthProImageProcessor

    folder, overrides = built("depth_pro")
    ann = build("depth_pro", **overrides)
    image = images[1]
    ours = ann.annotate([image])[0]
    processor = DepthProImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        inverse = ann.model(**processor(images=image, return_tensors="pt")).predicted_depth
    theirs = F.interpolate(inverse[:, None], size=image.shape[:2], mode="bilinear")[0, 0].numpy()
    # Same inverse depth up to the resize kernels (the processor resizes after normalising, without antialias).
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.95
    # The per-image baseline (transformers `pipeline`) runs on the same folder and returns the image's size.
    assert BASELINES["depth_pro"](folder)(image)["predicted_depth"].shape == image.shape[:2]


def test_geometry_runs_the_model_once_per_image_for_both_domains(built, images):
    _, overrides = built("depth_pro_geometry")
    geometry = build("depth_pro_geometry", **overrides)
    seen = []
    geometry.model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(len(kwargs["pixel_values"])),
                                             with_kwargs=True)
    out = geometry({"image": images})
    assert set(out) == {"depth", "normal"} and sum(seen) == len(images)  # one forward per image, not two
    depth_only = build("depth_pro", **overrides).annotate(images)
    for img, depth, normal, same in zip(images, out["depth"], out["normal"], depth_only, strict=True):
        assert depth.shape == img.shape[:2] and normal.shape == (*img.shape[:2], 3)
        np.testing.assert_allclose(depth, same, rtol=1e-4, atol=1e-5)  # the depth is Depth Pro's own
        # Unit normals at network resolution; bilinear resizing back shortens them (encoding renormalises).
        norm = np.linalg.norm(normal, axis=-1)
        assert norm.max() <= 1.0 + 1e-4 and norm.mean() > 0.3
        assert encode_label("normal", normal).shape == (*img.shape[:2], 3)


def _job(*annotators: str):
    from pipeline.config import LabelJobConfig

    return LabelJobConfig(input="in", output="out", annotators=annotators)


def test_multi_domain_annotator_in_the_label_job_stage(built, images):
    """The pipeline stage writes both domains from one call, and a failing image fails in both."""
    _, overrides = built("depth_pro_geometry")
    batch = {
        "id": _column([f"{i:032x}" for i in range(3)]),
        "image": _column([images[0], np.zeros((8, 8, 3), np.float32), images[1]]),
        "error": _column([""] * 3),
        "error_stage": _column([""] * 3),
        "detail": _column([""] * 3),
    }
    out = AnnotateStage([("depth_pro_geometry", overrides)], device="cpu")(batch)
    assert list(out["error"]) == ["", "ValueError", ""] and out["error_stage"][1] == "annotate:depth_pro_geometry"
    assert out["label_depth"][0].shape == images[0].shape[:2]
    assert out["label_normal"][2].shape == (*images[1].shape[:2], 3)
    assert out["label_depth"][1].size == 0 and out["label_normal"][1].size == 0
    assert check_annotators(_job("depth_pro_geometry", "canny")) == ["depth_pro_geometry", "canny"]
    with pytest.raises(PreflightError, match="both produce 'normal'"):
        check_annotators(_job("depth_pro_geometry", "lotus_normal"))


def test_label_job_writes_both_domains_of_a_multi_domain_annotator(built, tmp_path, ray_local):
    """depth_pro_geometry in a real label job: Joint depth and normal files and per-domain provenance."""
    import json

    import pyarrow.parquet as pq
    from PIL import Image

    _, overrides = built("depth_pro_geometry")
    stats, out = label_photos(tmp_path, "depth_pro_geometry", overrides, [(64, 80), (80, 64)])
    assert stats["records_out"] == 2 and stats["per_domain"] == {"depth": 2, "normal": 2}, stats
    for line in (json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()):
        depth, normal = Image.open(out / line["annotation_depth"]), Image.open(out / line["annotation_normal"])
        assert depth.mode == "L" and normal.mode == "RGB" and depth.size == normal.size
    records = [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {(p["domain"], p["annotator"]) for p in records[0]["provenance"]} == {
        ("depth", "depth_pro_geometry"), ("normal", "depth_pro_geometry")}


def test_missing_weights_name_the_model_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"depth_pro: model 'apple/DepthPro-hf@main'.*--model"):
        build("depth_pro")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build("eomt_ade20k", model_id=str(tmp_path / "absent"))


# ----- MoGe-2 -------------------------------------------------------------------------------------


def test_moge2_runs_without_the_moge_package(built, images):
    _, overrides = built("moge2_vitl_normal")  # our own network (annotators/moge_net.py); tests/test_moge2.py
    out = build("moge2_vitl_normal", **overrides)({"image": images[:2]})
    for img, depth, normal in zip(images, out["depth"], out["normal"]):
        assert depth.shape == img.shape[:2] and normal.shape == (*img.shape[:2], 3) and (depth >= 0).all()


# ----- ViTPose + RT-DETR --------------------------------------------------------------------------


def test_coco17_to_openpose18_with_neck_from_the_shoulders():
    from annotators.vitpose import openpose18

    coco = np.zeros((17, 3), np.float32)
    coco[:, 0], coco[:, 1], coco[:, 2] = np.arange(17) * 10, np.arange(17), 1.0
    body = openpose18(coco, 0.3)
    assert len(body) == 18
    assert body[0] == (0.0, 0.0)  # nose
    assert body[1] == (55.0, 5.5)  # neck = mean of COCO shoulders 5 (50, 5) and 6 (60, 6)
    assert body[2] == (60.0, 6.0) and body[5] == (50.0, 5.0)  # OpenPose right shoulder = COCO 6, left = COCO 5
    assert body[14] == (20.0, 2.0) and body[17] == (30.0, 3.0)  # right eye = COCO 2, left ear = COCO 3
    coco[6, 2] = 0.1  # right shoulder not confident: no neck either
    body = openpose18(coco, 0.3)
    assert body[1] is None and body[2] is None and body[5] is not None


def test_vitpose_crops_and_keypoints_match_the_transformers_recipe(built, images):
    import torch
    from transformers import VitPoseImageProcessor
    from transformers.models.vitpose.image_processing_vitpose import box_to_center_and_scale

    folder, overrides = built("vitpose_base")
    ann = build("vitpose_base", **overrides)
    image = images[0]
    boxes = np.array([[10.0, 8.0, 40.0, 60.0], [50.0, 20.0, 25.0, 30.0]], np.float32)
    processor = VitPoseImageProcessor.from_pretrained(folder / "pose")
    theirs = processor(image, boxes=[boxes], return_tensors="pt")["pixel_values"]
    cs = [box_to_center_and_scale(b, processor.size["width"], processor.size["height"]) for b in boxes]
    ours = ann._crops(image, np.stack([c for c, _ in cs]), np.stack([s for _, s in cs]))
    ours = (ours - ann._mean) / ann._std
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 0.02  # bilinear sampling of the same affine map
    with torch.inference_mode():
        kp = ann.keypoints([image], [boxes])[0]
        ref = processor.post_process_pose_estimation(ann.pose(pixel_values=theirs), boxes=[boxes])[0]
    for person, expected in zip(kp, ref, strict=True):
        moved = np.linalg.norm(person[:, :2] - expected["keypoints"].numpy(), axis=1)
        assert np.median(moved) < 1.0  # pixels, in the image


def test_vitpose_draws_openpose_skeletons_and_none_without_people(built, images):
    _, overrides = built("vitpose_base")
    seen = build("vitpose_base", **{**overrides, "person_threshold": 0.0, "keypoint_threshold": 0.0})
    labels = seen.annotate(images)
    for img, label in zip(images, labels, strict=True):
        assert label.shape == img.shape and label.dtype == np.uint8
        lit = label.reshape(-1, 3)[label.reshape(-1, 3).max(axis=1) > 0]
        assert 0 < len(lit) < label.shape[0] * label.shape[1]  # coloured sticks on black
    blind = build("vitpose_base", **{**overrides, "person_threshold": 1.01})
    assert blind.annotate(images[:2]) == [None, None]


# ----- EoMT ---------------------------------------------------------------------------------------


def test_eomt_windows_match_the_processor_split():
    from annotators.eomt import window_starts

    assert window_starts(512, 512) == [0]
    assert window_starts(900, 512) == [0, 388]  # two windows, overlap 124
    assert window_starts(1300, 512) == [0, 394, 788]


def test_eomt_labels_agree_with_the_model_card_recipe(built, images):
    folder, overrides = built("eomt_ade20k")
    ann = build("eomt_ade20k", **overrides)
    labels = ann.annotate(images)
    baseline = BASELINES["eomt_ade20k"](folder)
    for img, label in zip(images, labels, strict=True):
        assert label.shape == img.shape[:2] and label.dtype == np.uint8 and label.max() <= 11
        theirs = ade150_to_12(baseline(img).numpy())
        assert (label == theirs).mean() > 0.8, (label == theirs).mean()


# ----- Qwen3-VL -----------------------------------------------------------------------------------


def test_qwen3_vl_captions_under_its_own_key(built, images):
    _, overrides = built("qwen3_vl_2b")
    ann = build("qwen3_vl_2b", **overrides)
    captions = ann.annotate(images[:3])
    assert ann.config.caption_key == "Qwen3-VL-2B-Instruct"
    assert all(isinstance(c, str) and c.strip() == c and c for c in captions)
    assert ann.annotate(images[:1]) == captions[:1]  # greedy: deterministic, batched == single
