"""Building blocks of the Jodi transformer, smallest first: embeddings -> attention -> Mix-FFN -> block -> final layer.

The architecture is Sana's linear DiT (Xie et al., arXiv 2410.10629) with Jodi's role switch
(arXiv 2505.19084 §3.2; docs/jodi-reference.md#role-switch). Parameter names are those of the released `Jodi.pth`
(docs/jodi-reference.md#released-checkpoint) so loading is a plain `load_state_dict`.

Token layout inside the model: `(B, D, N, C)` = batch, domain, token (row-major over h x w), channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from jodi.roles import CONDITION


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation of PixArt/Sana (`t2i_modulate`): x * (1 + scale) + shift."""
    return x * (1 + scale) + shift


def timestep_embedding(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (B,) float timesteps -> (B, dim), cosines first (DiT/Sana `TimestepEmbedder`)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """(M,) positions -> (M, dim) [sin | cos] with frequencies 1 / 10000^(i / (dim/2)) (MAE/DiT)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos.double()[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim: int, h: int, w: int, base_size: int) -> Tensor:
    """Sana/PixArt `get_2d_sincos_pos_embed` for an h x w grid -> (h*w, dim) float32, row-major tokens.

    Coordinates are scaled to [0, base_size) whatever the grid size (pe_interpolation = 1), so every
    resolution and bucket sees the same range; the first half of the channels encodes the column
    (x) coordinate and the second half the row, as in the reference implementation. Jodi adds this one
    embedding to every domain ("domain-invariant positional embedding", paper §3.2).
    """
    gy = torch.arange(h, dtype=torch.float64) / (h / base_size)
    gx = torch.arange(w, dtype=torch.float64) / (w / base_size)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, xx.reshape(-1)), sincos_1d(dim // 2, yy.reshape(-1))], dim=1)
    return emb.float()


class RMSNorm(nn.Module):
    """RMS norm with a learned gain, computed in fp32 (Sana `RMSNorm`; `attention_y_norm` starts at 0.01)."""

    def __init__(self, dim: int, scale_factor: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((dim,), scale_factor))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).type_as(x)


class PatchEmbed(nn.Module):
    """One domain's patch embedder: Conv2d with kernel = stride = patch (Sana `PatchEmbedMS`, key `proj`)."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, N, hidden)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features -> MLP (keys `mlp.0`, `mlp.2`)."""

    def __init__(self, hidden_size: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class CaptionProjection(nn.Module):
    """timm-style `Mlp` (fc1 -> tanh-GELU -> fc2) from the text encoder width to the model width."""

    def __init__(self, in_features: int, hidden_size: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """Caption projection plus the stored null caption `y_embedding` (L, caption_channels).

    The null caption is a persistent buffer, as in Sana; Jodi overwrites it with the text encoder's
    encoding of "" so CFG and perception use a real empty prompt (docs/jodi-reference.md#text-conditioning).
    """

    def __init__(self, caption_channels: int, hidden_size: int, token_num: int):
        super().__init__()
        self.y_proj = CaptionProjection(caption_channels, hidden_size)
        self.register_buffer("y_embedding", torch.randn(token_num, caption_channels) / caption_channels**0.5)

    def forward(self, y: Tensor, drop: Tensor | None = None) -> Tensor:
        if drop is not None:
            null = self.y_embedding[: y.shape[1]].to(y.dtype)
            y = torch.where(drop[:, None, None], null[None], y)
        return self.y_proj(y)


class LinearAttention(nn.Module):
    """Masked ReLU linear attention over the tokens of all domains (Sana `LiteLA`, Jodi Eq. 4).

    out_i = sum_j v_j (k_j . q_i) / sum_j (k_j . q_i) with q, k = ReLU(.). Keys of ignored [X] tokens
    are zeroed, which removes them from numerator and denominator at once, so ignored domains cannot
    influence anything. Cost is O(N d^2) instead of O(N^2 d). Heads are contiguous 32-channel groups.
    """

    def __init__(self, hidden_size: int, head_dim: int = 32, eps: float = 1e-8, fp32: bool = True):
        super().__init__()
        if hidden_size % head_dim:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of linear_head_dim {head_dim}")
        self.head_dim, self.eps, self.fp32 = head_dim, eps, fp32  # Sana's block passes eps=1e-8
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """x: (B, T, C); keep: (B, T) bool, False for tokens whose keys must not be attended."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, c // self.head_dim, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = F.relu(q), F.relu(k)  # (B, H, T, d)
        if keep is not None:
            k = k * keep[:, None, :, None].to(k.dtype)
        dtype = v.dtype
        if self.fp32:  # Jodi/Sana `fp32_attention`: the sums over thousands of tokens overflow in bf16
            q, k, v = q.float(), k.float(), v.float()
        kv = torch.einsum("bhtd,bhte->bhde", k, v)
        num = torch.einsum("bhtd,bhde->bhte", q, kv)
        den = torch.einsum("bhtd,bhd->bht", q, k.sum(dim=2))
        out = (num / (den[..., None] + self.eps)).to(dtype)
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


class CrossAttention(nn.Module):
    """Multi-head attention from image tokens to text tokens (Sana `MultiHeadCrossAttention`).

    `kv_linear` output is [k | v]. On CUDA with xformers installed it runs xformers' memory-efficient
    attention, as the official code does; otherwise SDPA with a boolean key mask (same result).
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(hidden_size, hidden_size)
        self.kv_linear = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor | None = None) -> Tensor:
        b, t, c = x.shape
        h = self.num_heads
        q = self.q_linear(x).reshape(b, t, h, c // h).transpose(1, 2)
        k, v = self.kv_linear(y).reshape(b, y.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        if _xformers_ops() is not None and q.is_cuda:
            out = _xformers_cross_attention(q, k, v, y_mask)
        else:
            mask = None if y_mask is None else y_mask.bool()[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
        return self.proj(out.reshape(b, t, c))


def _xformers_ops():
    """`xformers.ops` when installed (the official Jodi/Sana code runs cross-attention through it), else None."""
    try:
        import xformers.ops as xops
    except ImportError:
        return None
    return xops


def _xformers_cross_attention(q: Tensor, k: Tensor, v: Tensor, y_mask: Tensor | None) -> Tensor:
    """Memory-efficient attention of xformers, q/k/v (B, H, T, d) -> (B, T, H, d).

    Sana packs the captions into one sequence with a `BlockDiagonalMask` built from the text lengths; an
    additive -inf bias over padded keys gives the same result on the padded batch.
    """
    xops = _xformers_ops()
    q, k, v = (a.transpose(1, 2).contiguous() for a in (q, k, v))
    bias = None
    if y_mask is not None:
        b, tq, h, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[1]
        # xformers wants the bias's last dim padded to a multiple of 8, then sliced back to the key length.
        padded = (lk + 7) // 8 * 8
        full = torch.zeros(b, h, tq, padded, dtype=q.dtype, device=q.device)
        full[..., :lk].masked_fill_(~y_mask.bool()[:, None, None, :], float("-inf"))
        bias = full[..., :lk]
    return xops.memory_efficient_attention(q, k, v, attn_bias=bias)


class ConvLayer(nn.Module):
    """A Conv2d with 'same' padding under the key `conv` (Sana `ConvLayer` without norm/act)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class GLUMBConv(nn.Module):
    """Mix-FFN of Sana: 1x1 conv to 2*hidden (SiLU), depthwise 3x3, GLU with SiLU gate, 1x1 conv (no bias).

    The depthwise conv mixes neighbouring tokens, so the caller runs it on each domain's own h x w grid.
    """

    def __init__(self, hidden_size: int, mlp_hidden: int):
        super().__init__()
        self.inverted_conv = ConvLayer(hidden_size, 2 * mlp_hidden, 1)
        self.depth_conv = ConvLayer(2 * mlp_hidden, 2 * mlp_hidden, 3, groups=2 * mlp_hidden)
        self.point_conv = ConvLayer(mlp_hidden, hidden_size, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B', C, h, w) -> (B', C, h, w)."""
        x = self.depth_conv(F.silu(self.inverted_conv(x)))
        x, gate = x.chunk(2, dim=1)
        return self.point_conv(x * F.silu(gate))


class JodiBlock(nn.Module):
    """One Sana block applied jointly to all domains with per-domain adaLN (docs/jodi-reference.md#role-switch).

    Self-attention and cross-attention see the concatenated (D*N) tokens; the Mix-FFN runs per domain.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, linear_head_dim: int, fp32_attention: bool,
                 cross_attention: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = LinearAttention(hidden_size, linear_head_dim, fp32=fp32_attention)
        # Class-conditioned models (MMGen recipe) have no text to attend to.
        self.cross_attn = CrossAttention(hidden_size, num_heads) if cross_attention else None
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = GLUMBConv(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(
        self, x: Tensor, y: Tensor, adaln: Tensor, y_mask: Tensor | None, keep: Tensor, hw: tuple[int, int]
    ) -> Tensor:
        """x: (B, D, N, C); adaln: (B, D, 6C) = t0 + r0 per domain; keep: (B, D) False for [X] domains."""
        b, d, n, c = x.shape
        mod = self.scale_shift_table[None, None] + adaln.reshape(b, d, 6, c)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod[:, :, :, None].unbind(2)
        a = modulate(self.norm1(x), shift_msa, scale_msa).reshape(b, d * n, c)
        token_keep = keep[:, :, None].expand(b, d, n).reshape(b, d * n)
        x = x + gate_msa * self.attn(a, token_keep).reshape(b, d, n, c)
        if self.cross_attn is not None:
            x = x + self.cross_attn(x.reshape(b, d * n, c), y, y_mask).reshape(b, d, n, c)
        m = modulate(self.norm2(x), shift_mlp, scale_mlp)
        m = m.reshape(b * d, hw[0], hw[1], c).permute(0, 3, 1, 2)
        m = self.mlp(m).permute(0, 2, 3, 1).reshape(b, d, n, c)
        return x + gate_mlp * m


class FinalLayer(nn.Module):
    """Per-domain output head (`T2IFinalLayer`): LayerNorm, modulation by t + r_i, linear to patch pixels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x: (B, N, C); cond: (B, C) -> (B, N, p*p*out)."""
        shift, scale = (self.scale_shift_table[None] + cond[:, None]).unbind(1)
        return self.linear(modulate(self.norm_final(x), shift[:, None], scale[:, None]))


# ----- what both models (Jodi: jodi/model.py, MMGen: jodi/mmgen.py) assemble around the blocks -------------
def domain_patches(x_embedders: nn.ModuleList, x: Tensor, role: Tensor, clean_x: Tensor | None) -> Tensor:
    """(B, D, C, h, w) latents -> (B, D, N, hidden) patch tokens, one embedder per domain. [C] domains see
    their clean latent `clean_x` when given (Jodi's condition inputs; the timestep embedding is unchanged)."""
    if clean_x is not None:
        x = torch.where((role == CONDITION)[:, :, None, None, None], clean_x.to(x.dtype), x)
    return torch.stack([emb(x[:, i]) for i, emb in enumerate(x_embedders)], dim=1)


def caption_dropped(role: Tensor, drop_text: Tensor | None) -> Tensor:
    """(B,) bool: use the null caption. Perception (the image is [C]) always does, as Jodi does; `drop_text`
    adds CFG dropout."""
    drop = role[:, 0] == CONDITION
    return drop if drop_text is None else drop | drop_text.to(drop.device).bool()


def null_caption_mask(y_mask: Tensor | None, drop: Tensor, device) -> Tensor | None:
    """A dropped caption attends to every token of the stored null caption (Jodi `forward`:
    mask = where(force_drop_ids, 1, mask)); an all-padding row would make the softmax NaN."""
    if y_mask is None:
        return None
    y_mask = y_mask.bool().to(device) | drop[:, None]
    y_mask[:, 0] = True
    return y_mask


def run_block(block: nn.Module, checkpointing: bool, *args) -> Tensor:
    """One transformer block, through activation checkpointing when asked for and gradients are on."""
    if checkpointing and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def unpatchify(out: Tensor, patch_size: int, channels: int, hp: int, wp: int) -> Tensor:
    """(B, D, N, p*p*C) per-domain head outputs -> (B, D, C, hp*p, wp*p) latents."""
    b, d, p = out.shape[0], out.shape[1], patch_size
    out = out.reshape(b, d, hp, wp, p, p, channels)
    return torch.einsum("bdhwpqc->bdchpwq", out).reshape(b, d, channels, hp * p, wp * p)


def init_sana_weights(model: nn.Module, x_embedders: nn.ModuleList, small: list[nn.Module]) -> None:
    """Sana's initialisation (Sana `initialize_weights`): xavier for every linear and patch conv, zero
    biases, N(0, 0.02) for the embedding MLPs in `small`
    (docs/jodi-reference.md#initialisation-from-sana-and-new-domains)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for emb in x_embedders:
        nn.init.xavier_uniform_(emb.proj.weight.view(emb.proj.weight.shape[0], -1))
        nn.init.zeros_(emb.proj.bias)
    for lin in small:
        nn.init.normal_(lin.weight, std=0.02)
