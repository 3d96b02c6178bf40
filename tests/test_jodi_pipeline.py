"""Codecs, sampler and JodiPipeline end to end on tiny random models loaded through the real from_pretrained paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from jodi.codecs import LatentCodec, TextEncoder
from jodi.model import build_model
from jodi.roles import CONDITION, GENERATE, IGNORE
from jodi.pipeline import JodiPipeline, cover_crop, postprocess, to_tensor
from jodi.sampling import SamplerConfig, roles_for, sample
from schemas import ALL_DOMAINS
from schemas.encoding import decode_normal, palette_only

FAST = SamplerConfig(steps=2)



@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_jodi")


@pytest.fixture(scope="module")
def pipe(folder) -> JodiPipeline:
    return JodiPipeline.tiny(folder=folder)


@pytest.fixture(scope="module")
def photo(sample_images) -> np.ndarray:
    return np.asarray(Image.fromarray(sample_images[1]).resize((120, 90)))  # coffee, 90x120


def test_codecs_load_from_saved_folders(pipe, folder, tmp_path):
    codec = pipe.codec
    assert codec.factor == 32 and codec.scale == pytest.approx(0.41407)
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 32, 2, 3)
    assert codec.decode(z).shape == (2, 3, 64, 96)
    # loading the saved folders again through from_pretrained gives the same models
    assert torch.equal(LatentCodec.from_pretrained(str(folder / "vae"), revision=None).encode(x), z)
    text = TextEncoder.from_pretrained(str(folder / "text"), revision=None, dtype=torch.float32, max_length=16)
    assert torch.equal(text.encode(["a cat"])[0], pipe.text_encoder.encode(["a cat"])[0])
    # a fresh tiny build is seeded (same weights in a new folder) and leaves the caller's RNG alone
    rng = torch.random.get_rng_state()
    assert torch.equal(LatentCodec.tiny(tmp_path / "vae2").encode(x), z)
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_text_encoder_chi_prefix_and_null(pipe):
    te = pipe.text_encoder
    emb, mask = te.encode(["a photo of a cat", "red house"])
    assert emb.shape == (2, 16, 32) and mask.shape == (2, 16)
    assert mask[:, 0].all() and mask[0].sum() > mask[1].sum()  # BOS kept; longer caption -> more tokens
    single, _ = te.encode(["red house"])
    assert torch.allclose(single[0], emb[1], atol=1e-5)  # batching does not change an embedding
    null, null_mask = te.null_embedding(3)
    assert null.shape == (3, 16, 32) and null_mask[0].sum() == 1  # "" is BOS only, no CHI prefix
    # the pipeline stored it as the model's null caption, as Jodi does at load time
    assert torch.allclose(pipe.model.y_embedder.y_embedding, null[0])


def test_sampler_reaches_the_target_of_an_exact_velocity_field():
    """With the true velocity of a point mass at x0, both solvers must land on x0: checks sigma/timestep use."""

    class ExactFlow(nn.Module):
        def __init__(self, x0):
            super().__init__()
            self.x0, self.w = x0, nn.Parameter(torch.zeros(1))

        def forward(self, x, timestep, y, role, y_mask=None, clean_x=None):
            sigma = (timestep / 1000).reshape(-1, 1, 1, 1, 1)
            return (x - self.x0) / sigma.clamp(min=1e-4)

    x0 = torch.randn(1, 2, 4, 3, 3)
    text = (torch.zeros(1, 4, 8), torch.ones(1, 4))
    for solver in ("dpm", "euler"):
        out = sample(ExactFlow(x0), torch.tensor([[GENERATE, GENERATE]]), torch.zeros_like(x0), text, text,
                     SamplerConfig(steps=6, guidance_scale=1.0, solver=solver), torch.Generator().manual_seed(0))
        assert torch.allclose(out, x0, atol=1e-3), solver


def test_conditioned_domain_equals_clean_input_after_sampling():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    clean = torch.randn(1, 8, 32, 2, 2)
    role = torch.tensor([[GENERATE, CONDITION, IGNORE, CONDITION, GENERATE, IGNORE, GENERATE, GENERATE]])
    text = (torch.randn(1, 16, 32), torch.ones(1, 16))
    out = sample(model, role, clean, text, text, FAST, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 1], clean[:, 1]) and torch.equal(out[:, 3], clean[:, 3])
    assert not torch.allclose(out[:, 0], clean[:, 0])
    with pytest.raises(ValueError, match="both condition and generated"):
        roles_for(ALL_DOMAINS, {"depth"}, {"depth"})


def test_joint_generation_outputs_every_domain_in_joint_encodings(pipe):
    out = pipe.joint("a photo of a red house", sampler=FAST, height=100, width=150, seed=1)
    assert list(out) == list(ALL_DOMAINS)
    for domain, array in out.items():
        assert array.dtype == np.uint8 and array.shape[:2] == (100, 150), domain
    assert out["depth"].ndim == 2 and out["depth"].min() == 0 and out["depth"].max() == 255  # min-max
    assert palette_only(out["seg_12colors"])
    assert np.allclose(np.linalg.norm(decode_normal(out["normal"]), axis=-1), 1, atol=1e-3)
    assert (out["edge"][..., 0] == out["edge"][..., 2]).all()  # grey stored as 3 equal channels


def test_same_seed_same_output_other_seed_differs(pipe):
    a = pipe.joint("a cat", generate=["image", "depth"], sampler=FAST, height=64, width=64, seed=3)
    b = pipe.joint("a cat", generate=["image", "depth"], sampler=FAST, height=64, width=64, seed=3)
    c = pipe.joint("a cat", generate=["image", "depth"], sampler=FAST, height=64, width=64, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], c["image"])


def test_controllable_generation_and_perception(pipe, photo):
    depth = photo.mean(axis=-1).astype(np.uint8)
    out = pipe.control("a cup of coffee", {"depth": depth, "segmentation": np.zeros((90, 120, 3), np.uint8)},
                       sampler=FAST)
    assert set(out) == set(ALL_DOMAINS) - {"depth", "seg_12colors"}
    assert out["image"].shape == (90, 120, 3)  # size defaults to the first condition's
    # perception ignores text: the model forces the null caption when the image is a condition
    p1 = pipe("a cat", {"image": photo}, ["depth", "normal"], sampler=SamplerConfig(steps=2, guidance_scale=1.0))
    p2 = pipe.perceive(photo, ["depth", "normal"], sampler=SamplerConfig(steps=2, guidance_scale=1.0))
    assert set(p2) == {"depth", "normal"} and all(np.array_equal(p1[k], p2[k]) for k in p2)


def test_postprocess_and_preprocess_conventions():
    black = -torch.ones(3, 4, 4)
    assert (postprocess("lineart", black) == 0).all()  # black stored pixels = ink
    assert (postprocess("edge", black) == 0).all()
    ramp = torch.linspace(-1, 1, 16).reshape(1, 4, 4).expand(3, 4, 4)
    depth = postprocess("depth", ramp)
    assert depth.min() == 0 and depth.max() == 255 and depth[0, 0] == 0
    seg_color = torch.tensor([250, 130, 5]).float() / 255 * 2 - 1  # near "animal" (255, 127, 0)
    seg = postprocess("seg_12colors", seg_color[:, None, None].expand(3, 2, 2))
    assert (seg == np.array([255, 127, 0], np.uint8)).all()
    grey = to_tensor(np.full((5, 7), 255, np.uint8))
    assert grey.shape == (3, 5, 7) and torch.allclose(grey, torch.ones_like(grey))
    assert cover_crop(torch.rand(3, 90, 120), 64, 96).shape == (3, 64, 96)


def test_cli_generate_tiny(tmp_path, photo):
    from jobs.cli import main

    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    rc = main(["generate", "--tiny", "--perceive", str(tmp_path / "photo.png"), "--labels", "depth,seg",
               "--steps", "1", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth.png", "seg_12colors.png"]
    assert Image.open(out / "depth.png").size == (120, 90)


def test_from_pretrained_with_local_files(pipe, folder, tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "jodi_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in pipe.model.state_dict().items()}, str(weights))
    loaded = JodiPipeline.from_pretrained(str(weights), "tiny", vae=str(folder / "vae"), vae_revision=None,
                                         text_encoder=str(folder / "text"), text_revision=None)
    a = loaded.joint("a cat", generate=["depth"], sampler=FAST, height=64, width=64, seed=5)
    b = pipe.joint("a cat", generate=["depth"], sampler=FAST, height=64, width=64, seed=5)
    assert np.array_equal(a["depth"], b["depth"])
