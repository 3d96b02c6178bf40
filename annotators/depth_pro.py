"""Depth Pro (Bochkovskii et al. 2024, arXiv 2410.02073) on transformers' `DepthProForDepthEstimation`.

Depth Pro predicts canonical inverse depth and, with its FOV head, the horizontal field of
view, from one fixed 1536x1536 square input (apple/DepthPro-hf preprocessor_config.json:
1536x1536, mean/std 0.5). Inverse depth is Joint's depth label as it is (near = large,
min-max per image at encoding). With the field of view the depth becomes metric, so one
pass also gives surface normals: `depth_pro_geometry` back-projects the depth with the
predicted focal length and takes the normal of the point map (x right, y up, z toward the
viewer: Joint's convention) — depth and normal from one forward, a multi-domain annotator.

Every image is resized to the square input, so every image batches with every other
(the base class would group by aspect); labels are resized back to each input's size.
Deliberately not bit-identical to `DepthProImageProcessor`: it normalises then resizes
without antialiasing; here the resize (antialiased) runs first, on the device, batched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from annotators.base import AnnotationError, Annotator, AnnotatorConfig, check_image
from annotators.loading import load_pretrained
from annotators.multi import MultiDomainAnnotator

HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class DepthProConfig(AnnotatorConfig):
    """Depth Pro settings. `resolution` is the side of the square network input."""

    image_mean: tuple[float, float, float] = HALF
    image_std: tuple[float, float, float] = HALF
    # A random or degenerate FOV head can predict angles outside (0, 180): clamp to a sane camera.
    min_fov_deg: float = 10.0
    max_fov_deg: float = 170.0
    min_inverse_depth: float = 1e-4  # as DepthProImageProcessor.post_process_depth_estimation's clamp


class DepthPro(Annotator):
    """Relative inverse depth (float HxW, larger = nearer) from Depth Pro."""

    domain = "depth"

    def __init__(self, config: DepthProConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import torch
        from transformers import DepthProForDepthEstimation

        model = load_pretrained(
            DepthProForDepthEstimation.from_pretrained, type(self).__name__, config.model_id, config.revision
        )
        self.model = model.eval().to(device)
        self._mean = torch.tensor(config.image_mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(config.image_std, device=device).view(1, 3, 1, 1)

    def batches(self, images: Sequence[np.ndarray]) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """Every image goes to the same square input, so chunks of `max_batch` in input order."""
        for img in images:
            check_image(img)
        side = self.config.resolution
        for start in range(0, len(images), self.config.max_batch):
            yield (side, side), list(range(start, min(start + self.config.max_batch, len(images))))

    def forward(self, x):
        """x: Bx3xSxS in [0, 1] -> (inverse depth Bx1xhxw float, horizontal FOV in degrees B or None)."""
        out = self.model(pixel_values=(x - self._mean) / self._std)
        fov = out.field_of_view
        if fov is not None:
            fov = fov.float().clamp(self.config.min_fov_deg, self.config.max_fov_deg)
        return out.predicted_depth.unsqueeze(1).float(), fov

    def annotate(self, images: Sequence[np.ndarray]) -> list[np.ndarray | AnnotationError | None]:
        import torch

        out: list[np.ndarray | None] = [None] * len(images)
        with torch.inference_mode(), self._autocast():
            for size, chunk in self.batches(images):
                inverse, fov = self.forward(self._to_tensor([images[i] for i in chunk], size))
                labels = self.labels(inverse, fov, [images[i].shape[:2] for i in chunk])
                for j, i in enumerate(chunk):
                    out[i] = self.postprocess(self._back_to_numpy(labels[j : j + 1], images[i].shape[:2]))
        return out

    def labels(self, inverse, fov, sizes: list[tuple[int, int]]):
        """The label channels at network resolution (here: the inverse depth)."""
        return inverse


class DepthProGeometry(MultiDomainAnnotator, DepthPro):
    """Depth and surface normals from one Depth Pro pass (needs a checkpoint with the FOV head)."""

    domains = ("depth", "normal")

    def __init__(self, config: DepthProConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        if not self.model.config.use_fov_model:
            raise ValueError(f"{self.name}: normals need the FOV head; '{config.model_id}' has use_fov_model=False")

    def labels(self, inverse, fov, sizes: list[tuple[int, int]]):
        import torch

        # The FOV is horizontal, of the original image; its width and height were stretched to the square.
        aspect = torch.tensor([w / h for h, w in sizes], device=inverse.device)
        normals = normals_from_inverse_depth(inverse, fov, aspect, self.config.min_inverse_depth)
        return torch.cat([inverse, normals], dim=1)


def normals_from_inverse_depth(inverse, fov_deg, aspect, min_inverse: float = 1e-4):
    """Unit camera-frame normals Bx3xhxw (x right, y up, z toward the viewer) of a pinhole depth map.

    inverse: Bx1xhxw inverse depth of images stretched to h x w; fov_deg: B horizontal fields of
    view; aspect: B original width / height (the stretch). Focal lengths in stretched pixels:
    fx = (w / 2) / tan(fov / 2) (Depth Pro's post-processing, focal = 0.5 * width / tan(fov / 2)),
    fy = fx * aspect * h / w. Depth scale cancels in the normal, so 1 / inverse depth suffices.
    """
    import torch

    b, _, h, w = inverse.shape
    z = 1.0 / inverse.float().clamp_min(min_inverse)
    fx = (w / 2) / torch.tan(torch.deg2rad(fov_deg.float()) / 2)
    fy = fx * aspect.float() * h / w
    u = torch.arange(w, device=z.device, dtype=z.dtype) - (w - 1) / 2
    v = torch.arange(h, device=z.device, dtype=z.dtype) - (h - 1) / 2
    x = u.view(1, 1, 1, w) / fx.view(b, 1, 1, 1) * z
    y = -v.view(1, 1, h, 1) / fy.view(b, 1, 1, 1) * z
    points = torch.cat([x, y, -z], dim=1)  # the camera looks down -z
    du = torch.gradient(points, dim=3)[0]
    dv = torch.gradient(points, dim=2)[0]
    # dP/dv x dP/du points toward the camera for a surface facing it (e.g. a fronto-parallel plane -> +z).
    n = torch.cross(dv, du, dim=1)
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)


# ----- presets ------------------------------------------------------------------------------------
# apple/DepthPro-hf (model card: licence apple-amlr, research only): ViT-L DINOv2 encoders at
# 384 px patches over a 1536 px square, FOV head included. Revision "main": no verified commit
# hash was available offline; pin one when mirroring. 1536 = 4 x the 384 px patch (config patch_size);
# max_batch 2: one 1536^2 image is already 35 ViT-L patch passes (1 + 9 + 25 over three scales).
DEPTH_PRO = DepthProConfig(
    model_id="apple/DepthPro-hf", revision="main", resolution=1536, multiple_of=1, max_batch=2
)
