"""Semantic segmentation into Jodi's 12 classes: OneFormer, Mask2Former and UperNet on ADE20K-150.

Joint-1.6M labels segmentation with OneFormer (ADE20K, 150 classes) and maps the classes
to 12 superclasses (Jodi, arXiv 2505.19084, §3; schemas.encoding.ade150_to_12).

Each model gives per-class scores at a fraction of the working size. What the
processors' `post_process_semantic_segmentation` does per image on the CPU, done here
batched on the device: mask-classification models (OneFormer, Mask2Former) combine
softmax class probabilities (minus the "no object" class) with sigmoid mask
probabilities into class scores; the scores are resized bilinearly to the image's own
size, arg-maxed, and mapped 150 -> 12 with a lookup table, all before leaving the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.base import Annotator, AnnotatorConfig
from annotators.loading import load_pretrained
from annotators.preprocess import IMAGENET_MEAN, IMAGENET_STD, Normalizer
from schemas.encoding import ade150_to_12

ADE_CLASSES = 150


@dataclass(frozen=True)
class SegConfig(AnnotatorConfig):
    """A transformers ADE20K-150 segmenter and the normalisation of its hub processor config."""

    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    # Classes resized to full size at a time: bounds memory (150 x 1024 x 1280 fp32 would be 786 MB).
    upsample_chunk: int = 16
    task: str = "semantic"  # OneFormer's task token: "the task is {task}"


class _ADESegmenter(Annotator):
    """Shared tail: ADE20K class scores (Bx150xhxw) -> 12-class ids (uint8 HxW) at the input's size."""

    domain = "seg_12colors"
    resize_back = "nearest"  # not used: `_back_to_numpy` below resizes scores, not ids

    def __init__(self, config: SegConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        import torch

        self._normalise = Normalizer(config.image_mean, config.image_std, device)
        # The 150 -> 12 table, built once by the shared mapping and kept on the device.
        self._to12 = torch.from_numpy(ade150_to_12(np.arange(ADE_CLASSES))).to(device)

    def _load(self, model_cls):
        cfg = self.config
        model = load_pretrained(model_cls.from_pretrained, type(self).__name__, cfg.model_id, cfg.revision)
        num_labels = model.config.num_labels
        if num_labels != ADE_CLASSES:
            raise ValueError(f"{type(self).__name__}: expected an ADE20K-150 model, got {num_labels} classes")
        return model.eval().to(self.device)

    def _back_to_numpy(self, y, size: tuple[int, int]) -> np.ndarray:
        """Class scores 1xCxhxw -> uint8 HxW 12-class ids: bilinear resize of the scores, then argmax.

        Resizing scores rather than ids is what the processors' post-processing does; it gives
        smooth class boundaries. Done in channel chunks with a running max to bound memory.
        """
        import torch
        import torch.nn.functional as F

        best = ids = None
        for start in range(0, y.shape[1], self.config.upsample_chunk):
            part = y[:, start : start + self.config.upsample_chunk].float()
            if tuple(part.shape[-2:]) != size:
                part = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
            score, idx = part[0].max(dim=0)
            if best is None:
                best, ids = score, idx
            else:
                # Strictly greater keeps the first maximum on ties, as a single argmax would.
                better = score > best
                best = torch.where(better, score, best)
                ids = torch.where(better, idx + start, ids)
        return self._to12[ids].cpu().numpy()


def mask_class_scores(class_logits, mask_logits):
    """Semantic scores of a mask-classification model: sum over queries of p(class) * p(mask).

    class_logits: BxQx(C+1) (the last class is "no object"); mask_logits: BxQxhxw -> BxCxhxw.
    Same formula as Mask2FormerImageProcessor.post_process_semantic_segmentation.
    """
    import torch

    # In fp32 even under bf16 autocast (einsum runs as a bmm, which autocast would downcast):
    # close class scores must not flip in the argmax.
    with torch.autocast(device_type=class_logits.device.type, enabled=False):
        classes = class_logits.float().softmax(dim=-1)[..., :-1]
        masks = mask_logits.float().sigmoid()
        return torch.einsum("bqc,bqhw->bchw", classes, masks)


class Mask2FormerSegmenter(_ADESegmenter):
    """Mask2Former (transformers Mask2FormerForUniversalSegmentation), semantic inference."""

    def __init__(self, config: SegConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from transformers import Mask2FormerForUniversalSegmentation

        self.model = self._load(Mask2FormerForUniversalSegmentation)

    def forward(self, x):
        out = self.model(pixel_values=self._normalise(x))
        return mask_class_scores(out.class_queries_logits, out.masks_queries_logits)


class OneFormerSegmenter(_ADESegmenter):
    """OneFormer (transformers OneFormerForUniversalSegmentation), conditioned on the text "the task is semantic"."""

    def __init__(self, config: SegConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from transformers import AutoTokenizer, OneFormerForUniversalSegmentation

        self.model = self._load(OneFormerForUniversalSegmentation)
        # Tokenised once and reused for every batch (OneFormerProcessor would redo it per call).
        name = type(self).__name__
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name, config.model_id, config.revision)
        text = f"the task is {config.task}"
        self.task_inputs = task_tokens(tokenizer, text, self.model.config.task_seq_len).to(device)

    def forward(self, x):
        task = self.task_inputs.expand(x.shape[0], -1)
        out = self.model(pixel_values=self._normalise(x), task_inputs=task)
        return mask_class_scores(out.class_queries_logits, out.masks_queries_logits)


def task_tokens(tokenizer, text: str, length: int):
    """OneFormer's task input (1 x length): token ids padded to `length`, zero where padded.

    The same as OneFormerProcessor._preprocess_text: ids times the attention mask.
    """
    import torch

    tokens = tokenizer([text], padding="max_length", max_length=length, truncation=True)
    ids = torch.tensor(tokens["input_ids"]) * torch.tensor(tokens["attention_mask"])
    return ids


class UperNetSegmenter(_ADESegmenter):
    """UperNet (transformers UperNetForSemanticSegmentation): class scores at 1/4 of the working size."""

    # 8 photos at 512 px, 2 CPU threads: 40.4 s one image at a time, 33.4 s two at once (docs/benchmarks.md).
    cpu_image_parallel = True

    def __init__(self, config: SegConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        from transformers import UperNetForSemanticSegmentation

        self.model = self._load(UperNetForSemanticSegmentation)

    def forward(self, x):
        # UperNetForSemanticSegmentation.forward minus what inference throws away: it also runs the
        # auxiliary FCN head (a training loss) and upsamples both heads' 150 class maps to the working
        # size, which `_back_to_numpy` would resample again to the image's size. Here the main head's
        # scores (1/4 of the working size) are resized once, straight to the image's size, as mmseg's
        # own whole-image inference does (`resize(seg_logits, ori_shape)`).
        features = self.model.backbone(self._normalise(x)).feature_maps
        return self.model.decode_head(features)


# ----- presets ------------------------------------------------------------------------------------
# shi-labs/oneformer_ade20k_swin_large: Swin-L, 250 queries; test short side 640 (the authors'
# config oneformer_swin_large_IN21k_384_bs16_160k.yaml, MIN_SIZE_TEST 640), ImageNet mean/std.
# The revision is a commit of that repo; the others are "main" (no verified hash offline).
ONEFORMER_ADE20K = SegConfig(
    model_id="shi-labs/oneformer_ade20k_swin_large",
    revision="35f248b72a41d1dffdc0a18c557a7766cef3e09d",
    resolution=640,
    multiple_of=32,
    max_batch=4,
)

# facebook/mask2former-swin-large-ade-semantic: processor 384 px, size divisor 32, ImageNet mean/std.
MASK2FORMER_ADE20K = SegConfig(
    model_id="facebook/mask2former-swin-large-ade-semantic",
    revision="main",
    resolution=384,
    multiple_of=32,
    max_batch=8,
)

# openmmlab/upernet-convnext-small: processor 512x512, ImageNet mean/std (trained on 512 crops).
UPERNET_ADE20K = SegConfig(
    model_id="openmmlab/upernet-convnext-small",
    revision="main",
    resolution=512,
    multiple_of=32,
    max_batch=8,
)
