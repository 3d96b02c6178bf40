"""Random-weight checkpoints of the real depth and segmentation architectures, and their per-image baselines.

Each builder writes, into `folder`, what the hub repo holds for that preset: the model
(`config.json` + safetensors, saved by the real transformers class) and the processor
configs the transformers `pipeline(...)` needs. `full_size=False` gives a tiny model for
tests; `full_size=True` the real architecture (sizes from the hub configs) for timing.
The builders return the `build()` overrides that load the folder through the annotator's
own loading path (plus a small working resolution for the tiny models).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ADE_CLASSES = 150  # every segmentation preset predicts the 150 ADE20K classes

# ----- depth --------------------------------------------------------------------------------------

# Depth Anything V2 sizes (depth-anything/Depth-Anything-V2-{Small,Base,Large}-hf config.json):
# DINOv2 ViT-S/B/L with 14 px patches; the DPT neck reads four evenly spaced blocks.
_DAV2_SIZES = {
    "small": dict(hidden=384, layers=12, heads=6, out=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64),
    "base": dict(hidden=768, layers=12, heads=12, out=[3, 6, 9, 12], neck=[96, 192, 384, 768], fusion=128),
    "large": dict(hidden=1024, layers=24, heads=16, out=[5, 12, 18, 24], neck=[256, 512, 1024, 1024], fusion=256),
}


def _spread(model) -> None:
    """Re-draw conv/linear weights at unit gain (std 1/sqrt(fan_in)) and biases at std 0.1.

    transformers' default init (std 0.02) makes tiny random models output near-constant maps
    (all-zero depth, one segmentation class), which would let shape-only bugs pass the tests.
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel() if not isinstance(module, torch.nn.ConvTranspose2d) else (
                    module.weight.shape[0] * module.weight[0, 0].numel())
                module.weight.normal_(0.0, fan_in**-0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)


def _save(model, folder: Path, *processors, full_size: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not full_size:
        _spread(model)
    model.eval().save_pretrained(folder)
    for p in processors:
        p.save_pretrained(folder)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _seeded() -> None:
    import torch

    torch.manual_seed(0)


def depth_anything_v2(size: str) -> Callable[..., dict[str, Any]]:
    def build(folder: Path, full_size: bool = False) -> dict[str, Any]:
        from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

        _seeded()
        s = _DAV2_SIZES[size]
        if full_size:
            hidden, layers, heads = s["hidden"], s["layers"], s["heads"]
            out, neck, fusion = s["out"], s["neck"], s["fusion"]
            image_size = 518
        else:
            hidden, layers, heads, out, neck, fusion, image_size = 32, 4, 2, [1, 2, 3, 4], [8, 16, 32, 32], 16, 56
        backbone = Dinov2Config(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden,
            patch_size=14, image_size=image_size, out_indices=out, reshape_hidden_states=False, apply_layernorm=True,
            layerscale_value=1.0,
        )  # fmt: skip
        config = DepthAnythingConfig(
            backbone_config=backbone, reassemble_hidden_size=hidden, patch_size=14, neck_hidden_sizes=neck,
            fusion_hidden_size=fusion, head_hidden_size=32 if full_size else 8, depth_estimation_type="relative",
        )  # fmt: skip
        # The hub processor: short side to >= 518 keeping aspect, multiple of 14, ImageNet mean/std.
        processor = DPTImageProcessor(
            size={"height": image_size, "width": image_size}, keep_aspect_ratio=True, ensure_multiple_of=14,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], resample=3,
        )  # fmt: skip
        _save(DepthAnythingForDepthEstimation(config), folder, processor, full_size=full_size)
        return {"model_id": str(folder), "resolution": image_size}

    return build


def zoedepth(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    _seeded()
    # Intel/zoedepth-nyu-kitti: BEiT-L/16 at 384 and two metric heads (indoor NYU, outdoor KITTI).
    bins = [{"n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0, "name": "nyu"},
            {"n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0, "name": "kitti"}]  # fmt: skip
    if full_size:
        config = ZoeDepthConfig(
            bin_configurations=bins, num_patch_transformer_layers=4, patch_transformer_hidden_size=128,
            patch_transformer_intermediate_size=1024, patch_transformer_num_attention_heads=4,
        )  # fmt: skip
        resolution = 384
    else:
        backbone = BeitConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
            patch_size=16, out_features=["stage1", "stage2", "stage3", "stage4"], use_relative_position_bias=True,
            reshape_hidden_states=False,
        )  # fmt: skip
        for b in bins:
            b["n_bins"] = 8
        config = ZoeDepthConfig(
            backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
            reassemble_hidden_size=32, bottleneck_features=16, num_attractors=[4, 4, 2, 2], bin_embedding_dim=8,
            num_relative_features=8, bin_configurations=bins,
            # transformers hard-codes 4 patch-transformer layers and a 128-d domain classifier input.
            num_patch_transformer_layers=4, patch_transformer_hidden_size=128,
            patch_transformer_intermediate_size=32, patch_transformer_num_attention_heads=2,
        )  # fmt: skip
        resolution = 64
    processor = ZoeDepthImageProcessor(size={"height": resolution, "width": resolution * 4 // 3})
    _save(ZoeDepthForDepthEstimation(config), folder, processor, full_size=full_size)
    return {"model_id": str(folder), "resolution": resolution}


def midas(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from transformers import BitConfig, DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    _seeded()
    # Intel/dpt-hybrid-midas: ViT-B/16 on a BiT-ResNet stem at a fixed 384x384 input (MiDaS v3 "DPT-Hybrid").
    if full_size:
        config = DPTConfig(
            is_hybrid=True, neck_hidden_sizes=[256, 512, 768, 768], reassemble_factors=[1, 1, 1, 0.5],
            fusion_hidden_size=256, backbone_out_indices=[2, 5, 8, 11], readout_type="project",
        )  # fmt: skip
        resolution = 384
    else:
        bit = BitConfig(
            layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 32, 64], embedding_size=8,
            out_features=["stage1", "stage2", "stage3"], global_padding="same", embedding_dynamic_padding=True,
            num_groups=4,
        )  # fmt: skip
        config = DPTConfig(
            is_hybrid=True, backbone_config=bit, backbone_featmap_shape=[1, 64, 4, 4], hidden_size=32,
            num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64, patch_size=16,
            neck_hidden_sizes=[16, 32, 32, 32], reassemble_factors=[1, 1, 1, 0.5], fusion_hidden_size=16,
            backbone_out_indices=[0, 1, 2, 3], readout_type="project",
        )  # fmt: skip
        resolution = 64
    processor = DPTImageProcessor(
        size={"height": resolution, "width": resolution}, keep_aspect_ratio=False, image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )  # fmt: skip
    _save(DPTForDepthEstimation(config), folder, processor, full_size=full_size)
    return {"model_id": str(folder), "resolution": resolution}


def depth_pipeline_baseline(builder: Callable[..., dict[str, Any]]) -> Callable[..., Callable]:
    """How users run a transformers depth model today: `pipeline("depth-estimation")`, one image per call, fp32."""

    def make(folder: Path, full_size: bool = False) -> Callable:
        from PIL import Image
        from transformers import pipeline

        builder(folder, full_size)
        pipe = pipeline("depth-estimation", model=str(folder), device=_device())
        return lambda image: pipe(Image.fromarray(image))["predicted_depth"]

    return make


# ----- segmentation -------------------------------------------------------------------------------


def _swin(full_size: bool, image_size: int):
    from transformers import SwinConfig

    stages = ["stage1", "stage2", "stage3", "stage4"]
    if full_size:  # Swin-L, window 12, pre-trained at 384 (the ADE20K Swin-L checkpoints of both models)
        return SwinConfig(
            embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12, image_size=384,
            out_features=stages,
        )  # fmt: skip
    return SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=image_size,
        out_features=stages,
    )  # fmt: skip


def _decoder_sizes(full_size: bool) -> dict[str, int]:
    if full_size:
        return {}  # the transformers defaults are the released sizes (256-d pixel decoder and queries)
    # GroupNorm with 32 groups needs multiples of 32.
    return dict(hidden_dim=32, encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
                dim_feedforward=64)  # fmt: skip


def _ade_class_info() -> dict[str, dict[str, Any]]:
    # Placeholder names: only the count matters to the processors' metadata.
    return {str(i): {"name": f"class{i}", "isthing": 0} for i in range(ADE_CLASSES)}


def mask2former(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    _seeded()
    resolution = 384 if full_size else 64
    sizes = _decoder_sizes(full_size)
    extra = {} if full_size else dict(feature_size=32, mask_feature_size=32, num_queries=8)
    config = Mask2FormerConfig(backbone_config=_swin(full_size, resolution), num_labels=ADE_CLASSES, **sizes, **extra)
    processor = Mask2FormerImageProcessor(
        size={"shortest_edge": resolution, "longest_edge": 1333}, size_divisor=32, do_reduce_labels=True
    )
    _save(Mask2FormerForUniversalSegmentation(config), folder, processor, full_size=full_size)
    return {"model_id": str(folder), "resolution": resolution}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to code points 256+."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
    keep += list(range(ord("\xae"), ord("\xff") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_clip_tokenizer():
    """A CLIP BPE tokenizer with the byte alphabet only (no merges): every word splits into characters."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def oneformer(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from transformers import (
        AutoTokenizer,
        OneFormerConfig,
        OneFormerForUniversalSegmentation,
        OneFormerImageProcessor,
        OneFormerProcessor,
    )

    _seeded()
    folder.mkdir(parents=True, exist_ok=True)
    resolution = 640 if full_size else 64
    if full_size:  # shi-labs/oneformer_ade20k_swin_large: 250 queries; the real CLIP vocabulary size
        config = OneFormerConfig(backbone_config=_swin(True, 384), num_labels=ADE_CLASSES, num_queries=250)
    else:
        config = OneFormerConfig(
            backbone_config=_swin(False, resolution), num_labels=ADE_CLASSES, num_queries=8, conv_dim=32, mask_dim=32,
            text_encoder_width=32, text_encoder_num_layers=1, text_encoder_vocab_size=600, text_encoder_n_ctx=4,
            query_dec_layers=1, **_decoder_sizes(False),
        )  # fmt: skip
    # The hub repo ships a CLIP tokenizer for the task text; a byte-alphabet one stands in for it.
    tiny_clip_tokenizer().save_pretrained(folder)
    (folder / "ade20k_panoptic.json").write_text(json.dumps(_ade_class_info()))
    image_processor = OneFormerImageProcessor(
        size={"shortest_edge": resolution, "longest_edge": 4 * resolution}, repo_path=str(folder),
        class_info_file="ade20k_panoptic.json", num_text=config.num_queries - config.text_encoder_n_ctx,
        do_reduce_labels=False, ignore_index=255,
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = OneFormerProcessor(image_processor, tokenizer, task_seq_length=config.task_seq_len)
    _save(OneFormerForUniversalSegmentation(config), folder, processor, full_size=full_size)
    return {"model_id": str(folder), "resolution": resolution}


def upernet(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from transformers import ConvNextConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

    _seeded()
    stages = ["stage1", "stage2", "stage3", "stage4"]
    if full_size:  # openmmlab/upernet-convnext-small: ConvNeXt-S, 512-d UperNet head
        backbone = ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768], out_features=stages)
        config = UperNetConfig(
            backbone_config=backbone, num_labels=ADE_CLASSES, hidden_size=512, auxiliary_in_channels=384
        )
        resolution = 512
    else:
        backbone = ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 32], out_features=stages)
        config = UperNetConfig(
            backbone_config=backbone, num_labels=ADE_CLASSES, hidden_size=16, auxiliary_in_channels=32,
            auxiliary_channels=8, pool_scales=[1, 2],
        )  # fmt: skip
        resolution = 64
    processor = SegformerImageProcessor(size={"height": resolution, "width": resolution}, do_reduce_labels=False)
    _save(UperNetForSemanticSegmentation(config), folder, processor, full_size=full_size)
    return {"model_id": str(folder), "resolution": resolution}


def segmentation_pipeline_baseline(builder: Callable[..., dict[str, Any]]) -> Callable[..., Callable]:
    """`pipeline("image-segmentation", subtask="semantic")`, one image per call, fp32 (Mask2Former, UperNet)."""

    def make(folder: Path, full_size: bool = False) -> Callable:
        from PIL import Image
        from transformers import pipeline

        builder(folder, full_size)
        pipe = pipeline("image-segmentation", model=str(folder), device=_device())
        return lambda image: pipe(Image.fromarray(image), subtask="semantic")

    return make


def oneformer_baseline(folder: Path, full_size: bool = False) -> Callable:
    """OneFormer as its model card runs it: processor + model + post-processing, one image per call, fp32."""
    import torch
    from PIL import Image
    from transformers import OneFormerForUniversalSegmentation, OneFormerProcessor

    oneformer(folder, full_size)
    processor = OneFormerProcessor.from_pretrained(folder)
    model = OneFormerForUniversalSegmentation.from_pretrained(folder).eval().to(_device())

    def run(image: np.ndarray):
        inputs = processor(images=Image.fromarray(image), task_inputs=["semantic"], return_tensors="pt").to(_device())
        with torch.no_grad():
            outputs = model(**inputs)
        return processor.post_process_semantic_segmentation(outputs, target_sizes=[image.shape[:2]])[0]

    return run


_DEPTH_PRESETS = ("depth_anything_v2_small", "depth_anything_v2_base", "depth_anything_v2_large", "zoedepth", "midas")
RANDOM: dict[str, Callable[..., dict[str, Any]]] = {
    "depth_anything_v2_small": depth_anything_v2("small"),
    "depth_anything_v2_base": depth_anything_v2("base"),
    "depth_anything_v2_large": depth_anything_v2("large"),
    "zoedepth": zoedepth,
    "zoedepth_metric": zoedepth,  # the same checkpoint, labeling the metric_depth domain
    "midas": midas,
    "oneformer_ade20k": oneformer,
    "mask2former_ade20k": mask2former,
    "upernet_ade20k": upernet,
}
BASELINE: dict[str, Callable[..., Callable]] = {
    **{name: depth_pipeline_baseline(RANDOM[name]) for name in _DEPTH_PRESETS},
    "zoedepth_metric": depth_pipeline_baseline(zoedepth),
    "oneformer_ade20k": oneformer_baseline,
    "mask2former_ade20k": segmentation_pipeline_baseline(mask2former),
    "upernet_ade20k": segmentation_pipeline_baseline(upernet),
}
