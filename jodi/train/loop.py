"""The per-worker training loop, written against a small `Session` so the same code runs
under Ray Train (jodi/train/runner.py) and in one process (tests, the benchmark).

Objective (docs/jodi-reference.md#objective): flow matching with target v = noise - x0,
one logit-normal timestep per sample shifted with s = 3, x_t built for all domains,
[C] domains fed clean. The loss is the mean squared error over the *generated*
domains only (paper Eq. 3 sums over [G] domains); the reference code's `mean_flat`
averages over all 1+K domains instead, i.e. its loss is ours times (#[G] / (1+K)).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from jodi.flow import add_noise, logit_normal_sigmas, velocity_target
from jodi.mmgen import repa_loss
from jodi.roles import CONDITION, GENERATE
from jodi.train.ckpt import build_initial_model, load_checkpoint, restore_rng, rng_state, save_checkpoint, set_null_caption
from jodi.train.config import TrainConfig
from jodi.train.data import Batch, Collator, bucketed_batches
from jodi.train.metrics import MetricsWindow, format_line


class Session(Protocol):
    """What the loop needs from its runner (Ray Train or a local stand-in)."""

    rank: int
    world_size: int
    device: torch.device

    def rows(self, epoch: int) -> Iterable[dict]: ...
    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...
    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]: ...
    def resume_dir(self) -> contextlib.AbstractContextManager[Path | None]: ...
    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None: ...
    def log(self, record: dict, history: list[dict], line: str) -> None: ...


# ---------------------------------------------------------------- pieces


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "came":
        try:
            from came_pytorch import CAME
        except ImportError as exc:  # optional: the reference's optimizer, not needed for AdamW runs
            raise ImportError("optimizer 'came' needs the came-pytorch package: pip install came-pytorch") from exc
        betas = tuple(cfg.betas) if len(cfg.betas) == 3 else (0.9, 0.999, 0.9999)  # Sana/Jodi CAME betas
        return CAME(params, lr=cfg.lr, betas=betas, eps=(1e-30, 1e-16), weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas[:2]), weight_decay=cfg.weight_decay)


def build_scheduler(cfg: TrainConfig, optimizer):
    """Constant learning rate after a linear warm-up (reference `constant_with_warmup`)."""
    from diffusers.optimization import get_constant_schedule_with_warmup

    return get_constant_schedule_with_warmup(optimizer, num_warmup_steps=cfg.warmup_steps)


def draw_sigmas(batch: Batch, generator: torch.Generator, flow_shift: float, decoupled: bool) -> torch.Tensor:
    """Noise levels: (B,) one per sample (Jodi), or (B, D) one per domain with [C] domains at 0 (modality
    decoupling, MMGen §3.2: every domain is drawn from the same logit-normal, independently)."""
    b, d = batch.role.shape
    if not decoupled:
        return logit_normal_sigmas(b, generator, shift=flow_shift)
    sigma = logit_normal_sigmas(b * d, generator, shift=flow_shift).reshape(b, d)
    return torch.where(batch.role.cpu() == CONDITION, 0.0, sigma)


def flow_loss(model, batch: Batch, generator: torch.Generator, flow_shift: float,
              repa_weight: float = 0.0) -> torch.Tensor:
    """Per-sample loss, shape (B,): flow matching over the generated domains, plus `repa_weight` times
    REPA's negative cosine similarity (arXiv 2410.06940 Eq. 8) when the batch carries DINOv2 features.
    Noise and timesteps come from `generator` (CPU) so a resumed run draws the same numbers."""
    x0 = batch.x0
    decoupled = bool(getattr(unwrap(model).cfg, "decoupled_timesteps", False))
    sigma = draw_sigmas(batch, generator, flow_shift, decoupled).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = add_noise(x0, noise, sigma)
    condition = batch.y if batch.labels is None else batch.labels
    repa = bool(repa_weight)
    out = model(x_t, sigma * 1000, condition, batch.role, y_mask=batch.y_mask, clean_x=x0,
                drop_text=batch.drop_text, **({"return_repa": True} if repa else {}))
    pred, projected = out if repa else (out, None)
    generated = (batch.role == GENERATE)[:, :, None, None, None].to(torch.float32)
    se = (pred.float() - velocity_target(x0, noise).float()) ** 2 * generated
    per_domain = x0[0, 0].numel()
    loss = se.flatten(1).sum(1) / (generated.flatten(1).sum(1) * per_domain).clamp(min=1)
    if repa:
        if batch.dino is None:
            raise ValueError("repa_weight > 0 needs batches with DINOv2 features (cache with --dino)")
        loss = loss + repa_weight * repa_loss(projected, batch.dino)
    return loss


def train_step(model, optimizer, scheduler, batch: Batch, generator, cfg: TrainConfig) -> torch.Tensor:
    """One optimisation step; returns the detached per-sample losses."""
    device = batch.x0.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
        per_sample = flow_loss(model, batch, generator, cfg.flow_shift, cfg.repa_weight)
    loss = per_sample.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip and cfg.grad_clip > 0:
        if hasattr(model, "clip_grad_norm_"):  # FSDP shards the gradients: it must compute the norm itself
            model.clip_grad_norm_(cfg.grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return per_sample.detach()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def synced_batches(session: Session, batches: Iterator[list[dict]]) -> Iterator[tuple[int, list[dict]]]:
    """Yield (index, rows) while *every* worker still has a batch: bucketing gives workers slightly
    different batch counts, and a worker stepping alone would hang the others' gradient all-reduce."""
    for i in range(1 << 62):
        rows = next(batches, None)
        if session.world_size > 1:
            if session.all_reduce([0.0 if rows is None else 1.0], op="min")[0] < 1:
                return
        elif rows is None:
            return
        yield i, rows


# ---------------------------------------------------------------- loop


def run_training(cfg: TrainConfig, session: Session, collator: Collator) -> dict:
    """Train until `max_steps` (or `epochs`), resuming from the session's checkpoint if any.
    Returns the last metrics record."""
    model = build_initial_model(cfg)
    null = collator.null_text[0]
    if hasattr(model, "y_embedder") and tuple(model.y_embedder.y_embedding.shape) == null.shape:
        set_null_caption(model, null)
    if cfg.lora_rank:  # before DDP/FSDP wrapping, so they see the frozen base and the trainable adapters
        from jodi.lora import LoraSettings, add_lora

        add_lora(model, LoraSettings(rank=cfg.lora_rank, alpha=cfg.lora_alpha, train_heads=cfg.lora_train_heads))
    model.gradient_checkpointing = cfg.gradient_checkpointing
    model = session.prepare_model(model)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    ema = None
    if cfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
    np_rng = np.random.default_rng([cfg.seed, session.rank])
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + session.rank)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    history: list[dict] = []
    with session.resume_dir() as folder:
        if folder is not None:
            state, rng, history = load_checkpoint(folder, model, optimizer, scheduler, ema, session.rank)
            if rng is not None:
                restore_rng(rng, np_rng, generator)

    def checkpoint(record: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), model, optimizer, scheduler, ema, dict(state),
                            rng_state(np_rng, generator), session.rank, history)
            session.report(record, Path(tmp))

    window, record = MetricsWindow(), {}
    model.train()
    while state["step"] < cfg.max_steps and (cfg.epochs is None or state["epoch"] < cfg.epochs):
        rows = session.rows(state["epoch"])
        batches = bucketed_batches(rows, cfg.batch_size, cfg.seed, state["epoch"], session.rank, cfg.shuffle_buffer)
        seen = 0
        for index, group in synced_batches(session, batches):
            seen += 1
            if index < state["batch_in_epoch"]:
                continue  # trained on before the resume: same order, so skip without drawing randomness
            if window.samples == 0:  # time from the window's first batch: excludes start-up and resume skipping
                window.started = time.perf_counter()
            batch = collator(group, np_rng).to(session.device)
            per_sample = train_step(model, optimizer, scheduler, batch, generator, cfg)
            if ema is not None:
                ema.update_parameters(unwrap(model))
            state["step"] += 1
            state["batch_in_epoch"] = index + 1
            window.add(per_sample.float().cpu().tolist(), batch.tasks, batch.x0[:, :, 0].numel())
            done = state["step"] >= cfg.max_steps
            if state["step"] % cfg.log_every == 0 or done:
                totals = session.all_reduce(window.as_vector())
                record = window.summary(totals, state["step"], state["epoch"], scheduler.get_last_lr()[0],
                                        session.world_size)
                history.append(record)
                session.log(record, history, format_line(record, cfg.max_steps))
                window = MetricsWindow()
            if cfg.stop_after_steps is not None and state["step"] >= cfg.stop_after_steps:
                return record  # simulated kill: whatever came after the last checkpoint is lost
            if state["step"] % cfg.checkpoint_every == 0 or done:
                checkpoint(record)
            if done:
                return record
        else:
            if not seen:
                raise ValueError(f"an epoch gave no batch: fewer than batch_size={cfg.batch_size} records per bucket")
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if record and state["step"] % cfg.checkpoint_every:  # the epoch limit ended the run between checkpoints
        checkpoint(record)
    return record
