"""LoRA through peft: what trains, adapter files alone, loading onto the base checkpoint, merging; DINOv2 features."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from jodi.codecs import WeightsUnavailableError
from jodi.features import DinoFeatures
from jodi.lora import LoraSettings, add_lora, load_adapter, merge_lora, save_adapter
from jodi.loading import load_model
from jodi.model import build_model
from jodi.roles import CONDITION, GENERATE


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny random Jodi saved as the 'released checkpoint' the adapter goes onto."""
    torch.manual_seed(0)
    model = build_model("tiny")
    path = tmp_path_factory.mktemp("base") / "Jodi.safetensors"
    save_file(model.state_dict(), str(path))
    return str(path)


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 32, 4, 4, generator=g)
    y = torch.randn(2, 16, 32, generator=g)
    role = torch.tensor([[GENERATE] * 8, [CONDITION] + [GENERATE] * 7])
    return x, torch.tensor([300.0, 700.0]), y, role


def _train_lora(released, settings, steps=3):
    model = load_model(released, "tiny").requires_grad_(True).train()
    add_lora(model, settings)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, t, y, role = _batch()
    for _ in range(steps):
        loss = (model(x, t, y, role) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_only_adapters_and_heads_train_and_the_base_stays_put(released):
    base = load_model(released, "tiny").state_dict()
    model = _train_lora(released, LoraSettings(rank=4, train_heads=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("x_embedders", "final_layers")) for n in trainable)
    # every target family got an adapter: self-attention, cross-attention, Mix-FFN 1x1 convs
    for part in ("attn.qkv", "attn.proj", "cross_attn.q_linear", "cross_attn.kv_linear", "cross_attn.proj",
                 "mlp.inverted_conv.conv", "mlp.point_conv.conv"):
        assert any(f"{part}.lora_A" in n for n in trainable), part
    assert not any("depth_conv" in n and "lora" in n for n in trainable)
    state = model.state_dict()
    frozen = [k for k in base if not k.startswith(("x_embedders", "final_layers"))]
    for k in frozen:  # frozen weights sit under `base_layer` when wrapped
        wrapped = k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(base[k], state[wrapped] if wrapped in state else state[k]), k
    assert not torch.equal(base["final_layers.1.linear.weight"], state["final_layers.1.linear.weight"])


def test_adapter_file_alone_loads_onto_the_released_weights_and_merges(released, tmp_path):
    model = _train_lora(released, LoraSettings(rank=4, alpha=8, train_heads=False))
    path = str(tmp_path / "adapter.safetensors")
    save_adapter(model, path)
    with safe_open(path, framework="pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)  # the base weights are not in the file
    x, t, y, role = _batch()
    with torch.no_grad():
        want = model(x, t, y, role)
        loaded = load_model(released, "tiny", lora=path)
        merged = load_model(released, "tiny", lora=path, merge=True)
        plain = load_model(released, "tiny")
        torch.testing.assert_close(loaded(x, t, y, role), want, rtol=0, atol=1e-6)
        torch.testing.assert_close(merged(x, t, y, role), want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(plain(x, t, y, role), want)
    assert set(merged.state_dict()) == set(plain.state_dict())  # merged = the released layout again


def test_an_adapter_that_does_not_fit_fails_with_one_line(released, tmp_path):
    path = str(tmp_path / "plain.safetensors")
    save_file({"w": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a Jodi LoRA adapter"):
        load_adapter(build_model("tiny"), path)
    model = _train_lora(released, LoraSettings(rank=2), steps=1)
    save_adapter(model, path)
    with pytest.raises(ValueError, match="does not fit this model"):
        load_adapter(build_model("tiny_2"), path)


def test_merge_is_exact_on_a_tiny_model():
    torch.manual_seed(3)
    model = build_model("tiny")
    add_lora(model, LoraSettings(rank=2))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # peft starts B at 0; make the adapter do something
    x, t, y, role = _batch()
    with torch.no_grad():
        before = model(x, t, y, role)
        merge_lora(model)
        torch.testing.assert_close(model(x, t, y, role), before, rtol=1e-4, atol=1e-4)
    assert not any("lora" in n for n in model.state_dict())


def test_dinov2_features_through_the_real_loading_code(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=14, image_size=56)
    Dinov2Model(cfg).save_pretrained(tmp_path / "dino")
    dino = DinoFeatures.from_pretrained(str(tmp_path / "dino"))
    images = (torch.rand(2, 40, 60, 3) * 255).to(torch.uint8).numpy()
    feats = dino(images, (2, 3))  # the latent grid of a 64 x 96 bucket
    assert feats.shape == (2, 6, 32) and torch.isfinite(feats).all()
    assert torch.equal(feats, dino(images, (2, 3)))  # deterministic
    with pytest.raises(WeightsUnavailableError, match="dinov2"):
        DinoFeatures.from_pretrained("no-such-org/no-such-dinov2")


def test_jodi_generate_applies_and_merges_an_adapter(released, tmp_path):
    """`jodi generate --weights BASE --lora ADAPTER [--merge-lora]` through the CLI, with the tiny encoders
    saved to folders and loaded like the real ones: both give the same picture, unlike the base alone."""
    import argparse

    import numpy as np
    from PIL import Image

    from jobs import generate
    from jodi.codecs import LatentCodec, TextEncoder

    LatentCodec.tiny(tmp_path / "vae")
    TextEncoder.tiny(tmp_path / "text")
    model = _train_lora(released, LoraSettings(rank=4, train_heads=False))
    save_adapter(model, str(tmp_path / "adapter.safetensors"))
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    pictures = {}
    for name, extra in (("lora", ["--lora", str(tmp_path / "adapter.safetensors")]),
                        ("merged", ["--lora", str(tmp_path / "adapter.safetensors"), "--merge-lora"]),
                        ("base", [])):
        args = parser.parse_args(["--prompt", "a cat", "--labels", "depth", "--steps", "2", "--height", "64",
                                  "--width", "64", "--preset", "tiny", "--weights", released, "--device", "cpu",
                                  "--vae", str(tmp_path / "vae"), "--text-encoder", str(tmp_path / "text"),
                                  "--out", str(tmp_path / name), *extra])
        assert generate.run(args) == 0
        pictures[name] = np.asarray(Image.open(tmp_path / name / "depth.png")).astype(int)
    assert np.abs(pictures["lora"] - pictures["merged"]).max() <= 1
    assert np.abs(pictures["lora"] - pictures["base"]).max() > 1
