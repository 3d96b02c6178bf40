"""One way to turn weights on disk into a ready model, for `jodi generate`, `jodi eval` and the pipeline.

A trainer checkpoint folder carries `model.json` (recipe and config: MMGen or Jodi, grown domains, timestep
mode, classes), so a fine-tuned model is rebuilt as it was trained; the released `Jodi.pth` has no such file
and uses the named preset. A LoRA adapter (jodi/lora.py) is applied on top, and merged on request.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from jodi.mmgen import MMGenConfig
from jodi.model import JodiConfig, build_model, load_weights


def config_from_json(path: str | Path):
    """The JodiConfig / MMGenConfig stored in a checkpoint's `model.json`."""
    data = json.loads(Path(path).read_text())
    cls = MMGenConfig if data["recipe"] == "mmgen" else JodiConfig
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items()}
    return cls(**fields)


def checkpoint_config(weights: str | None, preset: str):
    """The config stored beside `weights` (a trainer checkpoint), else the preset's."""
    if weights and "://" not in weights:
        beside = Path(weights).expanduser().parent / "model.json"
        if beside.exists():
            return config_from_json(beside)
    return preset


def load_model(weights: str | None, preset: str, lora: str | None = None, merge: bool = False,
               seed: int = 0) -> nn.Module:
    """Build the model of `weights` (None: random init seeded with `seed`, for smoke runs), then apply the
    LoRA adapter `lora` and merge it when asked. Weights load with strict=True."""
    config = checkpoint_config(weights, preset)
    if weights:  # build on the meta device and adopt the checkpoint's tensors: no wasted random init
        with torch.device("meta"):
            model = build_model(config)
        load_weights(model, weights, assign=True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(config)
    if lora:
        from jodi.lora import load_adapter, merge_lora

        load_adapter(model, lora)
        if merge:
            merge_lora(model)
    return model.requires_grad_(False).eval()
