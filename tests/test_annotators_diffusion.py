"""Diffusion-backed annotators (Lotus-D, Marigold, RGB-X) on tiny random-weight models of their real
architectures, loaded from disk through the same code path as the hub checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotators.base import AnnotatorConfig
from annotators.loading import ModelUnavailableError
from tests.builders import BASELINES, RANDOM_CHECKPOINTS
from annotators.registry import DOMAIN_DEFAULTS, build, resolve
from schemas.codec import decode_file, encode_file
from schemas.encoding import decode_normal, encode_label

PRESETS = ["lotus_normal", "lotus_depth", "marigold_normals", "rgbx_albedo", "marigold_albedo"]



@pytest.fixture(scope="module")
def images(sample_images) -> list[np.ndarray]:
    """Three small real photos: two of the same size (one batch of 2) and one of another size."""
    astronaut, coffee = sample_images[0], sample_images[1]
    a = np.ascontiguousarray(astronaut[::6, ::6])  # 86x86
    return [a, np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(coffee[::6, ::6])]  # + 67x100


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple]:
    """Preset -> (folder, overrides); Lotus depth and normal share one architecture and folder."""
    root = tmp_path_factory.mktemp("diffusion_ckpt")
    out = {}
    for name in PRESETS:
        folder = root / ("lotus" if name.startswith("lotus") else name)
        write = not (folder / "model_index.json").exists()
        out[name] = (folder, RANDOM_CHECKPOINTS[name](folder, write=write))
    return out


@pytest.fixture(scope="module")
def annotators(checkpoints) -> dict:
    return {name: build(name, **overrides) for name, (_, overrides) in checkpoints.items()}


@pytest.fixture(scope="module")
def labels(annotators, images) -> dict[str, list[np.ndarray]]:
    """One batched call per preset, shared by the tests below."""
    return {name: ann.annotate(images) for name, ann in annotators.items()}


def _check_range(domain: str, label: np.ndarray) -> None:
    assert np.isfinite(label).all()
    if domain == "normal":
        np.testing.assert_allclose(np.linalg.norm(label, axis=-1), 1.0, atol=1e-4)
    else:  # depth (disparity) and albedo are in [0, 1]
        assert label.min() >= 0.0 and label.max() <= 1.0
        assert label.std() > 0  # not a constant image


@pytest.mark.parametrize("name", PRESETS)
def test_labels_have_input_size_dtype_and_range(name, annotators, labels, images):
    domain = annotators[name].domain
    for img, label in zip(images, labels[name]):
        channels = () if domain == "depth" else (3,)
        assert label.shape == img.shape[:2] + channels
        assert label.dtype == np.float32
        _check_range(domain, label)


@pytest.mark.parametrize("name", PRESETS)
def test_batched_equals_per_image_and_is_deterministic(name, annotators, labels, images):
    ann = annotators[name]
    # images[1] ran as the second member of a batch of two; alone it must get the same label.
    alone = ann.annotate([images[1]])[0]
    np.testing.assert_allclose(labels[name][1], alone, atol=1e-3)  # batched kernels differ in float rounding
    np.testing.assert_array_equal(ann.annotate([images[1]])[0], alone)


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
        # Decoded Joint normals are unit vectors; ours survive JPEG with the same direction.
        cos = (decode_normal(stored) * label).sum(axis=-1)
        assert np.median(cos) > 0.99
    if domain == "depth":
        assert stored.min() == 0 and stored.max() >= 250  # per-image min-max, near = bright


@pytest.mark.parametrize("name", PRESETS)
def test_missing_weights_give_the_one_line_error(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        build(name, model_id="no-such-org/no-such-model-h1b")
    msg = str(err.value)
    assert "no-such-org/no-such-model-h1b" in msg and "huggingface-cli download" in msg and "\n" not in msg


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


def test_rgbx_sampler_follows_the_authors_demo(annotators):
    rgbx = annotators["rgbx_albedo"]
    cfg = rgbx.scheduler.config
    assert cfg.rescale_betas_zero_snr and cfg.timestep_spacing == "trailing" and cfg.prediction_type == "v_prediction"
    assert rgbx.unet.config.in_channels == 8
    assert rgbx.prompt_embedding.shape[1] == 77  # the albedo prompt, padded as SD does
    # Zero terminal SNR with trailing spacing starts at the last training step, from pure noise.
    rgbx.scheduler.set_timesteps(2)
    assert int(rgbx.scheduler.timesteps[0]) == 999


def test_registry_defaults_and_presets():
    assert DOMAIN_DEFAULTS["normal"] == "lotus_normal" and DOMAIN_DEFAULTS["albedo"] == "rgbx_albedo"
    for name in PRESETS:
        cls, config = resolve(name)
        assert isinstance(config, AnnotatorConfig) and config.model_id and config.revision
        assert cls.domain in ("normal", "depth", "albedo")
    assert resolve("lotus_depth")[1].model_id == "jingheya/lotus-depth-d-v2-0-disparity"


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
