"""EoMT (Kerssies et al. 2025, arXiv 2503.19108) on transformers' `EomtForUniversalSegmentation`: ADE20K
semantic segmentation into Jodi's 12 classes.

EoMT is a plain ViT whose last blocks also carry mask queries; its position embeddings
are fixed to a square input (`config.image_size`, 512 for the ADE20K semantic model). So,
as `EomtImageProcessor` does for semantic segmentation (`do_split_image`), the image is
resized to short side 512 and cut into 512 x 512 windows along its long side, spread
evenly with overlap; every window of the batch runs in one forward. Each window's class
scores (softmax classes x sigmoid masks, `mask_class_scores`, the processor's formula) are
stitched back and overlaps averaged (`merge_image_patches`), then the shared ADE tail resizes
the scores to the image's size, arg-maxes and maps 150 -> 12 classes.

Deliberately not bit-identical to the processor: windows are stitched at the mask
resolution (stride 4) rather than after upsampling each window to 512, which is the same
average up to bilinear rounding, at a sixteenth of the memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from annotators.preprocess import IMAGENET_MEAN, IMAGENET_STD
from annotators.segmentation import SegConfig, _ADESegmenter, mask_class_scores


@dataclass(frozen=True)
class EomtSegConfig(SegConfig):
    """EoMT settings; `resolution` must equal the model's `image_size` (the window side)."""

    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD


def window_starts(length: int, window: int) -> list[int]:
    """Start offsets of `window`-long windows covering `length` with equal overlap (EomtImageProcessor._split_image)."""
    n = max(1, math.ceil(length / window))
    overlap = (n * window - length) / (n - 1) if n > 1 else 0
    return [int(i * (window - overlap)) for i in range(n)]


class EomtSegmenter(_ADESegmenter):
    """EoMT semantic segmentation (sliding square windows along the long side), 12-class ids."""

    def __init__(self, config: EomtSegConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from transformers import EomtForUniversalSegmentation

        self.model = self._load(EomtForUniversalSegmentation)
        if self.model.config.image_size != config.resolution:
            raise ValueError(
                f"{self.name}: resolution {config.resolution} must equal the model's image_size "
                f"{self.model.config.image_size} (its position embeddings are fixed)"
            )

    def forward(self, x):
        """x: Bx3xHxW in [0, 1], short side = the window -> class scores Bx150xhxw at the mask stride."""
        import torch

        b, _, h, w = x.shape
        side = self.config.resolution
        tall = h > w
        starts = window_starts(max(h, w), side)
        windows = [x[:, :, s : s + side, :] if tall else x[:, :, :, s : s + side] for s in starts]
        out = self.model(pixel_values=self._normalise(torch.cat(windows)))
        scores = mask_class_scores(out.class_queries_logits, out.masks_queries_logits)  # (n*B)xCxmxm
        stride = side / scores.shape[-1]
        m = scores.shape[-1]
        long_m = round(max(h, w) / stride)
        total = scores.new_zeros(b, scores.shape[1], long_m if tall else m, m if tall else long_m)
        count = scores.new_zeros(1, 1, *total.shape[-2:])
        for k, s in enumerate(starts):
            a = min(round(s / stride), long_m - m)
            part = scores[k * b : (k + 1) * b]
            if tall:
                total[:, :, a : a + m] += part
                count[:, :, a : a + m] += 1
            else:
                total[:, :, :, a : a + m] += part
                count[:, :, :, a : a + m] += 1
        return total / count


# ----- presets ------------------------------------------------------------------------------------
# tue-mps/ade20k_semantic_eomt_large_512 (model card; ADE20K val mIoU 58.4 in the paper, Table 2):
# DINOv2 ViT-L/16, 512 x 512 windows, ImageNet mean/std (its preprocessor_config.json). The card
# states no weight licence ("unknown"); the code (tue-mps/eomt) is MIT. Revision "main": no verified
# commit hash was available offline; pin one when mirroring.
EOMT_ADE20K = EomtSegConfig(
    model_id="tue-mps/ade20k_semantic_eomt_large_512",
    revision="main",
    resolution=512,
    multiple_of=1,
    max_batch=4,
)
