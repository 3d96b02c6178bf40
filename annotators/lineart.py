"""Line-drawing annotators: Informative Drawings (Joint-1.6M's lineart) and the anime lineart U-Net.

Both are controlnet_aux's nn.Modules with the checkpoints controlnet_aux loads from
lllyasviel/Annotators, run batched on the device. The networks draw dark lines on
white; ControlNet's detectors invert that to white on black. Our output is ink
strength in [0, 1] (1 = line), which `schemas.encoding.encode_lineart` stores
black on white as Joint does (README.md, "What the job writes").

Parity: controlnet_aux's `LineartDetector` resizes with `util.resize_image` (multiples of 64,
INTER_AREA down / Lanczos up) and the label comes back to the photo's size with a cubic resize;
batching resizes on the device (bilinear + antialias, multiples of 8) instead. `parity=True`
restores the detector's resizes (tests/test_parity.py checks the label to 1/255).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.base import Annotator
from annotators.loading import AnnotatorsRepoConfig, annotators_checkpoint, controlnet_aux
from annotators.preprocess import ControlNetAuxParity


@dataclass(frozen=True)
class InformativeDrawingsConfig(AnnotatorsRepoConfig):
    """Informative Drawings (Chan et al., CVPR 2022) generator: ControlNet 1.1 "lineart_realistic"."""

    filename: str = "sk_model.pth"  # "sk_model2.pth" is the coarse variant
    resolution: int = 512
    multiple_of: int = 8  # two stride-2 convs, two stride-2 transposed convs
    n_residual_blocks: int = 3  # controlnet_aux builds Generator(3, 1, 3); tests use fewer
    parity: bool = False  # True: controlnet_aux's per-image resizes (see the module docstring)


_PRESET_OF_FILE = {"sk_model.pth": "informative_drawings", "sk_model2.pth": "lineart_coarse"}


class InformativeDrawings(ControlNetAuxParity, Annotator):
    """Photo -> line drawing (controlnet_aux `lineart.Generator`, instance norm, so batching is exact)."""

    domain = "lineart"
    # 8 photos at 512 px, 2 CPU threads: 17.4 s one image at a time, 15.7 s two at once (docs/benchmarks.md).
    cpu_image_parallel = True

    def __init__(self, config: InformativeDrawingsConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        generator = controlnet_aux("informative_drawings", "controlnet_aux.lineart").Generator
        net = generator(3, 1, config.n_residual_blocks)
        label = _PRESET_OF_FILE.get(config.filename, "informative_drawings")  # names the preset in errors
        net.load_state_dict(annotators_checkpoint(label, config, config.filename))
        self.net = net.eval().to(device)
        # On CPU one 512x512 image per call: 3 images at 512x768 took 28.3 CPU s as one batch and 22.8 s
        # one by one (docs/benchmarks.md); small images still share a call.
        self.cpu_batch_pixels = 512 * 512

    def forward(self, x):
        # RGB in [0, 1] in (LineartDetector); the sigmoid output is paper white = 1, ink = 0.
        # Contiguous, not channels_last: its instance norms copy to contiguous anyway, and the
        # generator ran 10% faster so on CPU (20.6 vs 22.8 CPU s, docs/benchmarks.md).
        return 1.0 - self.net(x.contiguous())

    def quantize(self, label: np.ndarray) -> np.ndarray:
        # LineartDetector truncates the paper-white map to uint8, then inverts it (255 - x).
        return 1.0 - super().quantize(1.0 - label)


@dataclass(frozen=True)
class LineartAnimeConfig(AnnotatorsRepoConfig):
    """Anime line art pix2pix U-Net (`netG.pth`, ControlNet 1.1 "lineart_anime")."""

    filename: str = "netG.pth"
    resolution: int = 512
    multiple_of: int = 64  # as LineartAnimeDetector; the net itself needs multiples of 256 (see forward)
    max_batch: int = 4
    ngf: int = 64  # filters of the last conv layer; controlnet_aux uses 64, tests use fewer


class LineartAnime(Annotator):
    """Anime-style line art (controlnet_aux `lineart_anime.UnetGenerator`, 8 downsamplings)."""

    domain = "lineart"
    num_downs = 8  # 2**8 = 256: the U-Net's input sides must be multiples of 256

    def __init__(self, config: LineartAnimeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import functools

        from torch import nn

        unet = controlnet_aux("lineart_anime", "controlnet_aux.lineart_anime").UnetGenerator

        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        net = unet(3, 1, self.num_downs, config.ngf, norm_layer=norm, use_dropout=False)
        net.load_state_dict(annotators_checkpoint("lineart_anime", config, config.filename))
        self.net = net.eval().to(device)

    def forward(self, x):
        import torch.nn.functional as F

        # As LineartAnimeDetector: bicubic up to the next multiples of 256, [-1, 1] input, bicubic back.
        h, w = x.shape[-2:]
        unit = 2**self.num_downs
        big = (-(-h // unit) * unit, -(-w // unit) * unit)
        y = F.interpolate(x, size=big, mode="bicubic", align_corners=False) if big != (h, w) else x
        y = self.net(y * 2.0 - 1.0)
        if big != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)
        # tanh output: -1 = ink, +1 = paper.
        return ((1.0 - y) * 0.5).clamp(0.0, 1.0)
