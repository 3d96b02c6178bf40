"""MMGen recipe on tiny configs: grouped tokens, per-domain timesteps, class conditioning, REPA, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from jodi.loading import config_from_json, load_model
from jodi.mmgen import MMGEN_PRESETS, MMGen, MMGenConfig, per_domain_timesteps, repa_loss
from jodi.model import build_model
from jodi.roles import CONDITION, GENERATE, IGNORE, drop_modalities
from jodi.sampling import SamplerConfig, sample
from jodi.train.ckpt import describe_model

TINY = MMGEN_PRESETS["mmgen_tiny"]
CLASSES = dataclasses.replace(TINY, num_classes=5, fusion="concat")


def _inputs(seed=0, b=2, d=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, 32, 4, 6, generator=g)
    y = torch.randn(b, 16, 32, generator=g)
    return x, y, torch.rand(b, d, generator=g) * 1000


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).eval()


@pytest.mark.parametrize("cfg", [TINY, dataclasses.replace(TINY, fusion="concat"), CLASSES], ids=["sum", "concat", "class"])
def test_shapes_and_one_token_per_location(cfg):
    model = _model(cfg)
    x, y, t = _inputs()
    cond = torch.tensor([1, 4]) if cfg.num_classes else y
    role = torch.tensor([[GENERATE] * 8, [CONDITION, GENERATE, IGNORE, GENERATE, IGNORE, IGNORE, IGNORE, IGNORE]])
    out, proj = model(x, t, cond, role, return_repa=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert proj.shape == (2, 4 * 6, cfg.repa_dim)  # N tokens, not (1 + K) * N
    assert isinstance(model, MMGen) and (model.fuse is None) == (cfg.fusion == "sum")


@pytest.mark.parametrize("preset", ["mmgen_tiny", "tiny"])
def test_an_absent_domain_cannot_change_the_others(preset):
    """Latent, timestep and noise of an [X] domain are invisible to every other domain's output."""
    model = _model(preset if preset == "mmgen_tiny" else dataclasses.replace(build_model("tiny").cfg,
                                                                            decoupled_timesteps=True))
    x, y, t = _inputs(1)
    role = torch.tensor([[GENERATE, IGNORE, CONDITION, GENERATE, IGNORE, GENERATE, IGNORE, IGNORE]] * 2)
    x2, t2 = x.clone(), t.clone()
    x2[:, 1] = torch.randn_like(x2[:, 1]) * 10
    t2[:, 1] = 3.0
    with torch.no_grad():
        a, b = model(x, t, y, role), model(x2, t2, y, role)
    kept = [i for i in range(8) if i != 1]
    assert torch.equal(a[:, kept], b[:, kept])


def test_condition_domains_sit_at_t0_and_come_back_unchanged():
    model = _model(CLASSES)
    role = torch.tensor([[CONDITION, GENERATE, GENERATE, CONDITION, IGNORE, IGNORE, IGNORE, IGNORE]])
    t = per_domain_timesteps(torch.tensor([700.0]), role)
    assert t[0].tolist() == [0.0, 700.0, 700.0, 0.0, 700.0, 700.0, 700.0, 700.0]
    clean, _, _ = _inputs(2, b=1)
    ids = torch.tensor([3])
    # a condition's timestep input is ignored (it is forced to 0): any value gives the same prediction
    with torch.no_grad():
        v1 = model(clean, torch.full((1, 8), 500.0), ids, role, clean_x=clean)
        v2 = model(clean, torch.where(role == CONDITION, 999.0, 500.0), ids, role, clean_x=clean)
    assert torch.equal(v1, v2)
    out = sample(model, role, clean, (ids, None), (model.null_condition(ids), None), SamplerConfig(steps=3),
                 torch.Generator().manual_seed(0))
    assert torch.equal(out[:, role[0] == CONDITION], clean[:, role[0] == CONDITION])
    assert not torch.allclose(out[:, 1], clean[:, 1])


def test_jodi_per_domain_timesteps_equal_shared_ones_when_all_equal():
    model = _model("tiny")
    x, y, _ = _inputs(3)
    role = torch.tensor([[GENERATE] * 4 + [IGNORE] * 4, [CONDITION] + [GENERATE] * 7])
    t = torch.tensor([250.0, 800.0])
    with torch.no_grad():
        shared = model(x, t, y, role)
        split = model(x, t[:, None].expand(2, 8), y, role)
    torch.testing.assert_close(shared, split, rtol=0, atol=1e-5)


def test_repa_gradient_reaches_projector_and_blocks_up_to_the_chosen_one_only():
    cfg = dataclasses.replace(TINY, depth=3, repa_block=2)
    model = _model(cfg).train()
    x, y, t = _inputs(4)
    role = torch.zeros(2, 8, dtype=torch.long)
    _, proj = model(x, t, y, role, return_repa=True)
    target = torch.randn(2, 24, cfg.repa_dim)
    loss = repa_loss(proj, target)
    assert loss.shape == (2,) and (loss >= -1).all() and (loss <= 1).all()
    loss.mean().backward()

    def moved(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert moved(model.projector) and moved(model.blocks[0]) and moved(model.blocks[1]) and moved(model.x_embedders)
    assert not moved(model.blocks[2]) and not moved(model.final_layers)
    # the loss is minus the cosine: aligned features give -1
    assert repa_loss(target, 3 * target).allclose(torch.full((2,), -1.0))


def test_same_seed_same_model_and_output_and_checkpoint_round_trip(tmp_path):
    a, b = _model(CLASSES, seed=7), _model(CLASSES, seed=7)
    x, _, t = _inputs(5)
    ids, role = torch.tensor([0, 2]), torch.zeros(2, 8, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(a(x, t, ids, role), b(x, t, ids, role))
    # trainer checkpoint layout: weights + model.json -> load_model rebuilds the same model, strict
    save_file(a.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "model.json").write_text(__import__("json").dumps(describe_model(a)))
    assert config_from_json(tmp_path / "model.json") == CLASSES
    c = load_model(str(tmp_path / "model.safetensors"), "tiny")  # model.json wins over the preset name
    assert isinstance(c, MMGen) and c.cfg == CLASSES
    with torch.no_grad():
        assert torch.equal(a(x, t, ids, role), c(x, t, ids, role))
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(a.state_dict())


def test_class_conditioning_uses_the_null_class_when_dropped():
    model = _model(CLASSES)
    x, _, t = _inputs(6)
    role = torch.zeros(2, 8, dtype=torch.long)
    with torch.no_grad():
        dropped = model(x, t, torch.tensor([1, 2]), role, drop_text=torch.tensor([True, True]))
        null = model(x, t, model.null_condition(torch.tensor([1, 2])), role)
        other = model(x, t, torch.tensor([3, 4]), role)
    assert torch.equal(dropped, null) and not torch.allclose(other, null)


def test_modality_dropout_statistics_and_invariants():
    rng = np.random.default_rng(0)
    roles = np.array([GENERATE, GENERATE, CONDITION, GENERATE, IGNORE, GENERATE, CONDITION, GENERATE])
    out = np.stack([drop_modalities(roles, 0.3, rng) for _ in range(4000)])
    assert (out[:, 0] == GENERATE).all() and (out == GENERATE).any(axis=1).all()
    assert (out[:, 4] == IGNORE).all()  # absent stays absent
    took_part = np.flatnonzero(roles != IGNORE)[1:]  # label domains that were [G] or [C]
    rate = (out[:, took_part] == IGNORE).mean()
    assert 0.25 < rate < 0.33
    before = np.random.default_rng(1)
    assert (drop_modalities(roles, 0.0, before) == roles).all()
    assert before.random() == np.random.default_rng(1).random()  # p = 0 draws nothing


def test_unknown_presets_and_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="known: .*mmgen_tiny"):
        build_model("nope")
    with pytest.raises(ValueError, match="fusion"):
        MMGenConfig(depth=2, hidden_size=64, num_heads=2, fusion="max")
    model = _model(dataclasses.replace(TINY, repa_block=0))
    x, y, t = _inputs()
    with pytest.raises(ValueError, match="no REPA projector"):
        model(x, t, y, torch.zeros(2, 8, dtype=torch.long), return_repa=True)


def test_training_config_builds_the_run_model():
    """No REPA -> no projector (DDP needs every parameter in the graph); Jodi gets the timestep mode."""
    from jodi.train.ckpt import model_config
    from jodi.train.config import DataSource, NewDomain, TrainConfig

    src = (DataSource("unused"),)
    assert model_config(TrainConfig(data=src, preset="mmgen_tiny")).repa_block == 0
    grown = model_config(TrainConfig(data=src, preset="mmgen_tiny", repa_weight=0.5, num_classes=3,
                                     new_domains=(NewDomain("canny", "edge"),)))
    assert (grown.repa_block, grown.num_classes, grown.domains[-1], grown.num_domains) == (1, 3, "canny", 9)
    assert model_config(TrainConfig(data=src, preset="tiny", timesteps="per_domain")).decoupled_timesteps
    with pytest.raises(ValueError, match="mmgen"):
        model_config(TrainConfig(data=src, preset="tiny", num_classes=3))
