"""MoGe-2 (Wang et al. 2025, arXiv 2507.02546): metric depth and surface normals from one forward pass.

MoGe-2's `-normal` checkpoints predict a point map, a validity mask (sky and other undefined
geometry), a metric scale and a normal map in one pass; `MoGeModel.infer` turns them into
depth and normals at the input's size. One model feeding two domains: this is a
multi-domain annotator (annotators/multi.py), so the pipeline runs it once per image and
stores both labels.

Conversions to Joint's encodings: depth becomes inverse depth (near = large; invalid pixels,
i.e. sky, at 0 = farthest), normals go from MoGe's OpenCV camera frame (x right, y down,
z forward; microsoft/MoGe README "Usage") to Joint's (x right, y up, z toward the viewer) by
negating y and z. Invalid pixels get the normal facing the viewer.

MoGe is not on PyPI (nor is the `utils3d` revision it needs; PyPI's `utils3d` is an unrelated
project), so it is an optional dependency installed from GitHub at a pinned commit; without it
the annotator fails at construction with the install command.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotators.base import AnnotatorConfig
from annotators.loading import hub_file
from annotators.multi import MultiDomainAnnotator

# microsoft/MoGe at the commit this annotator was written against (its v2 `infer` API).
MOGE_COMMIT = "07444410f1e33f402353b99d6ccd26bd31e469e8"
INSTALL_HINT = (
    f"the MoGe-2 annotators need the moge package (not on PyPI): "
    f"pip install 'moge @ git+https://github.com/microsoft/MoGe.git@{MOGE_COMMIT}'"
)


@dataclass(frozen=True)
class MoGeConfig(AnnotatorConfig):
    """MoGe-2 settings. `resolution` is the short side of the images handed to `infer` (it resizes
    internally to `num_tokens` ViT tokens); labels come back at each input's own size."""

    # MoGe's `resolution_level` 9 = the top of its token range (1200-3600 base tokens; v2.py `infer`).
    num_tokens: int = 3600
    filename: str = "model.pt"


def import_moge():
    try:
        from moge.model.v2 import MoGeModel
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return MoGeModel


class MoGe2(MultiDomainAnnotator):
    """Inverse depth (HxW, near = large) and unit normals (HxWx3, Joint's frame) from one MoGe-2 pass."""

    domains = ("depth", "normal")

    def __init__(self, config: MoGeConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        moge_model = import_moge()
        # MoGe's own loader reads {"model_config", "model"} with torch.load(weights_only=True).
        path = hub_file(self.name, config.model_id, config.filename, config.revision)
        model = moge_model.from_pretrained(path)
        if not hasattr(model, "normal_head"):
            raise ValueError(f"{self.name}: '{config.model_id}' has no normal head; use a moge-2-*-normal checkpoint")
        self.model = model.eval().to(device)

    def forward(self, x):
        """x: Bx3xhxw in [0, 1] -> Bx4xhxw: inverse depth, then normals (x right, y up, z to the viewer)."""
        import torch

        # MoGe's own fp16 autocast on CUDA (its `infer` default); fp32 on the CPU.
        fp16 = torch.device(self.device).type == "cuda" and self.config.dtype != "float32"
        out = self.model.infer(x.float(), num_tokens=self.config.num_tokens, use_fp16=fp16, apply_mask=True)
        depth, normal, valid = out["depth"], out["normal"], out["mask"]
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
