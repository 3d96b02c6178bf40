"""MMGen's recipe (Wang et al., arXiv 2503.20644) on the same Sana blocks and latent cache as Jodi.

Jodi gives each domain its own tokens, so a sample costs (1 + K) * N tokens. MMGen groups the latent
patches of all domains at one image location into *one* token (paper §3.1 "multi-modal patchify"): each
domain has its own patch embedder, the embeddings are summed (or concatenated and projected) into a token,
and each domain has its own output head, so a sample costs N tokens whatever the number of domains.

Modality decoupling (§3.2): every domain has its own timestep; a condition is a domain at t = 0 (its clean
latent), a domain to generate is noised, an absent domain is dropped. The per-domain timestep embeddings are
summed into the one adaLN condition of the token; per-domain heads see their own timestep. The model takes
the role vector of Jodi (generate / condition / ignore), so the trainer, the sampler and the pipeline drive
it exactly as they drive `Jodi`.

Conditioning is either the caption (cross-attention, as Jodi) or a class label (`num_classes > 0`, DiT's
label embedder with a null class for classifier-free guidance, as MMGen's ImageNet models). REPA (Yu et
al., arXiv 2410.06940 §3): an MLP projector maps the tokens after block `repa_block` to DINOv2 patch
features of the clean image; the trainer adds the negative cosine similarity to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

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
from jodi.roles import CONDITION, GENERATE, IGNORE
from schemas import ALL_DOMAINS

FUSIONS = ("sum", "concat")


@dataclass(frozen=True)
class MMGenConfig:
    """Sizes of one grouped-token model. Width, depth and heads mirror the Jodi presets so the two compare."""

    depth: int
    hidden_size: int
    num_heads: int
    linear_head_dim: int = 32
    in_channels: int = 32  # DC-AE f32c32, the latent cache Jodi uses
    patch_size: int = 1
    num_domains: int = len(ALL_DOMAINS)
    fusion: str = "sum"  # per-domain patch embeddings summed, or concatenated then projected
    num_classes: int = 0  # > 0: class-conditioned (no text); index num_classes is the null class
    caption_channels: int = 2304
    model_max_length: int = 300
    mlp_ratio: float = 2.5
    sample_size: int = 32
    fp32_attention: bool = True
    y_norm_scale: float = 0.01
    repa_block: int = 0  # REPA aligns the output of this block (1-based; 0 = no projector)
    repa_dim: int = 768  # DINOv2-B patch feature width (facebook/dinov2-base model card)
    repa_hidden: int = 2048  # REPA's projector: 3 linears with SiLU, hidden 2048 (REPA §4 "Implementation")
    decoupled_timesteps: bool = True  # always: one timestep per domain is the recipe
    extra_domains: tuple[str, ...] = ()  # names of domains beyond schemas.ALL_DOMAINS (grown by the trainer)

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion={self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if not 0 <= self.repa_block <= self.depth:
            raise ValueError(f"repa_block={self.repa_block} must be in 0..depth ({self.depth})")

    @property
    def domains(self) -> tuple[str, ...]:
        return (*ALL_DOMAINS, *self.extra_domains)[: self.num_domains]


MMGEN_PRESETS: dict[str, MMGenConfig] = {
    # The Jodi-1600M backbone (depth 20, width 2240) over grouped tokens; REPA after block 8 of 20 (REPA §4
    # aligns block 8 of SiT-XL's 28; MMGen follows REPA).
    "mmgen_1600m": MMGenConfig(depth=20, hidden_size=2240, num_heads=20, repa_block=8),
    "mmgen_600m": MMGenConfig(depth=28, hidden_size=1152, num_heads=16, repa_block=8),
    # CPU test size, the text width of `TextEncoder.tiny()`; same width/depth as the `tiny` Jodi preset.
    "mmgen_tiny": MMGenConfig(depth=2, hidden_size=64, num_heads=2, linear_head_dim=16, caption_channels=32,
                              model_max_length=16, sample_size=4, repa_block=1, repa_dim=32, repa_hidden=64),
}


class ReprProjector(nn.Module):
    """REPA's MLP from transformer width to the target encoder's feature width."""

    def __init__(self, hidden_size: int, hidden: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


def per_domain_timesteps(timestep: Tensor, role: Tensor) -> Tensor:
    """(B,) or (B, D) timesteps -> (B, D) with every [C] domain at t = 0 (it is given clean)."""
    t = timestep.float()
    t = t[:, None].expand(role.shape) if t.ndim == 1 else t
    return torch.where(role == CONDITION, torch.zeros_like(t), t)


class MMGen(nn.Module):
    """Grouped multi-modal tokens; the forward contract is `Jodi.forward`'s (plus `return_repa`)."""

    def __init__(self, cfg: MMGenConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = False
        c, d = cfg.hidden_size, cfg.num_domains
        self.x_embedders = nn.ModuleList(PatchEmbed(cfg.in_channels, c, cfg.patch_size) for _ in range(d))
        self.fuse = nn.Linear(d * c, c) if cfg.fusion == "concat" else None
        self.t_embedder = TimestepEmbedder(c)
        self.role_embedder = nn.Embedding(3, c)
        self.domain_embedding = nn.Parameter(torch.zeros(d, c))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        text = cfg.num_classes == 0
        if text:
            self.y_embedder = CaptionEmbedder(cfg.caption_channels, c, cfg.model_max_length)
            self.attention_y_norm = RMSNorm(c, scale_factor=cfg.y_norm_scale)
        else:  # DiT `LabelEmbedder`: the extra row is the null class used for CFG dropout
            self.class_embedder = nn.Embedding(cfg.num_classes + 1, c)
        self.blocks = nn.ModuleList(
            JodiBlock(c, cfg.num_heads, cfg.mlp_ratio, cfg.linear_head_dim, cfg.fp32_attention, cross_attention=text)
            for _ in range(cfg.depth)
        )
        self.final_layers = nn.ModuleList(FinalLayer(c, cfg.patch_size, cfg.in_channels) for _ in range(d))
        self.projector = ReprProjector(c, cfg.repa_hidden, cfg.repa_dim) if cfg.repa_block else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Jodi's (Sana's) scheme, so the two recipes start alike."""
        init_sana_weights(self, self.x_embedders, [self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1]])
        nn.init.normal_(self.role_embedder.weight, std=0.02)
        nn.init.normal_(self.domain_embedding, std=0.02)
        if self.cfg.num_classes:
            nn.init.normal_(self.class_embedder.weight, std=0.02)

    def null_condition(self, y: Tensor) -> Tensor:
        """The class ids / caption the CFG null branch uses for a batch conditioned on `y`."""
        if self.cfg.num_classes:
            return torch.full_like(y, self.cfg.num_classes)
        return self.y_embedder.y_embedding[None, : y.shape[1]].expand(y.shape[0], -1, -1).to(y)

    def _condition(self, y: Tensor, drop: Tensor, y_mask: Tensor | None, dtype) -> tuple:
        """(text tokens or None, text mask or None, class embedding (B, C) or 0)."""
        if self.cfg.num_classes:
            ids = torch.where(drop, torch.full_like(y.long(), self.cfg.num_classes), y.long())
            return None, None, self.class_embedder(ids)
        text = self.attention_y_norm(self.y_embedder(y.to(dtype), drop))
        return text, null_caption_mask(y_mask, drop, text.device), 0

    def forward(
        self,
        x: Tensor,
        timestep: Tensor,
        y: Tensor,
        role: Tensor,
        y_mask: Tensor | None = None,
        clean_x: Tensor | None = None,
        drop_text: Tensor | None = None,
        return_repa: bool = False,
    ):
        """Predict the flow velocity of every domain.

        x: (B, D, C, h, w); timestep: (B,) or (B, D) sigma * 1000 ([C] domains are set to 0 here); y: the
        caption (B, L, caption_channels), or class ids (B,) long when `num_classes > 0`; role: (B, D);
        drop_text: (B,) bool, use the null caption / class. Returns (B, D, C, h, w), detached outside [G];
        with `return_repa`, also the projected tokens after `repa_block`, (B, N, repa_dim).
        """
        b, d, _, h, w = x.shape
        p = self.cfg.patch_size
        if d != self.cfg.num_domains:
            raise ValueError(f"model has {self.cfg.num_domains} domains, input has {d}")
        role = role.long()
        keep = (role != IGNORE)[:, :, None, None]
        emb = domain_patches(self.x_embedders, x, role, clean_x)  # (B, D, N, C)
        emb = emb * keep.to(emb.dtype)  # an absent domain contributes exactly nothing to the grouped token
        n, c = emb.shape[2], emb.shape[3]
        tokens = emb.sum(1) if self.fuse is None else self.fuse(emb.permute(0, 2, 1, 3).reshape(b, n, d * c))
        hp, wp = h // p, w // p
        tokens = tokens + sincos_2d(c, hp, wp, self.cfg.sample_size // p).to(tokens)

        t = per_domain_timesteps(timestep.to(x.device), role)
        te = self.t_embedder(t.reshape(-1)).reshape(b, d, c) + self.role_embedder(role) + self.domain_embedding[None]
        te = te * keep[:, :, 0].to(te.dtype)  # (B, D, C); absent domains' timesteps do not count either
        drop = caption_dropped(role, drop_text)  # perception ignores the caption, as in Jodi
        text, y_mask, cls = self._condition(y, drop, y_mask, tokens.dtype)
        cond = te.sum(1) + cls  # (B, C)
        adaln = self.t_block(cond)[:, None]  # (B, 1, 6C): one token stream
        one = torch.ones(b, 1, dtype=torch.bool, device=x.device)

        x_tok, repa = tokens[:, None], None
        for k, block in enumerate(self.blocks, start=1):
            x_tok = run_block(block, self.gradient_checkpointing, x_tok, text, adaln, y_mask, one, (hp, wp))
            if return_repa and k == self.cfg.repa_block:
                repa = self.projector(x_tok[:, 0])
        heads = te + (cls[:, None] if torch.is_tensor(cls) else 0)  # each head sees its own timestep
        out = torch.stack([layer(x_tok[:, 0], heads[:, i]) for i, layer in enumerate(self.final_layers)], dim=1)
        out = self.unpatchify(out, hp, wp)
        out = torch.where((role == GENERATE)[:, :, None, None, None], out, out.detach())
        if return_repa:
            if self.projector is None:
                raise ValueError("this model has no REPA projector (repa_block=0)")
            return out, repa
        return out

    def unpatchify(self, out: Tensor, hp: int, wp: int) -> Tensor:
        """(B, D, N, p*p*C) -> (B, D, C, hp*p, wp*p)."""
        return unpatchify(out, self.cfg.patch_size, self.cfg.in_channels, hp, wp)


def repa_loss(projected: Tensor, features: Tensor) -> Tensor:
    """REPA's alignment loss per sample, shape (B,): minus the mean over tokens of the cosine similarity
    between projected tokens (B, N, F) and the clean image's DINOv2 patch features (B, N, F)."""
    cos = nn.functional.cosine_similarity(projected.float(), features.float().to(projected.device), dim=-1)
    return -cos.mean(dim=1)
