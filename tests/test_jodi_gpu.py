"""GPU-only options: xformers cross-attention, bf16 training, FSDP checkpoints. Skipped on CPU machines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from jodi.model import build_model
from jodi.roles import CONDITION, GENERATE, IGNORE

pytestmark = pytest.mark.gpu


def _batch(device, b=2):
    from jodi.train.data import Batch

    g = torch.Generator().manual_seed(0)
    role = torch.tensor([[GENERATE] * 8, [CONDITION, GENERATE, IGNORE, GENERATE, IGNORE, IGNORE, IGNORE, IGNORE]])
    mask = torch.zeros(b, 16, dtype=torch.bool)
    mask[:, :5] = True
    return Batch(x0=torch.randn(b, 8, 32, 8, 8, generator=g), role=role, y=torch.randn(b, 16, 32, generator=g),
                 y_mask=mask, drop_text=torch.tensor([False, True]), tasks=("joint", "controllable"),
                 ids=("a", "b")).to(device)


def test_xformers_and_sdpa_cross_attention_agree(monkeypatch):
    pytest.importorskip("xformers.ops")
    from jodi import blocks

    torch.manual_seed(0)
    attn = blocks.CrossAttention(128, 4).cuda()
    x, y = torch.randn(2, 300, 128, device="cuda"), torch.randn(2, 20, 128, device="cuda")
    mask = torch.zeros(2, 20, dtype=torch.bool, device="cuda")
    mask[0, :7], mask[1, :20] = True, True
    with torch.no_grad():
        fused = attn(x, y, mask)
        monkeypatch.setattr(blocks, "_xformers_ops", lambda: None)
        sdpa = attn(x, y, mask)
    torch.testing.assert_close(fused, sdpa, rtol=1e-3, atol=1e-4)


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32():
    from jodi.train.config import DataSource, TrainConfig
    from jodi.train.loop import build_optimizer, build_scheduler, flow_loss, train_step

    torch.manual_seed(0)
    model = build_model("tiny").cuda()
    batch = _batch("cuda")
    with torch.no_grad():
        fp32 = flow_loss(model, batch, torch.Generator().manual_seed(1), 3.0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = flow_loss(model, batch, torch.Generator().manual_seed(1), 3.0)
    torch.testing.assert_close(bf16.float(), fp32, rtol=5e-2, atol=5e-2)
    cfg = TrainConfig(data=(DataSource("unused"),), bf16=True)
    opt = build_optimizer(cfg, model.parameters())
    losses = train_step(model, opt, build_scheduler(cfg, opt), batch, torch.Generator().manual_seed(2), cfg)
    assert torch.isfinite(losses).all()


def test_fsdp_training_step_and_checkpoint_round_trip(tmp_path):
    """One-process FSDP (NCCL, world size 1): the checkpoint helpers gather the full state dict and a fresh
    FSDP model restored from it continues with the same weights."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from jodi.train.ckpt import load_checkpoint, save_checkpoint
    from jodi.train.config import DataSource, TrainConfig
    from jodi.train.loop import build_optimizer, build_scheduler, train_step

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        cfg = TrainConfig(data=(DataSource("unused"),), strategy="fsdp")
        torch.manual_seed(0)
        model = FSDP(build_model("tiny").cuda(), use_orig_params=True)
        opt = build_optimizer(cfg, model.parameters())
        sched = build_scheduler(cfg, opt)
        train_step(model, opt, sched, _batch("cuda"), torch.Generator().manual_seed(0), cfg)
        save_checkpoint(Path(tmp_path), model, opt, sched, None, {"step": 1}, {}, 0, [])
        torch.manual_seed(1)
        other = FSDP(build_model("tiny").cuda(), use_orig_params=True)
        opt2 = build_optimizer(cfg, other.parameters())
        state, _, _ = load_checkpoint(Path(tmp_path), other, opt2, build_scheduler(cfg, opt2), None, 0)
        assert state["step"] == 1
        with FSDP.summon_full_params(model), FSDP.summon_full_params(other):
            for (n, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
                assert torch.equal(a, b), n
        assert np.isfinite([p.float().sum().item() for p in other.parameters()]).all()
    finally:
        dist.destroy_process_group()
