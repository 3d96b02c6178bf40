"""The Jodi transformer: checkpoint layout, role semantics, attention maths, save/load, flow and bucket helpers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from jodi.blocks import LinearAttention, sincos_2d
from jodi.buckets import BUCKETS, nearest_bucket
from jodi.codecs import WeightsUnavailableError
from jodi.flow import add_noise, logit_normal_sigmas, predict_x0, shift_sigma, velocity_target
from jodi.model import PRESETS, build_model, load_weights
from jodi.roles import CONDITION, GENERATE, IGNORE
from schemas import ALL_DOMAINS

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "jodi_1600m_state_dict_shapes.json"



@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def inputs(seed: int = 0, b: int = 2, hw: tuple[int, int] = (3, 5)):
    g = torch.Generator().manual_seed(seed)
    cfg = PRESETS["tiny"]
    x = torch.randn(b, cfg.num_domains, cfg.in_channels, *hw, generator=g)
    return dict(
        x=x,
        timestep=torch.tensor([250.0, 900.0][:b]),
        y=torch.randn(b, cfg.model_max_length, cfg.caption_channels, generator=g),
        y_mask=torch.ones(b, cfg.model_max_length),
        clean_x=torch.randn(x.shape, generator=g),
    )


def test_1600m_state_dict_matches_released_checkpoint():
    if not REFERENCE.exists():
        pytest.skip("../shared/reference not present")
    ref = json.loads(REFERENCE.read_text())
    with torch.device("meta"):
        model = build_model("jodi_1600m")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(ours) == sorted(ref)
    assert ours == ref
    assert sum(v.numel() for v in model.state_dict().values()) == pytest.approx(1636.3e6, rel=1e-3)
    # strict loading works: a meta state dict with the reference shapes loads with strict=True
    with torch.device("meta"):
        fresh = build_model("jodi_1600m")
    fresh.load_state_dict({k: torch.empty(s, device="meta") for k, s in ref.items()}, strict=True, assign=True)


def test_600m_preset_is_the_sana_600m_backbone():
    with torch.device("meta"):
        model = build_model("jodi_600m")
    assert len(model.blocks) == 28 and model.blocks[0].attn.qkv.in_features == 1152
    assert len(model.x_embedders) == len(ALL_DOMAINS) == len(model.final_layers)
    with pytest.raises(ValueError, match="known: jodi_1600m"):
        build_model("jodi_9b")


def test_forward_backward_shapes_and_detached_outputs(tiny):
    kw = inputs()
    role = torch.tensor([[GENERATE, CONDITION, IGNORE, GENERATE, IGNORE, CONDITION, GENERATE, GENERATE]] * 2)
    out = tiny(role=role, **kw)
    assert out.shape == kw["x"].shape and torch.isfinite(out).all()
    # gradient flows only through [G] outputs
    for idx, expect_grad in ((0, True), (1, False), (2, False)):
        tiny.zero_grad()
        tiny(role=role, **kw)[:, idx].square().mean().backward()
        grad = sum(p.grad.abs().sum() for p in tiny.parameters() if p.grad is not None)
        assert (grad > 0) == expect_grad, idx
    tiny.zero_grad()


def test_ignored_domain_cannot_change_any_output(tiny):
    kw = inputs()
    role = torch.tensor([[GENERATE, IGNORE, GENERATE, CONDITION, IGNORE, GENERATE, GENERATE, IGNORE]] * 2)
    base = tiny(role=role, **kw)
    for d in (1, 4, 7):
        changed = dict(kw, x=kw["x"].clone(), clean_x=kw["clean_x"].clone())
        changed["x"][:, d] = torch.randn_like(changed["x"][:, d]) * 100
        changed["clean_x"][:, d] += 50
        assert torch.equal(tiny(role=role, **changed), base)
    # sanity: a generated domain's input does reach the others (through the joint attention)
    changed = dict(kw, x=kw["x"].clone())
    changed["x"][:, 2] += 1
    other = tiny(role=role, **changed)
    assert not torch.allclose(other[:, 0], base[:, 0])


def test_condition_domains_read_clean_latents(tiny):
    kw = inputs()
    role = torch.tensor([[GENERATE, CONDITION] + [GENERATE] * 6] * 2)
    base = tiny(role=role, **kw)
    noisy = dict(kw, x=kw["x"].clone())
    noisy["x"][:, 1] = torch.randn_like(noisy["x"][:, 1])
    assert torch.equal(tiny(role=role, **noisy), base)  # [C] input comes from clean_x
    clean = dict(kw, clean_x=kw["clean_x"] + 1)
    assert not torch.allclose(tiny(role=role, **clean)[:, 0], base[:, 0])


def test_text_padding_and_perception_null_caption(tiny):
    kw = inputs()
    role = torch.tensor([[GENERATE] * 8] * 2)
    kw["y_mask"][:, 5:] = 0
    base = tiny(role=role, **kw)
    padded = dict(kw, y=kw["y"].clone())
    padded["y"][:, 5:] = 7.0  # masked text tokens are never attended
    assert torch.allclose(tiny(role=role, **padded), base, atol=1e-6)
    perception = torch.tensor([[CONDITION] + [GENERATE] * 7] * 2)
    other_text = dict(kw, y=torch.randn_like(kw["y"]))
    assert torch.equal(tiny(role=perception, **other_text), tiny(role=perception, **kw))
    dropped = tiny(role=role, drop_text=torch.tensor([True, True]), **other_text)
    assert torch.equal(dropped, tiny(role=role, drop_text=torch.tensor([True, True]), **kw))


def test_linear_attention_equals_quadratic_masked_formula():
    torch.manual_seed(0)
    attn = LinearAttention(32, head_dim=8, eps=1e-8)
    x = torch.randn(2, 10, 32)
    keep = torch.rand(2, 10) > 0.3
    got = attn(x, keep)
    q, k, v = attn.qkv(x).reshape(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)
    w = torch.relu(q) @ torch.relu(k).transpose(-1, -2) * keep[:, None, None, :]  # (B, H, T, T), Paper Eq. 4
    ref = (w @ v) / (w.sum(-1, keepdim=True) + 1e-8)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 10, 32))
    assert torch.allclose(got, ref, atol=1e-5)


def test_positional_embedding_is_resolution_invariant():
    pe = sincos_2d(16, 4, 6, base_size=4)
    assert pe.shape == (24, 16)
    assert torch.allclose(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    # the grid is scaled to [0, base_size): 8x8 at base 4 samples the same positions as 4x4 at even steps
    assert torch.allclose(sincos_2d(16, 8, 8, 4).reshape(8, 8, 16)[::2, ::2], sincos_2d(16, 4, 4, 4).reshape(4, 4, 16))


def test_gradient_checkpointing_gives_same_values_and_grads():
    torch.manual_seed(0)
    model = build_model(replace(PRESETS["tiny"], depth=2))
    kw = inputs(b=1)
    role = torch.tensor([[GENERATE] * 8])
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = ckpt
        out = model(role=role, **kw)
        out.square().mean().backward()
        grads.append((out.detach(), model.blocks[0].attn.qkv.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip(tiny, tmp_path, suffix):
    path = tmp_path / f"jodi{suffix}"
    state = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    if suffix == ".pth":  # training checkpoints wrap the weights and may carry a DDP prefix
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "step": 3}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    torch.manual_seed(123)
    fresh = build_model("tiny").eval()
    kw, role = inputs(), torch.tensor([[GENERATE] * 8] * 2)
    assert not torch.allclose(fresh(role=role, **kw), tiny(role=role, **kw))
    load_weights(fresh, str(path))
    assert torch.equal(fresh(role=role, **kw), tiny(role=role, **kw))
    with torch.device("meta"):  # the fast path JodiPipeline.from_pretrained uses
        adopted = build_model("tiny")
    load_weights(adopted, str(path), assign=True)
    assert torch.equal(adopted.eval()(role=role, **kw), tiny(role=role, **kw))


def test_missing_weights_give_one_line(tiny):
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        load_weights(tiny, "/nonexistent/Jodi.pth")
    with pytest.raises(WeightsUnavailableError, match="huggingface-cli download"):
        load_weights(tiny, "hf://no-such-org/no-such-repo/Jodi.pth")  # offline in tests


def test_flow_helpers():
    assert shift_sigma(0.5, 3.0) == pytest.approx(0.75)
    assert shift_sigma(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]
    x0, noise = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    sigma = torch.tensor([0.0, 0.3, 0.7, 1.0])
    xt = add_noise(x0, noise, sigma)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[3], noise[3])
    assert torch.allclose(predict_x0(xt, velocity_target(x0, noise), sigma), x0, atol=1e-6)
    s1 = logit_normal_sigmas(20000, torch.Generator().manual_seed(0))
    s2 = logit_normal_sigmas(20000, torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and 0 <= s1.min() and s1.max() < 1
    # median of sigmoid(N(0,1)) is 0.5, shifted by 3 -> 0.75
    assert s1.median().item() == pytest.approx(0.75, abs=0.01)


def test_buckets():
    assert len(BUCKETS) == 15
    assert nearest_bucket(1024, 1024) == (1024, 1024)
    assert nearest_bucket(1080, 1920) == (704, 1408)  # 0.5625 -> 0.5
    assert nearest_bucket(4000, 1000) == (2048, 512)
    h, w = nearest_bucket(100, 150, resolution=128)
    assert h % 32 == 0 and w % 32 == 0 and h < w
    for bh, bw in BUCKETS.values():
        assert bh % 32 == 0 and bw % 32 == 0
