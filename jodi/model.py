"""The Jodi model: a Sana linear DiT over 1 + K domains with a role switch (arXiv 2505.19084 §3.2).

Every domain (image + K labels, order `schemas.ALL_DOMAINS`) is a 32-channel latent. Each sample gives each
domain a role: 0 = generate [G], 1 = condition [C] (clean latent in), 2 = ignore [X] (absent). One forward
pass predicts the flow velocity of every domain; only [G] outputs carry gradient. `JODI_1600M` reproduces
the released checkpoint's parameter names and shapes exactly, so `Jodi.pth` loads with `strict=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from common.hub import ModelUnavailableError, hub_file
from jodi.blocks import (
    CaptionEmbedder,
    FinalLayer,
    JodiBlock,
    PatchEmbed,
    RMSNorm,
    TimestepEmbedder,
    caption_dropped,
    domain_patches,
    init_sana_weights,
    null_caption_mask,
    run_block,
    sincos_2d,
    unpatchify,
)
from jodi.roles import GENERATE, IGNORE
from schemas import ALL_DOMAINS
from schemas.checkpoint import load_torch_file


@dataclass(frozen=True)
class JodiConfig:
    """Sizes of one Jodi model. Defaults are those of `Jodi_1600M_P1_D20` except depth/width/heads."""

    depth: int
    hidden_size: int
    num_heads: int  # cross-attention heads; self-attention uses hidden_size / linear_head_dim heads
    linear_head_dim: int = 32
    in_channels: int = 32  # DC-AE f32c32 latent channels
    patch_size: int = 1
    num_domains: int = len(ALL_DOMAINS)  # 1 + K, in schemas.ALL_DOMAINS order
    caption_channels: int = 2304  # Gemma-2-2b hidden size
    model_max_length: int = 300
    mlp_ratio: float = 2.5
    sample_size: int = 32  # latent side at 1024 px: the positional-embedding base size
    fp32_attention: bool = True
    y_norm_scale: float = 0.01  # `attention_y_norm` initial gain (Sana `y_norm_scale_factor`)
    # Modality decoupling (MMGen, arXiv 2503.20644 §3): one timestep per domain, a condition is a domain at
    # t = 0. A training and sampling option; it adds no parameter, so the checkpoint layout is unchanged.
    decoupled_timesteps: bool = False
    extra_domains: tuple[str, ...] = ()  # names of domains beyond schemas.ALL_DOMAINS (grown by the trainer)

    @property
    def domains(self) -> tuple[str, ...]:
        """Domain names in model order (the first `num_domains` of schemas.ALL_DOMAINS)."""
        return (*ALL_DOMAINS, *self.extra_domains)[: self.num_domains]


PRESETS: dict[str, JodiConfig] = {
    # Released model (Jodi `Jodi_1600M_P1_D20`, Sana-1600M backbone): ~1636M parameters.
    "jodi_1600m": JodiConfig(depth=20, hidden_size=2240, num_heads=20),
    # Sana-600M backbone (depth 28, width 1152, 16 heads) with Jodi's switch; no released Jodi weights.
    "jodi_600m": JodiConfig(depth=28, hidden_size=1152, num_heads=16),
    # CPU test sizes; text width 32 / 16 tokens match `TextEncoder.tiny()`.
    "tiny": JodiConfig(depth=2, hidden_size=64, num_heads=2, linear_head_dim=16, caption_channels=32,
                       model_max_length=16, sample_size=4),
    "tiny_2": JodiConfig(depth=3, hidden_size=96, num_heads=3, linear_head_dim=16, caption_channels=32,
                         model_max_length=16, sample_size=4),
}


class Jodi(nn.Module):
    """Joint image + label flow model. See `forward` for the contract shared with the trainer."""

    def __init__(self, cfg: JodiConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = False
        c, d = cfg.hidden_size, cfg.num_domains
        self.x_embedders = nn.ModuleList(PatchEmbed(cfg.in_channels, c, cfg.patch_size) for _ in range(d))
        self.t_embedder = TimestepEmbedder(c)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        self.y_embedder = CaptionEmbedder(cfg.caption_channels, c, cfg.model_max_length)
        self.attention_y_norm = RMSNorm(c, scale_factor=cfg.y_norm_scale)
        self.role_embedder = nn.Embedding(3, c)
        self.domain_embedding = nn.Parameter(torch.zeros(d, c))
        self.role_block = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        self.blocks = nn.ModuleList(
            JodiBlock(c, cfg.num_heads, cfg.mlp_ratio, cfg.linear_head_dim, cfg.fp32_attention)
            for _ in range(cfg.depth)
        )
        self.final_layers = nn.ModuleList(FinalLayer(c, cfg.patch_size, cfg.in_channels) for _ in range(d))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Sana's scheme: xavier for linears and patch convs, N(0, 0.02) for the embedding MLPs.

        Label final layers stay xavier-random, not zero (Jodi found this converged
        best, docs/jodi-reference.md#initialisation-from-sana-and-new-domains).
        """
        init_sana_weights(self, self.x_embedders, [self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1],
                                                   self.role_block[1], self.y_embedder.y_proj.fc1,
                                                   self.y_embedder.y_proj.fc2])
        nn.init.normal_(self.role_embedder.weight, std=0.02)
        nn.init.normal_(self.domain_embedding, std=0.02)

    def forward(
        self,
        x: Tensor,
        timestep: Tensor,
        y: Tensor,
        role: Tensor,
        y_mask: Tensor | None = None,
        clean_x: Tensor | None = None,
        drop_text: Tensor | None = None,
    ) -> Tensor:
        """Predict the flow velocity v = noise - x0 of every domain.

        x: (B, D, C, h, w) noisy latents; timestep: (B,) sigma * 1000, or (B, D) one per domain (modality
        decoupling: [C] domains at 0); y: (B, L, caption_channels);
        role: (B, D) long in {0, 1, 2}; y_mask: (B, L), 1 = real token; clean_x: (B, D, C, h, w) clean
        latents for [C] domains (default: x); drop_text: (B,) bool, replace y by the null caption (CFG
        dropout). Perception samples (image is [C]) always use the null caption, as Jodi does.
        Returns (B, D, C, h, w); outputs of [C] and [X] domains are detached.
        """
        b, d, _, h, w = x.shape
        p = self.cfg.patch_size
        if d != self.cfg.num_domains:
            raise ValueError(f"model has {self.cfg.num_domains} domains, input has {d}")
        role = role.long()
        tokens = domain_patches(self.x_embedders, x, role, clean_x)  # (B, D, N, C)
        hp, wp = h // p, w // p
        pos = sincos_2d(self.cfg.hidden_size, hp, wp, self.cfg.sample_size // p).to(tokens)
        keep = role != IGNORE
        tokens = (tokens + pos) * keep[:, :, None, None].to(tokens.dtype)  # [X] tokens start at exactly 0

        r = self.role_embedder(role) + self.domain_embedding[None]  # (B, D, C)
        if timestep.ndim == 2:  # one timestep per domain: the adaLN input is per domain anyway
            t = self.t_embedder(timestep.reshape(-1)).reshape(b, d, -1)  # (B, D, C)
            adaln = self.t_block(t) + self.role_block(r)
        else:
            t = self.t_embedder(timestep)  # (B, C)
            adaln = self.t_block(t)[:, None] + self.role_block(r)  # (B, D, 6C)

        drop = caption_dropped(role, drop_text)
        text = self.attention_y_norm(self.y_embedder(y.to(tokens.dtype), drop))
        y_mask = null_caption_mask(y_mask, drop, text.device)

        for block in self.blocks:
            tokens = run_block(block, self.gradient_checkpointing, tokens, text, adaln, y_mask, keep, (hp, wp))

        cond = (t if t.ndim == 3 else t[:, None]) + r  # final layers use the D-dim t + r_i, not the 6D vector
        out = torch.stack([layer(tokens[:, i], cond[:, i]) for i, layer in enumerate(self.final_layers)], dim=1)
        out = self.unpatchify(out, hp, wp)
        generated = (role == GENERATE)[:, :, None, None, None]
        return torch.where(generated, out, out.detach())

    def unpatchify(self, out: Tensor, hp: int, wp: int) -> Tensor:
        """(B, D, N, p*p*C) -> (B, D, C, hp*p, wp*p)."""
        return unpatchify(out, self.cfg.patch_size, self.cfg.in_channels, hp, wp)


def preset_config(name: str):
    """The config of a preset: a Jodi preset (PRESETS) or a grouped-token MMGen preset (jodi.mmgen)."""
    from jodi.mmgen import MMGEN_PRESETS  # jodi.mmgen builds on this module

    found = {**PRESETS, **MMGEN_PRESETS}
    if name not in found:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(found)}")
    return found[name]


def build_model(preset) -> nn.Module:
    """A randomly initialised model for a preset name or an explicit config (JodiConfig -> Jodi,
    MMGenConfig -> MMGen). Both share the forward contract, so the trainer and sampler take either."""
    from jodi.mmgen import MMGen, MMGenConfig

    cfg = preset_config(preset) if isinstance(preset, str) else preset
    return MMGen(cfg) if isinstance(cfg, MMGenConfig) else Jodi(cfg)


def _resolve(path: str) -> str:
    """Local path, or `hf://<org>/<repo>/<file>[@revision]` downloaded through huggingface_hub."""
    if not path.startswith("hf://"):
        if not Path(path).expanduser().is_file():
            raise ModelUnavailableError(f"Jodi weights: no such file '{path}'")
        return str(Path(path).expanduser())
    spec, _, revision = path[len("hf://"):].partition("@")
    parts = spec.split("/")
    if len(parts) < 3:
        raise ValueError(f"expected hf://<org>/<repo>/<file>[@revision], got {path!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    return hub_file("Jodi weights", repo, filename, revision or None, provide="pass a local file")


def read_state_dict(path: str) -> dict[str, Tensor]:
    """Tensors of a `.safetensors` or `.pth`/`.pt` file (torch.load with weights_only=True).

    Training checkpoints that wrap the weights (`{"state_dict": ...}`, Jodi/Sana style) are unwrapped.
    """
    local = _resolve(path)
    if local.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(local)
    state = load_torch_file(local)  # weights only: a pickle that carries code is refused in one line
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def load_weights(model: Jodi, path: str, strict: bool = True, assign: bool = False) -> None:
    """Load `.pth` / `.safetensors` weights (local or `hf://org/repo/file`) into `model`.

    Keys are the released checkpoint's; a DDP `module.` prefix is stripped. `pos_embed` (a Sana key Jodi
    drops, docs/jodi-reference.md#initialisation-from-sana-and-new-domains) is ignored. `assign=True`
    adopts the loaded tensors, which lets a model built on the meta device (no random init of 1.6B
    parameters) be filled directly.
    """
    state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items() if k != "pos_embed"}
    model.load_state_dict(state, strict=strict, assign=assign)
