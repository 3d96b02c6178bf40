"""Input normalisation and the upstream resize rules, shared by every model family.

The base class resizes batches on the device (bilinear with antialias), which is what
batching needs. The functions below re-create the resizes upstream code does per image
(OpenCV kernels, multiples of 64, long-side caps), for the `parity=True` presets that
must give exactly the reference label.
"""

from __future__ import annotations

import numpy as np

# ImageNet statistics (torchvision's `transforms.Normalize` values, used by the DINOv2, Swin,
# ConvNeXt and EfficientNet processors of the checkpoints here).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# [0, 1] -> [-1, 1]: the mean/std 0.5 of DPT-Hybrid's and ZoeDepth's processor configs.
HALF = (0.5, 0.5, 0.5)


class Normalizer:
    """(x - mean) / std on the device, with the statistics kept as 1x3x1x1 tensors built once."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: str) -> None:
        import torch

        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, x):
        return (x - self.mean) / self.std


def round_to_64(hw: tuple[int, int], resolution: int) -> tuple[int, int]:
    """controlnet_aux `util.resize_image`'s size: short side -> `resolution`, each side rounded to a multiple of 64."""
    h, w = (float(v) for v in hw)
    k = float(resolution) / min(h, w)
    return int(np.round(h * k / 64.0)) * 64, int(np.round(w * k / 64.0)) * 64


def resize_like_controlnet_aux(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 HxWx3 -> `size` (h, w) with the kernel controlnet_aux picks: Lanczos-4 up, area down."""
    import cv2

    h, w = size
    upscale = h * w > image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LANCZOS4 if upscale else cv2.INTER_AREA)


def long_side_size(hw: tuple[int, int], long_side: int, multiple_of: int = 1) -> tuple[int, int]:
    """(h, w) with the long side scaled to `long_side`, keeping aspect: each side truncated (as Marigold's
    and Lotus' `resize_max_res` do), then rounded down to a multiple of `multiple_of`."""
    h, w = hw
    scale = long_side / max(h, w)
    m = max(1, multiple_of)
    return max(m, int(h * scale) // m * m), max(m, int(w * scale) // m * m)


class UpstreamResize:
    """Mixin for an `Annotator` whose reference code resizes each image its own way.

    When `self.uses_upstream_resize()` is true, `annotate` groups images by the upstream working
    size (`upstream_size`), resizes each one with the upstream kernel (`resize_in`, uint8 HxWx3 ->
    float32 HxWx3 in [0, 1] at the working size), runs the same batched `forward`, and brings
    each label back with the upstream kernel (`resize_back`). Otherwise the base class's batched
    device path runs unchanged.
    """

    def uses_upstream_resize(self) -> bool:
        return bool(getattr(self.config, "parity", False))

    def upstream_size(self, hw: tuple[int, int]) -> tuple[int, int]:  # pragma: no cover - interface
        raise NotImplementedError

    def resize_in(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def resize_back(self, label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def annotate(self, images):
        if not self.uses_upstream_resize():
            return super().annotate(images)
        import contextlib
        from collections import defaultdict

        import torch

        from annotators.base import check_image

        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            check_image(image)
            groups[self.upstream_size(image.shape[:2])].append(i)
        dtype = self.autocast_dtype()
        autocast = (torch.autocast(device_type=torch.device(self.device).type, dtype=dtype) if dtype
                    else contextlib.nullcontext())
        out: list = [None] * len(images)
        with torch.inference_mode(), autocast:
            for size, idx in groups.items():
                for start in range(0, len(idx), self.config.max_batch):
                    chunk = idx[start : start + self.config.max_batch]
                    batch = np.stack([self.resize_in(images[i], size) for i in chunk])
                    x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
                    y = self.forward(x).float().cpu().numpy()
                    for j, i in enumerate(chunk):
                        label = y[j, 0] if y.shape[1] == 1 else np.moveaxis(y[j], 0, -1)
                        out[i] = self.postprocess(self.resize_back(label, images[i].shape[:2]))
        return out


class ControlNetAuxParity(UpstreamResize):
    """controlnet_aux's detector resizes (`util.resize_image` in; cubic back to the photo's size)."""

    def upstream_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        return round_to_64(hw, self.config.resolution)

    def resize_in(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return resize_like_controlnet_aux(image, size).astype(np.float32) / 255.0

    def quantize(self, label: np.ndarray) -> np.ndarray:
        """The detector's 8-bit map: `(x * 255).clip(0, 255).astype(np.uint8)` truncates, here in float."""
        return np.floor(np.clip(label * 255.0, 0.0, 255.0)) / 255.0

    def resize_back(self, label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        import cv2

        h, w = hw
        # The cubic resize runs on the detector's uint8 map, as upstream: rounded and saturated.
        levels = np.rint(self.quantize(label) * 255.0).astype(np.uint8)
        if levels.shape[:2] != (h, w):
            levels = cv2.resize(levels, (w, h), interpolation=cv2.INTER_CUBIC)
        return levels.astype(np.float32) / 255.0


def torch_resize(image: np.ndarray, size: tuple[int, int], mode: str = "bilinear", antialias: bool = True) -> np.ndarray:
    """float32 HxWxC -> `size` with torch's kernel (torchvision's tensor `resize`: bilinear + antialias)."""
    import torch
    import torch.nn.functional as F

    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    if mode.startswith("nearest"):
        y = F.interpolate(x, size=size, mode=mode)
    else:
        y = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    return y[0].permute(1, 2, 0).numpy()
