"""MoGe-2's network and its geometry, written here so the official checkpoint runs without the `moge` package.

Module names and state-dict keys follow microsoft/MoGe (moge/model/v2.py `MoGeModel`, moge/model/modules.py
`DINOv2Encoder`/`ConvStack`/`ResidualConvBlock`/`Resampler`/`MLP`, and the DINOv2 ViT it vendors from
facebookresearch/dinov2, moge/model/dinov2/models/vision_transformer.py), so `model.pt` ({"model_config",
"model"}) loads with `load_state_dict(strict=True)`. Read top to bottom: the ViT, the encoder that resizes
and projects its features, the conv pyramid, the model, then the focal/shift recovery `infer` uses.

The ViT's sizes (width, depth, MLP width, grid of its position table, register tokens) are read from the
checkpoint's tensors; its head count is width / 64, the head width of every DINOv2 model (dinov2 hubconf:
ViT-S 384/6, B 768/12, L 1024/16, g 1536/24). The backbone name gives the rest: `_reg` models have 4 register
tokens and interpolate their position table with antialiasing and no offset; plain ones with the 0.1 offset
(dinov2 hub/backbones.py `_make_dinov2_model`). ViT-g's SwiGLU MLP is not implemented (no MoGe-2 release uses it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14  # DINOv2 /14 backbones
HEAD_DIM = 64
IMAGE_MEAN = (0.485, 0.456, 0.406)  # DINOv2Encoder.image_mean/std (ImageNet); also stored in the checkpoint
IMAGE_STD = (0.229, 0.224, 0.225)
BACKBONES = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vits14_reg", "dinov2_vitb14_reg",
             "dinov2_vitl14_reg")
MODEL_KEYS = {"encoder", "neck", "points_head", "mask_head", "normal_head", "scale_head", "remap_output",
              "num_tokens_range"}


# ----- the DINOv2 ViT -------------------------------------------------------------------------------


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (DINOv2 hub models use init_values=1.0, hence ls1/ls2)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINOv2 ViT/14; `layers(x, take)` returns the normed tokens after the blocks in `take`."""

    def __init__(self, dim: int, depth: int, hidden: int, grid: int, registers: int, name: str) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training-only; kept for the checkpoint's keys
        self.blocks = nn.ModuleList(Block(dim, max(1, dim // HEAD_DIM), hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.grid, self.registers = grid, registers
        self.reg_variant = name.endswith("_reg")

    def position_table(self, rows: int, cols: int, dtype):
        """The patch position table at rows x cols (bicubic; DinoVisionTransformer.interpolate_pos_encoding)."""
        table = self.pos_embed.float()
        patches = table[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        if (rows, cols) != (self.grid, self.grid):
            if self.reg_variant:
                patches = F.interpolate(patches, size=(rows, cols), mode="bicubic", antialias=True)
            else:  # the 0.1 offset of the original DINO code (facebookresearch/dino issue 8), kept for parity
                scale = ((rows + 0.1) / self.grid, (cols + 0.1) / self.grid)
                patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", antialias=False)
        patches = patches.permute(0, 2, 3, 1).flatten(1, 2)
        return torch.cat([table[:, :1], patches], dim=1).to(dtype)

    def layers(self, x, take: list[int]) -> list:
        rows, cols = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = tokens + self.position_table(rows, cols, tokens.dtype)
        if self.register_tokens is not None:  # registers go after the class token, without positions
            regs = self.register_tokens.expand(len(tokens), -1, -1).to(tokens.dtype)
            tokens = torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)
        out = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in take:
                out.append(self.norm(tokens))
        return out


class DINOv2Encoder(nn.Module):
    """Image in [0, 1] -> (summed 1x1 projections of the chosen layers' patch tokens, last class token)."""

    def __init__(self, backbone: nn.Module, layers: list[int], dim_out: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.layers = layers
        dim = backbone.norm.normalized_shape[0]
        self.output_projections = nn.ModuleList(nn.Conv2d(dim, dim_out, 1) for _ in layers)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1))

    def forward(self, image, rows: int, cols: int):
        x = F.interpolate(image, (rows * PATCH, cols * PATCH), mode="bilinear", align_corners=False, antialias=True)
        outs = self.backbone.layers((x - self.image_mean) / self.image_std, self.layers)
        skip = 1 + self.backbone.registers
        grids = [o[:, skip:].transpose(1, 2).unflatten(2, (rows, cols)) for o in outs]
        return sum(proj(g) for proj, g in zip(self.output_projections, grids)), outs[-1][:, 0]


# ----- the conv pyramid -------------------------------------------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU, "elu": nn.ELU}


def norm2d(kind: str, channels: int) -> nn.Module:
    """modules.py's norm choices: group_norm = groups of 32 channels, layer_norm = one group."""
    if kind == "group_norm":
        return nn.GroupNorm(channels // 32, channels)
    if kind == "layer_norm":
        return nn.GroupNorm(1, channels)
    if kind == "instance_norm":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"MoGe-2: unknown norm {kind!r}")


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")


class ResidualConvBlock(nn.Module):
    def __init__(self, channels: int, hidden: int, activation: str, in_norm: str, hidden_norm: str) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.layers = nn.Sequential(norm2d(in_norm, channels), act(), conv3(channels, hidden),
                                    norm2d(hidden_norm, hidden), act(), conv3(hidden, channels))

    def forward(self, x):
        return x + self.layers(x)


def resampler(kind: str, c_in: int, c_out: int) -> nn.Sequential:
    """A 2x up- (or down-) sampling step; Sequential indices are the checkpoint's key names."""
    if kind == "conv_transpose":
        return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 2, stride=2), conv3(c_out, c_out))
    if kind in ("nearest", "bilinear"):
        up = nn.Upsample(scale_factor=2, mode=kind, align_corners=False if kind == "bilinear" else None)
        return nn.Sequential(up, conv3(c_in, c_out))
    if kind == "pixel_shuffle":
        return nn.Sequential(conv3(c_in, c_out * 4), nn.PixelShuffle(2), conv3(c_out, c_out))
    if kind == "pixel_unshuffle":
        return nn.Sequential(nn.PixelUnshuffle(2), conv3(c_in * 4, c_out))
    if kind in ("avg_pool", "max_pool"):
        return nn.Sequential(conv3(c_in, c_out), (nn.AvgPool2d if kind == "avg_pool" else nn.MaxPool2d)(2, 2))
    raise ValueError(f"MoGe-2: unknown resampler {kind!r}")


def _per_level(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


class ConvStack(nn.Module):
    """Levels at 1x, 2x, 4x ... the token grid: add the level's input, residual blocks, emit, upsample."""

    def __init__(self, dim_in, dim_res_blocks: list[int], dim_out, resamplers, dim_times_res_block_hidden: int = 1,
                 num_res_blocks=1, res_block_in_norm: str = "layer_norm", res_block_hidden_norm: str = "group_norm",
                 activation: str = "relu") -> None:
        super().__init__()
        n = len(dim_res_blocks)
        self.input_blocks = nn.ModuleList(nn.Conv2d(i, d, 1) if i is not None else nn.Identity()
                                          for i, d in zip(_per_level(dim_in, n), dim_res_blocks))
        kinds = _per_level(resamplers, n - 1)
        pairs = zip(kinds, dim_res_blocks, dim_res_blocks[1:])
        self.resamplers = nn.ModuleList(resampler(k, a, b) for k, a, b in pairs)
        self.res_blocks = nn.ModuleList(
            nn.Sequential(*(ResidualConvBlock(d, dim_times_res_block_hidden * d, activation, res_block_in_norm,
                                              res_block_hidden_norm) for _ in range(count)))
            for d, count in zip(dim_res_blocks, _per_level(num_res_blocks, n)))
        self.output_blocks = nn.ModuleList(nn.Conv2d(d, o, 1) if o is not None else nn.Identity()
                                           for o, d in zip(_per_level(dim_out, n), dim_res_blocks))

    def forward(self, inputs: list) -> list:
        outs, x = [], None
        for i, (inp, blocks, emit) in enumerate(zip(self.input_blocks, self.res_blocks, self.output_blocks)):
            feature = inp(inputs[i])
            x = feature if x is None else x + feature
            x = blocks(x)
            outs.append(emit(x))
            if i < len(self.resamplers):
                x = self.resamplers[i](x)
        return outs


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between (Sequential indices 0, 2, 4 ... hold the weights, as modules.py's MLP)."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))


# ----- the model ------------------------------------------------------------------------------------


def view_plane_uv(height: int, width: int, aspect: float, device=None, dtype=None):
    """HxWx2 pixel-centre coordinates spanning +-aspect/diag in x and +-1/diag in y, where diag = sqrt(1 + aspect^2):
    the image plane at focal 1 relative to half the diagonal (geometry_torch.normalized_view_plane_uv)."""
    diag = math.sqrt(1 + aspect**2)
    sx, sy = aspect / diag * (width - 1) / width, 1 / diag * (height - 1) / height
    u = torch.linspace(-sx, sx, width, device=device, dtype=dtype)
    v = torch.linspace(-sy, sy, height, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)


class MoGeNet(nn.Module):
    """`forward(image, num_tokens)` -> {"points", "normal", "mask", "metric_scale"} at the image's size (v2.py)."""

    def __init__(self, backbone: nn.Module, model_config: dict[str, Any]) -> None:
        super().__init__()
        enc = model_config["encoder"]
        take = enc["intermediate_layers"]
        depth = len(backbone.blocks)
        take = list(range(depth - take, depth)) if isinstance(take, int) else list(take)
        self.encoder = DINOv2Encoder(backbone, take, enc["dim_out"])
        self.neck = ConvStack(**model_config["neck"])
        for head in ("points_head", "mask_head", "normal_head"):
            if model_config.get(head) is not None:
                setattr(self, head, ConvStack(**model_config[head]))
        if model_config.get("scale_head") is not None:
            self.scale_head = mlp(model_config["scale_head"]["dims"])
        self.remap_output = model_config.get("remap_output", "linear")
        self.num_tokens_range = list(model_config.get("num_tokens_range", [1200, 3600]))

    def remap_points(self, points):
        """Undo the output parametrisation (v2.py `_remap_points`): points is ...x3."""
        if self.remap_output == "linear":
            return points
        if self.remap_output == "sinh":
            return torch.sinh(points)
        xy, z = points.split([2, 1], dim=-1)
        z = torch.exp(z)
        return torch.cat([xy * z if self.remap_output == "exp" else torch.sinh(xy), z], dim=-1)

    def forward(self, image, num_tokens: int) -> dict:
        b, _, h, w = image.shape
        aspect = w / h
        rows, cols = round((num_tokens / aspect) ** 0.5), round((num_tokens * aspect) ** 0.5)
        features, cls_token = self.encoder(image, rows, cols)
        # Every pyramid level also gets the view-plane UV at its own size (the aspect ratio as input).
        inputs = []
        for level in range(5):
            uv = view_plane_uv(rows * 2**level, cols * 2**level, aspect, image.device, features.dtype)
            uv = uv.permute(2, 0, 1)[None].expand(b, -1, -1, -1)
            inputs.append(torch.cat([features, uv], dim=1) if level == 0 else uv)
        pyramid = self.neck(inputs)
        out = {}
        for key in ("points", "normal", "mask"):
            head = getattr(self, f"{key}_head", None)
            if head is not None:
                out[key] = F.interpolate(head(pyramid)[-1], (h, w), mode="bilinear", align_corners=False)
        if "points" in out:
            out["points"] = self.remap_points(out["points"].permute(0, 2, 3, 1))
        if "normal" in out:
            out["normal"] = F.normalize(out["normal"].permute(0, 2, 3, 1), dim=-1)
        if "mask" in out:
            out["mask"] = out["mask"][:, 0].sigmoid()
        if hasattr(self, "scale_head"):
            out["metric_scale"] = self.scale_head(cls_token)[:, 0].exp()
        return out


def build_net(model_config: dict[str, Any], state: dict[str, Any]) -> MoGeNet:
    """MoGeNet for a checkpoint's config and tensors; the ViT's sizes come from the tensors (module docstring)."""
    unknown = set(model_config) - MODEL_KEYS
    if unknown:
        raise ValueError(f"MoGe-2: model_config has keys this network does not implement: {sorted(unknown)}")
    name = model_config["encoder"]["backbone"]
    if name not in BACKBONES:
        raise ValueError(f"MoGe-2: backbone {name!r} is not implemented (known: {', '.join(BACKBONES)})")
    dim = state["encoder.backbone.cls_token"].shape[-1]
    depth = len({k.split(".")[3] for k in state if k.startswith("encoder.backbone.blocks.")})
    hidden = state["encoder.backbone.blocks.0.mlp.fc1.weight"].shape[0]
    grid = math.isqrt(state["encoder.backbone.pos_embed"].shape[1] - 1)
    regs = state["encoder.backbone.register_tokens"].shape[1] if "encoder.backbone.register_tokens" in state else 0
    net = MoGeNet(VisionTransformer(dim, depth, hidden, grid, regs, name), model_config)
    net.load_state_dict(state, strict=True)
    return net.eval()


# ----- focal and shift from the point map ------------------------------------------------------------------


def recover_focal_shift(points, mask=None, size: tuple[int, int] = (64, 64)):
    """Per image, the focal (relative to half the diagonal) and z shift that make the affine point map a
    pinhole projection: min over shift of |f * xy / (z + shift) - uv|^2, f in closed form for each shift.

    points: BxHxWx3, mask: BxHxW bool or None -> (focal B, shift B) float tensors. As upstream
    (geometry_torch.recover_focal_shift + geometry_numpy.solve_optimal_focal_shift, MoGe's recipe):
    nearest-neighbour downsample to 64x64, Levenberg-Marquardt from shift 0 with ftol 1e-3, and
    focal 1, shift 0 when fewer than 2 valid samples remain.
    """
    from scipy.optimize import least_squares

    b, h, w, _ = points.shape
    uv = view_plane_uv(h, w, w / h, points.device, torch.float32)
    pts = F.interpolate(points.float().permute(0, 3, 1, 2), size, mode="nearest").permute(0, 2, 3, 1).cpu().numpy()
    uv = F.interpolate(uv.permute(2, 0, 1)[None], size, mode="nearest")[0].permute(1, 2, 0).cpu().numpy()
    keep = (np.ones((b, *size), bool) if mask is None
            else F.interpolate(mask.float()[:, None], size, mode="nearest")[:, 0].cpu().numpy() > 0)
    focals, shifts = [], []
    for i in range(b):
        xy, z, target = pts[i][keep[i]][:, :2], pts[i][keep[i]][:, 2], uv[keep[i]]
        if len(z) < 2:
            focals.append(1.0)
            shifts.append(0.0)
            continue

        def focal_for(shift, xy=xy, z=z, target=target):
            proj = xy / (z + shift)[:, None]
            return proj, (proj * target).sum() / np.square(proj).sum()

        def residual(s, target=target):
            proj, f = focal_for(s[0])
            return (f * proj - target).ravel()

        shift = float(least_squares(residual, x0=[0.0], ftol=1e-3, method="lm").x[0])
        focals.append(float(focal_for(shift)[1]))
        shifts.append(shift)
    return (torch.tensor(focals, device=points.device), torch.tensor(shifts, device=points.device))
