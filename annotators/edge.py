"""controlnet_aux's soft edge networks: PiDiNet (Joint-1.6M's edge annotator), ControlNet's HED, TEED.

Each runs controlnet_aux's nn.Module with the checkpoint controlnet_aux loads, batched on
the device, and returns a float HxW edge probability in [0, 1] (white = edge) at the
input's own size. The bundled offline HED (`hed_bsds`) is another network: annotators/hed.py.

Parity. controlnet_aux's detectors resize each image with `util.resize_image` (short side
to detect_resolution, each side rounded to a multiple of 64, INTER_AREA down / Lanczos up,
on uint8) and the labels come back to the photo's size with a cubic resize. Batching
resizes on the device instead (bilinear + antialias, multiples of 16), which moves edges
by a fraction of a pixel; `parity=True` restores controlnet_aux's exact resizes
(per-size groups on the CPU) and gives its label within 1/255 (tests/test_parity.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import AnnotatorsRepoConfig, annotators_checkpoint, controlnet_aux
from annotators.preprocess import ControlNetAuxParity

# ----- PiDiNet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiDiNetConfig(AnnotatorsRepoConfig):
    filename: str = "table5_pidinet.pth"  # PiDiNet (Su et al., ICCV 2021) Table 5 model, BSDS500
    resolution: int = 512
    multiple_of: int = 16
    # Fold the pixel-difference convolutions into vanilla kernels once at load (Su et al. 2021): same output.
    reparameterize: bool = True
    parity: bool = False  # True: controlnet_aux's per-image resizes (see the module docstring)


class PiDiNetEdge(ControlNetAuxParity, Annotator):
    """PiDiNet soft edges, as Joint-1.6M's edge labels (controlnet_aux `pidi` network, carv4 + CDCM + CSAM)."""

    domain = "edge"

    def __init__(self, config: PiDiNetConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        controlnet_aux("pidinet", "controlnet_aux.pidi.model")
        from controlnet_aux.pidi.model import PiDiNet, config_model, nets

        state = annotators_checkpoint("pidinet", config, config.filename)
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


# ----- ControlNet's HED -----------------------------------------------------------------------


@dataclass(frozen=True)
class ControlNetHEDConfig(AnnotatorsRepoConfig):
    filename: str = "ControlNetHED.pth"  # controlnet_aux HEDdetector's default file
    resolution: int = 512  # HEDdetector's detect_resolution
    multiple_of: int = 16  # four 2x2 pools
    parity: bool = False


class ControlNetHEDEdge(ControlNetAuxParity, Annotator):
    """ControlNet 1.1's HED (`ControlNetHED_Apache2`, lllyasviel's RGB re-training of HED), batched.

    Not the original HED network: an RGB-input VGG-style net with a learned input offset,
    whose five side projections are averaged (not fused by a learned layer) before the sigmoid.
    """

    domain = "edge"

    def __init__(self, config: ControlNetHEDConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        net = controlnet_aux("hed_controlnet", "controlnet_aux.hed").ControlNetHED_Apache2()
        net.load_state_dict(annotators_checkpoint("hed_controlnet", config, config.filename))
        self.net = net.float().eval().to(device)

    def forward(self, x):
        import torch
        import torch.nn.functional as F

        # HEDdetector feeds RGB on 0..255; each side map is resized bilinearly to the input, then averaged.
        sides = [F.interpolate(p.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
                 for p in self.net(x * 255.0)]
        return torch.sigmoid(torch.stack(sides).mean(dim=0))


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
        net = controlnet_aux("teed", "controlnet_aux.teed.ted").TED()
        net.load_state_dict(annotators_checkpoint("teed", config, config.filename))
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
