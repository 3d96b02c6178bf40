"""A MoGe-2 `-normal` checkpoint in the official format, random weights, and MoGe's per-image recipe as baseline.

`moge2(folder, full_size)` writes `model.pt` = {"model_config", "model"} (what MoGeModel.from_pretrained
reads with torch.load(weights_only=True)) with the official key names, built through our own network
(annotators/moge_net.py). Full size = the model section of microsoft/MoGe configs/train/v2.json
(DINOv2 ViT-L/14, conv neck, points/normal/mask heads, scale MLP; 5 pyramid levels); tiny = the same
layout with a 4-block, 128-wide ViT whose 4x4 position table is interpolated, and narrow convs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# The tiny ViT: width 128 (2 heads of 64), 4 blocks, MLP 256, 4x4 position grid.
TINY_VIT = dict(dim=128, depth=4, hidden=256, grid=4, registers=0)
FULL_VIT = dict(dim=1024, depth=24, hidden=4096, grid=37, registers=0)  # dinov2_vitl14: 518 px / 14 = 37


def model_config(full_size: bool = False) -> dict[str, Any]:
    """The checkpoint's `model_config` (full size: configs/train/v2.json's model section)."""
    widths = [1024, 256, 128, 64, 32] if full_size else [32, 16, 8, 8, 4]
    convs = dict(res_block_in_norm="none" if full_size else "layer_norm", res_block_hidden_norm="none",
                 resamplers=["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"])

    def head(out: int) -> dict:
        return dict(dim_in=widths, dim_out=[None] * 4 + [out], dim_res_blocks=widths, num_res_blocks=[0, 1, 1, 1, 0],
                    **convs)

    vit = FULL_VIT if full_size else TINY_VIT
    return dict(
        encoder=dict(backbone="dinov2_vitl14" if full_size else "dinov2_vits14",
                     intermediate_layers=[5, 11, 17, 23] if full_size else [0, 1, 2, 3], dim_out=widths[0]),
        neck=dict(dim_in=[widths[0] + 2, 2, 2, 2, 2], dim_out=None, dim_res_blocks=widths,
                  num_res_blocks=[0, 2, 2, 2, 0], **convs),
        points_head=head(3), normal_head=head(3), mask_head=head(1),
        scale_head=dict(dims=[vit["dim"], widths[0], widths[0], 1]), remap_output="exp", num_tokens_range=[1200, 3600],
    )


def random_net(full_size: bool = False, seed: int = 0):
    """MoGeNet with random weights (torch's default init; LayerScale at 1, as DINOv2's init_values)."""
    import torch

    from annotators.moge_net import MoGeNet, VisionTransformer

    torch.manual_seed(seed)
    vit = FULL_VIT if full_size else TINY_VIT
    backbone = VisionTransformer(**vit, name="dinov2_vitl14" if full_size else "dinov2_vits14")
    net = MoGeNet(backbone, model_config(full_size))
    with torch.no_grad():  # tokens and positions start at zero; random ones make a non-trivial map
        for p in (backbone.cls_token, backbone.pos_embed):
            p.normal_(std=0.5)
    if not full_size:
        _slanted_plane(net)
    return net.eval()


def _slanted_plane(net, focal: float = 2.0, slant: float = 0.3, noise: float = 0.05) -> None:
    """Make the tiny points head see a slanted plane (plus `noise` x the image-dependent features).

    A random point map is no pinhole projection: its focal/shift fit is ill-posed and depth = z + shift
    lands near 0, where inverse depth amplifies float noise. The last pyramid level gets the view-plane
    UV as input (MoGeNet.forward), so with the neck passing it through and the points head reading
    xy = uv / focal, z = log(3) + slant * u (remap "exp": points = (xy * e^z, e^z)), the map is a
    plane 3 e^{slant u} away seen at `focal`, and the recovery is well posed (shift 0).
    """
    import math

    import torch

    with torch.no_grad():
        for stack in (net.neck, net.points_head):  # the image-dependent path, turned down
            stack.resamplers[-1][1].weight.mul_(noise)
            stack.resamplers[-1][1].bias.mul_(noise)
        uv_in, head_in = net.neck.input_blocks[4], net.points_head.input_blocks[4]
        head_out = net.points_head.output_blocks[4]
        for conv in (uv_in, head_in, head_out):
            conv.weight.zero_()
            conv.bias.zero_()
        uv_in.weight[0, 0] = uv_in.weight[1, 1] = 1.0  # neck channels 0, 1 = u, v
        head_in.weight[:, :, 0, 0] = torch.eye(head_in.weight.shape[0])
        head_out.weight[0, 0] = head_out.weight[1, 1] = 1.0 / focal
        head_out.weight[2, 0] = slant
        head_out.bias[2] = math.log(3.0)


def moge2(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """Write `folder/model.pt`; returns the build() overrides that load it (a local folder, like a hub snapshot)."""
    import torch

    net = random_net(full_size)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model_config": model_config(full_size), "model": net.state_dict()}, folder / "model.pt")
    return {"model_id": str(folder), "num_tokens": 3600 if full_size else 64, "resolution": 512 if full_size else 56}


def moge2_baseline(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
    """MoGe's README usage (`model.infer(image)`), one image per call at its own size, fp32, over the same
    network: forward, focal/shift recovery, metric depth. No batching, no working-size resize."""
    import torch

    from annotators.moge import load_moge
    from annotators.moge_net import recover_focal_shift

    overrides = moge2(folder, full_size) if not (folder / "model.pt").exists() else {}
    net = load_moge("moge2_baseline", str(folder), "model.pt", None)
    tokens = overrides.get("num_tokens", 3600 if full_size else 64)

    def run(image: np.ndarray):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            out = net(x, num_tokens=tokens)
            mask = out["mask"] > 0.5
            _, shift = recover_focal_shift(out["points"], mask)
            depth = (out["points"][..., 2] + shift[:, None, None]) * out["metric_scale"][:, None, None]
            return {"depth": torch.where(mask, depth, torch.inf)[0], "normal": out["normal"][0], "mask": mask[0]}

    return run
