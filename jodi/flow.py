"""Rectified-flow helpers shared by the sampler and the trainer (pure functions).

Jodi trains with flow matching (docs/jodi-reference.md#objective): x_t = (1 - sigma) * x0 + sigma * noise,
target v = noise - x0, timesteps drawn logit-normal and shifted with flow_shift s = 3
(sigma' = s * sigma / (1 + (s - 1) * sigma), the SD3/Sana time shift). The model sees sigma' * 1000.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOW_SHIFT = 3.0
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: Tensor | float, shift: float = FLOW_SHIFT) -> Tensor | float:
    """Resolution-dependent time shift of SD3 / Sana: s * sigma / (1 + (s - 1) * sigma); identity at s = 1."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def logit_normal_sigmas(
    n: int, generator: torch.Generator | None = None, shift: float = FLOW_SHIFT, mean: float = 0.0, std: float = 1.0
) -> Tensor:
    """n training noise levels in [0, 1): u = sigmoid(N(mean, std)), quantised to the 1000-step grid
    (index = floor(1000 u), as Jodi's `logit_normal` weighting does), then shifted. float32, shape (n,)."""
    u = torch.sigmoid(torch.randn(n, generator=generator) * std + mean)
    index = torch.floor(u * NUM_TRAIN_TIMESTEPS).clamp(max=NUM_TRAIN_TIMESTEPS - 1)
    return shift_sigma(index / NUM_TRAIN_TIMESTEPS, shift).float()


def _expand(sigma: Tensor, like: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(sigma.shape + (1,) * (like.ndim - sigma.ndim))


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """x_t = (1 - sigma) * x0 + sigma * noise; `sigma` is a scalar or one value per sample (leading dim)."""
    s = _expand(torch.as_tensor(sigma), x0)
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Flow-matching target v = noise - x0 (Jodi `predict_v`, `linear_flow`)."""
    return noise - x0


def predict_x0(x_t: Tensor, v: Tensor, sigma: Tensor | float) -> Tensor:
    """Invert the flow: x0 = x_t - sigma * v."""
    return x_t - _expand(torch.as_tensor(sigma), x_t) * v
