"""Diffusion-backed annotators (Lotus-D, Marigold, RGB-X) beyond the shared contract
(tests/test_annotator_contract.py): the authors' sampling, resizes and output conventions, on tiny
random-weight models of their real architectures loaded through the hub code path."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from pathlib import Path

from annotators.registry import build, resolve
from schemas.codec import decode_file, encode_file
from schemas.encoding import decode_normal, encode_label
from tests.builders import BASELINES
from tests.builders.tiny import tiny_annotator, tiny_overrides

PRESETS = ["lotus_normal", "lotus_depth", "marigold_normals", "rgbx_albedo", "marigold_albedo"]



@pytest.fixture(scope="module")
def images(sample_images) -> list[np.ndarray]:
    """Three small real photos: two of the same size (one batch of 2) and one of another size."""
    astronaut, coffee = sample_images[0], sample_images[1]
    a = np.ascontiguousarray(astronaut[::6, ::6])  # 86x86
    return [a, np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(coffee[::6, ::6])]  # + 67x100


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, tuple]:
    """Preset -> (folder, overrides) of its tiny checkpoint (shared with the contract test)."""
    return {name: (Path(tiny_overrides(name)["model_id"]), tiny_overrides(name)) for name in PRESETS}


@pytest.fixture(scope="module")
def annotators() -> dict:
    return {name: tiny_annotator(name) for name in PRESETS}


@pytest.fixture(scope="module")
def labels(annotators, images) -> dict[str, list[np.ndarray]]:
    """One batched call per preset, shared by the tests below."""
    return {name: ann.annotate(images) for name, ann in annotators.items()}


@pytest.mark.parametrize("name", PRESETS)
def test_encoded_label_has_joint_format(name, annotators, labels, joint_example):
    domain = annotators[name].domain
    label = labels[name][2]
    data = encode_file(domain, encode_label(domain, label))
    stored = decode_file(data)
    ref = decode_file((next((joint_example / f"annotation_{domain}").glob("*.jpg"))).read_bytes())
    assert stored.shape[:2] == label.shape[:2]
    assert stored.ndim == ref.ndim and stored.dtype == ref.dtype == np.uint8  # depth mode L, others RGB
    if domain == "normal":
        # Ours survive JPEG with the same direction (Lotus stores them as predicted, not unit length).
        back = decode_normal(stored)
        unit = label / np.maximum(np.linalg.norm(label, axis=-1, keepdims=True), 1e-6)
        cos = (back / np.maximum(np.linalg.norm(back, axis=-1, keepdims=True), 1e-6) * unit).sum(axis=-1)
        assert np.median(cos) > 0.99
    if domain == "depth":
        assert stored.min() == 0 and stored.max() >= 250  # per-image min-max, near = bright


def test_lotus_uses_task_switcher_empty_prompt_and_single_step(annotators):
    lotus = annotators["lotus_normal"]
    # [sin(1), sin(0), cos(1), cos(0)]: the "predict annotation" switch of Lotus-D.
    np.testing.assert_allclose(lotus.task_emb.cpu().numpy()[0], [math.sin(1), 0.0, math.cos(1), 1.0], rtol=1e-6)
    assert lotus.unet.config.in_channels == 4 and lotus.unet.config.class_embed_type == "projection"
    assert lotus.prompt_embedding.shape[:2] == (1, 2)  # BOS + EOS of "" without padding
    assert lotus.config.timestep == 999


def test_lotus_depth_checkpoint_without_disparity_is_inverted(checkpoints, labels, images):
    _, overrides = checkpoints["lotus_depth"]
    depth_model = build("lotus_depth", disparity=False, **overrides)
    inverted = depth_model.annotate(images[2:])[0]
    np.testing.assert_allclose(inverted, 1.0 - labels["lotus_depth"][2], atol=1e-5)


def test_lotus_resizes_as_upstream_and_keeps_predicted_lengths(annotators, images):
    """LotusDPipeline: long side to `resolution` (768 in the preset), nearest back, pred stored as is."""
    lotus = annotators["lotus_normal"]
    preset = copy.copy(lotus)
    preset.config = resolve("lotus_normal")[1]
    assert preset.config.resolution == 768
    assert preset.upstream_size((1024, 1280)) == (608, 768) and preset.upstream_size((1916, 1024)) == (768, 408)
    label = lotus.annotate(images[2:])[0]
    norms = np.linalg.norm(label, axis=-1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # not renormalised to unit length
    # Nearest-exact back-resize: every output pixel is one of the working-size predictions.
    h, w = lotus.upstream_size(images[2].shape[:2])
    import torch

    with torch.inference_mode():
        work = lotus.forward(torch.from_numpy(lotus.resize_in(images[2], (h, w))).permute(2, 0, 1)[None])
    values = {tuple(v) for v in np.round(work[0].permute(1, 2, 0).reshape(-1, 3).numpy(), 5)}
    assert {tuple(v) for v in np.round(label.reshape(-1, 3), 5)} <= values


def test_rgbx_resizes_as_the_demo(annotators, images):
    """gradio_demo_rgb2x.py: linearise first, long side to 1000, both sides floored to multiples of 8."""
    rgbx = annotators["rgbx_albedo"]
    full = copy.copy(rgbx)
    full.config = resolve("rgbx_albedo")[1]
    assert full.config.resolution == 1000
    assert full.upstream_size((1024, 1280)) == (800, 1000)  # 1000 * 0.8 = 800
    assert full.upstream_size((1916, 1024)) == (1000, 528)  # int(1000 / 1.871) = 534 -> 528
    # The photo is linearised before it is resized (x^2.2 then resize != resize then x^2.2).
    x = rgbx.resize_in(images[2], (16, 24))
    srgb_first = rgbx.resize_in(images[2], images[2].shape[:2])
    import cv2

    srgb_resized = cv2.resize(images[2].astype(np.float32) / 255.0, (24, 16), interpolation=cv2.INTER_AREA) ** 2.2
    assert srgb_first.max() <= 1.0 and np.abs(x - srgb_resized).max() > 1e-3


def test_rgbx_sampler_follows_the_authors_demo(annotators):
    rgbx = annotators["rgbx_albedo"]
    cfg = rgbx.scheduler.config
    assert cfg.rescale_betas_zero_snr and cfg.timestep_spacing == "trailing" and cfg.prediction_type == "v_prediction"
    assert rgbx.unet.config.in_channels == 8
    assert rgbx.prompt_embedding.shape[1] == 77  # the albedo prompt, padded as SD does
    # Zero terminal SNR with trailing spacing starts at the last training step, from pure noise.
    rgbx.scheduler.set_timesteps(2)
    assert int(rgbx.scheduler.timesteps[0]) == 999


@pytest.mark.parametrize("name", PRESETS)
def test_baseline_runs_per_image(name, checkpoints, images):
    folder, _ = checkpoints[name]
    run = BASELINES[name](folder)
    out = np.asarray(run(images[2]))
    assert out.size > 0 and np.isfinite(out).all()
    assert images[2].shape[:2] == out.shape[-3:-1] or images[2].shape[:2] == out.shape[-2:]


def test_full_size_builders_are_stable_diffusion_2_sized():
    """The full_size=True architectures (for timing) have SD 2's parameter counts; built on the meta device."""
    import torch

    from tests.builders import diffusion as dr

    def millions(module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    with torch.device("meta"):
        assert round(millions(dr._unet(True, in_channels=4))) == 866  # SD 2 UNet: 865.9M
        assert round(millions(dr._vae(True)), 1) == 83.7  # SD VAE: 83.65M
        assert round(millions(dr._text_encoder(True))) == 340  # OpenCLIP ViT-H text tower
