"""Initialisation (Sana, released Jodi, new domains), optimizers and the config/YAML layer."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
import torch
from safetensors.torch import save_file

from jodi.model import Jodi
from jodi.train.ckpt import build_initial_model, model_config
from jodi.train.config import DataSource, NewDomain, TrainConfig
from jodi.train.loop import build_optimizer, build_scheduler

DATA = (DataSource("unused"),)


def _tiny_jodi_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return {k: v.clone() for k, v in Jodi(model_config(cfg)).state_dict().items()}


def _sana_state(jodi: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Sana-shaped state dict: one x_embedder and final_layer, no role/domain parts, plus pos_embed."""
    out = {"pos_embed": torch.zeros(1, 16, 64)}
    for k, v in jodi.items():
        if k.startswith("x_embedders.0."):
            out["x_embedder." + k.split(".", 2)[2]] = v
        elif k.startswith("final_layers.0."):
            out["final_layer." + k.split(".", 2)[2]] = v
        elif not k.startswith(("x_embedders.", "final_layers.", "role_", "domain_embedding")):
            out[k] = v
    return out


def test_init_from_sana_copies_embedder_everywhere_and_image_head_only(tmp_path):
    base = TrainConfig(data=DATA)
    sana = _sana_state(_tiny_jodi_state(base))
    path = tmp_path / "sana.pth"
    torch.save({"state_dict": sana}, path)  # Sana checkpoints wrap the weights
    model = build_initial_model(TrainConfig(data=DATA, init="sana", init_weights=str(path)))
    own = model.state_dict()
    for i in range(8):
        assert torch.equal(own[f"x_embedders.{i}.proj.weight"], sana["x_embedder.proj.weight"])
    final_keys = [k for k in sana if k.startswith("final_layer.")]
    assert all(torch.equal(own["final_layers.0." + k.split(".", 1)[1]], sana[k]) for k in final_keys)
    assert not all(torch.equal(own["final_layers.3." + k.split(".", 1)[1]], sana[k]) for k in final_keys)
    assert all(torch.equal(own[k], v) for k, v in sana.items() if k in own)


def test_init_from_jodi_and_extend_to_new_domain(tmp_path):
    base = TrainConfig(data=DATA)
    state = _tiny_jodi_state(base)
    path = tmp_path / "jodi.safetensors"
    save_file(state, str(path))
    same = build_initial_model(TrainConfig(data=DATA, init="jodi", init_weights=str(path)))
    assert all(torch.equal(same.state_dict()[k], v) for k, v in state.items())

    cfg = TrainConfig(data=DATA, init="jodi", init_weights=str(path), new_domains=(NewDomain("canny", "edge"),))
    model = build_initial_model(cfg)
    own = model.state_dict()
    assert model.cfg.num_domains == 9
    for k in [k for k in own if k.startswith(("x_embedders.8.", "final_layers.8."))]:
        src = k.replace(".8.", ".2.", 1)  # edge is domain 2
        assert torch.equal(own[k], state[src]), k
    assert torch.equal(own["domain_embedding"][:8], state["domain_embedding"])
    with pytest.raises(ValueError, match="copy_from"):
        build_initial_model(TrainConfig(data=DATA, init="jodi", init_weights=str(path),
                                        new_domains=(NewDomain("canny", "sketch"),)))


def test_warmup_then_constant_lr():
    cfg = TrainConfig(data=DATA, lr=1e-3, warmup_steps=4)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(cfg, model.parameters())
    sched = build_scheduler(cfg, opt)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


def test_came_optional():
    cfg = TrainConfig(data=DATA, optimizer="came")
    params = torch.nn.Linear(2, 2).parameters()
    if importlib.util.find_spec("came_pytorch") is None:
        with pytest.raises(ImportError, match="pip install came-pytorch"):
            build_optimizer(cfg, params)
    else:
        assert type(build_optimizer(cfg, params)).__name__ == "CAME"


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="needs init_weights"):
        TrainConfig(data=DATA, init="jodi")
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig(data=DATA, optimizer="sgd")
    from jobs.train import add_arguments, build_config

    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text(
        "data:\n  - path: c1\n    caption_weights: {A: 4, B: 1}\n  - c2\npreset: tiny\nmax_steps: 9\n"
        "new_domains: [{name: canny, copy_from: edge}]\nbetas: [0.9, 0.99]\n"
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = build_config(parser.parse_args(["--config", str(yaml_file), "--max-steps", "3", "--num-workers", "2"]))
    assert cfg.data == (DataSource("c1", (("A", 4.0), ("B", 1.0))), DataSource("c2"))
    assert (cfg.max_steps, cfg.num_workers, cfg.betas) == (3, 2, (0.9, 0.99))
    assert cfg.new_domains == (NewDomain("canny", "edge"),)
    yaml_file.write_text("data: [c1]\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown training config keys"):
        build_config(parser.parse_args(["--config", str(yaml_file)]))


def test_example_yaml_parses():
    from pathlib import Path

    from jobs.train import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    example = Path(__file__).resolve().parents[1] / "examples" / "train.yaml"
    cfg = build_config(parser.parse_args(["--config", str(example)]))
    assert cfg.init == "jodi" and cfg.preset == "jodi_1600m" and cfg.data[0].caption_weights
