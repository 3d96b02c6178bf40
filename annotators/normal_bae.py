"""Surface normals with NormalBae (Bae et al., ICCV 2021) on controlnet_aux's network, batched.

controlnet_aux's `NormalBaeDetector` runs `NNET` (EfficientNet-B5 encoder + uncertainty-guided
decoder, `scannet.pt` from lllyasviel/Annotators) one image at a time. Here the base class
batches same-size images and normalises on the device; `forward` is the network call only.

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

    def __init__(self, config: NormalBaeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        nnet = controlnet_aux("normalbae", "controlnet_aux.normalbae.nets.NNET").NNET
        self.model = build_nnet(nnet)
        self.model.load_state_dict(annotators_checkpoint("normalbae", config, "scannet.pt"))
        self.model = self.model.eval().to(device)
        self.normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device)

    def forward(self, x):
        preds, _, _ = self.model(self.normalize(x))
        # The last prediction is full resolution; channels are (nx, ny, nz, kappa), already unit length.
        normal = preds[-1][:, :3].float()
        if self.config.flip_x:
            normal = normal * normal.new_tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        return normal

    def postprocess(self, label: np.ndarray) -> np.ndarray:
        # Bilinear resizing back to the input shortens vectors: renormalise to unit length.
        norm = np.linalg.norm(label, axis=-1, keepdims=True)
        return np.where(norm > 1e-6, label / np.maximum(norm, 1e-6), np.float32([0.0, 0.0, 1.0])).astype(np.float32)


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
