"""Class-conditioned sampling (MMGen with a class embedder and a null class) through the same JodiPipeline and
`jodi generate` as text-conditioned models, on a tiny random model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from jodi.codecs import LatentCodec
from jodi.mmgen import MMGEN_PRESETS
from jodi.model import build_model
from jodi.pipeline import JodiPipeline
from jodi.sampling import SamplerConfig

FAST = SamplerConfig(steps=2)
NO_CFG = SamplerConfig(steps=2, guidance_scale=1.0)
SIZE = {"height": 64, "width": 64, "generate": ["image", "depth"]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(MMGEN_PRESETS["mmgen_tiny"], num_classes=3, repa_block=0)
    m = build_model(cfg)
    # DiT's std-0.02 class table barely moves a 2-step sample of an untrained model; a trained table does.
    torch.nn.init.normal_(m.class_embedder.weight, std=1.0)
    return m.eval()


@pytest.fixture(scope="module")
def pipe(model) -> JodiPipeline:
    return JodiPipeline(model, LatentCodec.tiny(), text_encoder=None)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_class_sampling_is_seeded_and_guided_by_the_null_class(pipe):
    one = pipe(class_label=1, sampler=FAST, seed=0, **SIZE)
    assert one["image"].shape == (64, 64, 3) and one["depth"].shape == (64, 64)
    assert _same(one, pipe(class_label=1, sampler=FAST, seed=0, **SIZE))  # deterministic for a seed
    assert not _same(one, pipe(class_label=1, sampler=FAST, seed=1, **SIZE))
    assert not _same(one, pipe(class_label=2, sampler=FAST, seed=0, **SIZE))  # the class matters
    assert not _same(one, pipe(class_label=1, sampler=NO_CFG, seed=0, **SIZE))  # CFG against the null class
    # Unconditional = the null class in both branches, so guidance cannot change it.
    free = pipe(sampler=FAST, seed=0, **SIZE)
    assert _same(free, pipe(sampler=NO_CFG, seed=0, **SIZE)) and not _same(free, one)


def test_class_and_text_conditions_are_not_mixed(pipe):
    with pytest.raises(ValueError, match="class-conditioned"):
        pipe("a cat", sampler=FAST, **SIZE)
    with pytest.raises(ValueError, match="outside the model's classes 0..2"):
        pipe(class_label=3, sampler=FAST, **SIZE)
    text_pipe = JodiPipeline.tiny()
    with pytest.raises(ValueError, match="text-conditioned"):
        text_pipe(class_label=1, sampler=FAST, **SIZE)
    with pytest.raises(ValueError, match="needs a text encoder"):
        JodiPipeline(text_pipe.model, text_pipe.codec, None)


def test_cli_generate_class_label_matches_the_pipeline(pipe, model, tmp_path):
    from jobs.cli import main
    from jodi.train.ckpt import describe_model

    ckpt = tmp_path / "checkpoint_1"
    ckpt.mkdir()
    save_file(model.state_dict(), str(ckpt / "model.safetensors"))
    (ckpt / "model.json").write_text(json.dumps(describe_model(model)))
    out = tmp_path / "out"
    assert main(["generate", "--weights", str(ckpt / "model.safetensors"), "--vae", "tiny", "--class-label", "1",
                 "--labels", "image,depth", "--steps", "2", "--height", "64", "--width", "64", "--device", "cpu",
                 "--out", str(out)]) == 0
    expected = pipe(class_label=1, sampler=SamplerConfig(steps=2), seed=0, **SIZE)
    for domain in ("image", "depth"):
        with Image.open(out / f"{domain}.png") as im:
            assert np.array_equal(np.asarray(im), expected[domain])
