"""Surface normals with NormalBae (Bae et al., ICCV 2021) on controlnet_aux's network, batched.

controlnet_aux's `NormalBaeDetector` runs `NNET` (EfficientNet-B5 encoder + uncertainty-guided
decoder, `scannet.pt` from lllyasviel/Annotators) one image at a time. Here the base class
batches same-size images and normalises on the device; `forward` runs the encoder and
`refine`, the decoder's test-mode forward with the same weights in about half the work.

Where the time goes. At test time the decoder predicts normals at 1/8 resolution, then refines
them at 1/4, 1/2 and full resolution: each step upsamples a feature map and the previous
prediction 2x, concatenates them and runs four 1x1 `Conv1d` layers over every pixel. On a
512x768 photo (2 CPU threads, torch.profiler) those heads were ~5 of ~6 CPU seconds; the `Conv1d`
over a (B, C, H*W) tensor ran at 14-23 GFLOP/s, where the same 1x1 layer as a `Conv2d` on a
channels_last map runs at ~80. `refine` changes two things, neither the function computed:
- the first layer is a per-pixel affine map and bilinear upsampling mixes pixels with weights
  that sum to one, so the two commute: the first layer runs before the upsampling, at a quarter
  of the pixels, and 128 channels are upsampled instead of C+4 (no concatenation at all);
- the remaining layers run as 1x1 `Conv2d` on channels_last maps.
Labels equal the decoder's own within float rounding (tests/test_annotators_pose.py).

Axis convention. BAE predicts camera-frame normals with x pointing LEFT, y up, z toward the
camera (ControlNet 1.1 calls it "ScanNet protocol"; red = left in its visualisations). Joint-1.6M's
normals (Lotus) have x pointing RIGHT: on the official samples the left flank of a convex object
(the parrot of the official Joint-1.6M samples) has red < 128 and the right flank red > 128, the ground has
green > 128 and fronto-parallel surfaces are ~(128, 128, 255). So `flip_x` negates x by default;
y and z already agree.
"""

from __future__ import annotations

import contextlib
import io
import types
from dataclasses import dataclass

import numpy as np

from annotators.base import Annotator
from annotators.loading import AnnotatorsRepoConfig, annotators_checkpoint, controlnet_aux

# ImageNet statistics: controlnet_aux NormalBaeDetector's `transforms.Normalize`.
from annotators.preprocess import IMAGENET_MEAN, IMAGENET_STD, Normalizer


@dataclass(frozen=True)
class NormalBaeConfig(AnnotatorsRepoConfig):
    resolution: int = 512  # controlnet_aux detect_resolution
    multiple_of: int = 32  # EfficientNet's output stride: keeps decoder skips aligned
    max_batch: int = 8
    flip_x: bool = True  # BAE x = left -> Joint x = right (see module docstring)


class NormalBae(Annotator):
    """Unit normals HxWx3 in [-1, 1], Joint's convention (x right, y up, z toward the camera)."""

    domain = "normal"
    out_channels = 3
    # 8 photos at 512 px, 2 CPU threads: 31.4 s one image at a time, 23.3 s two at once (docs/benchmarks.md).
    cpu_image_parallel = True

    def __init__(self, config: NormalBaeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        nnet = controlnet_aux("normalbae", "controlnet_aux.normalbae.nets.NNET").NNET
        self.model = build_nnet(nnet)
        self.model.load_state_dict(annotators_checkpoint("normalbae", config, "scannet.pt"))
        self.model = self.model.eval().to(device)
        self.normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device)

    def forward(self, x):
        # The full-resolution prediction; channels are (nx, ny, nz, kappa), already unit length.
        normal = refine(self.model.decoder, self.model.encoder(self.normalize(x)))[:, :3].float()
        if self.config.flip_x:
            normal = normal * normal.new_tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        return normal

    def postprocess(self, label: np.ndarray) -> np.ndarray:
        # Bilinear resizing back to the input shortens vectors: renormalise to unit length.
        norm = np.linalg.norm(label, axis=-1, keepdims=True)
        return np.where(norm > 1e-6, label / np.maximum(norm, 1e-6), np.float32([0.0, 0.0, 1.0])).astype(np.float32)


def refine(decoder, features):
    """controlnet_aux `Decoder.forward(features, mode="test")`'s full-resolution output (Bx4xHxW), in less work.

    The same layers and weights; see the module docstring for the two changes and why they are exact.
    """
    from controlnet_aux.normalbae.nets.submodules.submodules import norm_normalize

    # The encoder features the decoder reads (Decoder.forward's indices): 1/2, 1/4, 1/8, 1/16, 1/32 res.
    x_block0, x_block1, x_block2, x_block3, x_block4 = (features[i] for i in (4, 5, 6, 8, 11))
    x_d0 = decoder.conv2(x_block4)
    x_d1 = decoder.up1(x_d0, x_block3)
    x_d2 = decoder.up2(x_d1, x_block2)  # 1/8
    x_d3 = decoder.up3(x_d2, x_block1)  # 1/4
    x_d4 = decoder.up4(x_d3, x_block0)  # 1/2
    out = norm_normalize(decoder.out_conv_res8(x_d2))
    for head, feature in ((decoder.out_conv_res4, x_d2), (decoder.out_conv_res2, x_d3), (decoder.out_conv_res1, x_d4)):
        out = _refine_step(head, feature, out)
    return out


def _refine_step(head, feature, previous):
    """One refinement: `head` (Conv1d C+4->128, ReLU, 128->128, ReLU, 128->128, ReLU, 128->4) over
    cat(up2(feature), up2(previous)), with the first layer moved before the upsampling."""
    import torch
    import torch.nn.functional as F
    from controlnet_aux.normalbae.nets.submodules.submodules import norm_normalize

    first, *rest = (m for m in head if isinstance(m, torch.nn.Conv1d))
    c = feature.shape[1]
    w = first.weight.unsqueeze(-1)  # (128, C+4, 1, 1): split into the feature's and the prediction's columns
    z = F.conv2d(feature, w[:, :c], first.bias) + F.conv2d(previous, w[:, c:])
    # Decoder.forward's upsampling: 2x, bilinear, align_corners=True (each output a convex combination).
    z = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=True)
    z = z.contiguous(memory_format=torch.channels_last)
    for layer in rest:
        z = F.conv2d(z.relu_(), layer.weight.unsqueeze(-1), layer.bias)
    return norm_normalize(z)


def build_nnet(nnet_cls):
    """controlnet_aux's NNET with the arguments `NormalBaeDetector.from_pretrained` uses, built offline.

    Its encoder builds `tf_efficientnet_b5_ap` from the geffnet copy vendored in controlnet_aux via
    `torch.hub.load(local path, pretrained=False, source="local")`: no download; our checkpoint
    then supplies every weight. The constructor's progress prints are silenced.
    """
    args = types.SimpleNamespace(
        mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4, importance_ratio=0.7
    )
    with contextlib.redirect_stdout(io.StringIO()):
        return nnet_cls(args)
