"""Sampling Jodi with diffusers' flow schedulers and classifier-free guidance (docs/jodi-reference.md#inference).

The solver is not ours: DPM-Solver++ (order 2) in flow mode with flow_shift 3, configured as diffusers'
SanaPipeline does (Jodi uses Sana's Flow-DPM-Solver), or flow-matching Euler. All 1 + K latents are
integrated together; [C] slots are fed clean latents by the model and are replaced by them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from jodi.flow import FLOW_SHIFT, NUM_TRAIN_TIMESTEPS
from jodi.roles import CONDITION, GENERATE, IGNORE

SOLVERS = ("dpm", "euler")


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler settings. Defaults: Jodi's 20 steps and CFG 4.5 for generation (perception: 10 steps, CFG 1)."""

    steps: int = 20
    guidance_scale: float = 4.5
    solver: str = "dpm"
    flow_shift: float = FLOW_SHIFT


PERCEPTION = SamplerConfig(steps=10, guidance_scale=1.0)


def make_scheduler(cfg: SamplerConfig):
    """A fresh diffusers scheduler for one sampling run (schedulers are stateful)."""
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

    if cfg.solver == "dpm":
        return DPMSolverMultistepScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, algorithm_type="dpmsolver++", solver_order=2,
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=cfg.flow_shift,
        )
    if cfg.solver == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=cfg.flow_shift)
    raise ValueError(f"unknown solver {cfg.solver!r}; known: {', '.join(SOLVERS)}")


def guided_velocity(
    model: torch.nn.Module, x: Tensor, sigma: Tensor, role: Tensor, clean_x: Tensor,
    text: tuple[Tensor, Tensor], null: tuple[Tensor, Tensor], guidance_scale: float,
) -> Tensor:
    """v = v_null + s * (v_text - v_null), one batched forward for both branches; s = 1 skips the null branch.

    `text[0]` is a caption embedding, or class ids (B,) for a class-conditioned model. A model trained with
    decoupled timesteps gets one timestep per domain, 0 for its [C] domains (MMGen §3.2).
    """
    b = x.shape[0]
    t = (sigma * NUM_TRAIN_TIMESTEPS).expand(b).to(x.device, torch.float32)
    if getattr(getattr(model, "cfg", None), "decoupled_timesteps", False):
        t = torch.where(role == CONDITION, 0.0, t[:, None].expand(role.shape))
    dtype = next(model.parameters()).dtype
    cast = lambda e: e.to(dtype) if e.is_floating_point() else e  # noqa: E731 - class ids stay integers
    if guidance_scale == 1.0:
        return model(x.to(dtype), t, cast(text[0]), role, text[1], clean_x.to(dtype)).float()
    two = lambda a, c: None if a is None else torch.cat([a, c])  # noqa: E731 - the doubled batch
    v = model(two(x, x).to(dtype), two(t, t), two(*(cast(e) for e in (text[0], null[0]))), two(role, role),
              two(text[1], null[1]), two(clean_x, clean_x).to(dtype)).float()
    v_text, v_null = v.chunk(2)
    return v_null + guidance_scale * (v_text - v_null)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    role: Tensor,
    clean_x: Tensor,
    text: tuple[Tensor, Tensor],
    null: tuple[Tensor, Tensor],
    cfg: SamplerConfig = SamplerConfig(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Integrate the flow from noise to clean latents of every domain.

    role: (B, D) long; clean_x: (B, D, C, h, w) clean latents for [C] domains (anything elsewhere);
    text / null: (embeddings (B, L, C), mask (B, L)) of the prompt and of the empty prompt, or (class ids (B,),
    None) and (null class ids, None) for a class-conditioned model (`MMGen.null_condition`). The noise is
    drawn on the CPU from `generator`, so a seed gives the same result on every device.
    Returns (B, D, C, h, w) float32 latents; [C] slots equal `clean_x` exactly.
    """
    device = clean_x.device
    role = role.to(device)
    scheduler = make_scheduler(cfg)
    scheduler.set_timesteps(cfg.steps, device=device)
    x = torch.randn(clean_x.shape, generator=generator, dtype=torch.float32).to(device)
    text = tuple(None if t is None else t.to(device) for t in text)
    null = tuple(None if t is None else t.to(device) for t in null)
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i]  # the exact noise level; `t` is sigma * 1000 rounded for DPM
        v = guided_velocity(model, x, sigma, role, clean_x, text, null, cfg.guidance_scale)
        x = scheduler.step(v, t, x, return_dict=False)[0]
    is_condition = (role == CONDITION)[:, :, None, None, None]
    return torch.where(is_condition, clean_x.float(), x)


def roles_for(domains: tuple[str, ...], conditions: set[str], generate: set[str]) -> Tensor:
    """(D,) role vector: [C] for `conditions`, [G] for `generate`, [X] for the rest."""
    overlap = conditions & generate
    if overlap:
        raise ValueError(f"domains cannot be both condition and generated: {sorted(overlap)}")
    unknown = (conditions | generate) - set(domains)
    if unknown:
        raise ValueError(f"unknown domains {sorted(unknown)}; the model has: {', '.join(domains)}")
    if not generate:
        raise ValueError("nothing to generate")
    return torch.tensor([CONDITION if d in conditions else GENERATE if d in generate else IGNORE for d in domains])
