"""MoGe-2 (Wang et al. 2025, arXiv 2507.02546): metric depth and surface normals from one forward pass.

MoGe-2's `-normal` checkpoints predict a point map, a validity mask (sky and other undefined
geometry), a metric scale and a normal map in one pass. One model feeding two domains: this is a
multi-domain annotator (annotators/multi.py), so the pipeline runs it once per image and stores
both labels.

The network is our own (annotators/moge_net.py), with microsoft/MoGe's module and state-dict key
names, so the official `model.pt` ({"model_config", "model"}, read weights-only) loads strictly
without the `moge` package, which is not on PyPI (nor is the `utils3d` revision it needs).
Implemented from microsoft/MoGe as stored in the reference index: moge/model/v2.py (`MoGeModel`
forward and `infer`, commit 637e23e2), moge/model/modules.py (ca49b0c5), the vendored DINOv2 ViT
(moge/model/dinov2/models/vision_transformer.py, e5a3ade3) and moge/utils/geometry_torch.py +
geometry_numpy.py (focal/shift recovery, e5a3ade3 / 21e70519). Parity with the package's outputs
on the released weights is NOT verified here (neither the package nor the weights are reachable);
tests/test_moge2.py checks the key layout, the recipe's geometry on synthetic point maps, and the
label contract on tiny random weights.

`forward` follows `MoGeModel.infer` with its defaults: `num_tokens` base ViT tokens (3600 =
resolution_level 9), fp16 autocast on CUDA, focal and shift recovered from the masked point map,
depth = z + shift (pixels with depth <= 0 join the invalid ones), times the metric scale. Its
`force_projection` step rebuilds the point map only, so it does not change depth or normals.

Conversions to Joint's encodings: depth becomes inverse depth (near = large; invalid pixels,
i.e. sky, at 0 = farthest), normals go from MoGe's OpenCV camera frame (x right, y down,
z forward; microsoft/MoGe README "Usage") to Joint's (x right, y up, z toward the viewer) by
negating y and z. Invalid pixels get the normal facing the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotators.base import AnnotatorConfig
from annotators.loading import ModelUnavailableError, hub_file
from annotators.multi import MultiDomainAnnotator


@dataclass(frozen=True)
class MoGeConfig(AnnotatorConfig):
    """MoGe-2 settings. `resolution` is the short side of the working images; the network resizes
    them again to `num_tokens` ViT tokens; labels come back at each input's own size."""

    # MoGe's `resolution_level` 9 = the top of its token range (1200-3600 base tokens; v2.py `infer`).
    num_tokens: int = 3600
    filename: str = "model.pt"


def load_moge(annotator: str, model_id: str | None, filename: str, revision: str | None):
    """MoGeNet from a hub repo or local folder holding `filename` ({"model_config", "model"}), strict, eval mode."""
    from annotators.moge_net import build_net
    from schemas.checkpoint import load_torch_file

    if not model_id:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/folder`")
    if model_id.startswith((".", "/", "~")) and not Path(model_id).expanduser().is_dir():
        raise ModelUnavailableError(f"{annotator}: local model folder '{model_id}' does not exist")
    checkpoint = load_torch_file(hub_file(annotator, model_id, filename, revision))
    if not isinstance(checkpoint, dict) or not {"model_config", "model"} <= set(checkpoint):
        raise ValueError(f"{annotator}: {filename} is not a MoGe checkpoint (expected keys model_config and model)")
    config = checkpoint["model_config"]
    if config.get("normal_head") is None:
        raise ValueError(f"{annotator}: '{model_id}' has no normal head; use a moge-2-*-normal checkpoint")
    return build_net(config, checkpoint["model"])


class MoGe2(MultiDomainAnnotator):
    """Inverse depth (HxW, near = large) and unit normals (HxWx3, Joint's frame) from one MoGe-2 pass."""

    domains = ("depth", "normal")

    def __init__(self, config: MoGeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.net = load_moge(self.name, config.model_id, config.filename, config.revision).to(device)

    def autocast_dtype(self):
        """fp16 on CUDA under "auto", MoGe's own `infer(use_fp16=True)` default; fp32 on the CPU."""
        import torch

        if self.config.dtype == "auto" and torch.device(self.device).type == "cuda":
            return torch.float16
        return super().autocast_dtype()

    def forward(self, x):
        """x: Bx3xhxw in [0, 1] -> Bx4xhxw: inverse depth, then normals (x right, y up, z to the viewer)."""
        import torch

        from annotators.moge_net import recover_focal_shift

        out = self.net(x, num_tokens=self.config.num_tokens)
        # As `infer`: the geometry runs in fp32, whatever the network ran in.
        with torch.autocast(device_type=x.device.type, enabled=False):
            points, normal, metric = out["points"].float(), out["normal"].float(), out["metric_scale"].float()
            valid = out["mask"].float() > 0.5
            _, shift = recover_focal_shift(points, valid)
            depth = points[..., 2] + shift[:, None, None]
            valid = valid & (depth > 0)
            depth = depth * metric[:, None, None]
            inverse = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
            normal = normal * torch.tensor([1.0, -1.0, -1.0], device=normal.device)
            facing = torch.tensor([0.0, 0.0, 1.0], device=normal.device)
            normal = torch.where(valid[..., None], normal, facing)
        return torch.cat([inverse[:, None], normal.permute(0, 3, 1, 2)], dim=1)


# ----- presets ------------------------------------------------------------------------------------
# Ruicheng/moge-2-vitl-normal (microsoft/MoGe README: "full capabilities ... plus extra normal map
# estimation"): DINOv2 ViT-L encoder. Its model card states no licence ("unknown"); MoGe's code is
# MIT. Revision "main": no verified commit hash was available offline; pin one when mirroring.
MOGE2_VITL_NORMAL = MoGeConfig(
    model_id="Ruicheng/moge-2-vitl-normal", revision="main", resolution=512, multiple_of=2, max_batch=4
)
