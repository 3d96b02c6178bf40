"""Random-weight checkpoints and per-image baselines of the newer annotators (Depth Pro, MoGe-2, ViTPose +
RT-DETR, EoMT, Qwen3-VL, Depth Anything 3), for tests and bench/label_throughput.py.

RANDOM maps a registry name to `fn(folder, full_size=False) -> build() overrides`: it writes what
the hub repo holds (config.json + safetensors of the real transformers class, and the processor
configs) into `folder`; tiny by default, the published architecture with `full_size=True` (sizes
from the hub config.json files) for timing. BASELINES maps a registry name to
`fn(folder, full_size=False) -> callable(image)`: how people run the model today, one image
per call, fp32, through the model card's own recipe (transformers `pipeline` or processor +
model + post-processing), over the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.builders.caption import QWEN_CHAT_TEMPLATE, _save, _tokenizer, pipeline_baseline
from tests.builders.depth_seg import _spread
from tests.builders.moge import moge2, moge2_baseline

DETAILED = "Describe this image in detail."


def _seeded() -> None:
    import torch

    torch.manual_seed(0)


def _write(folder: Path, model, *processors, spread: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if spread:  # tiny models at transformers' init give near-constant maps; unit-gain weights do not
        _spread(model)
    model.eval().save_pretrained(folder)
    for p in processors:
        p.save_pretrained(folder)


def _built(folder: Path, builder: Callable[..., dict], full_size: bool) -> dict:
    return builder(folder, full_size) if not (folder / "config.json").exists() else {}


# ----- Depth Pro ----------------------------------------------------------------------------------


def depth_pro(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """DepthProForDepthEstimation with its FOV head; full size = apple/DepthPro-hf config.json (DINOv2 ViT-L/16
    encoders at 384, patch_size 384 over a 1536 input); tiny: 16-wide ViTs over a 128 input."""
    from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor

    _seeded()
    if full_size:
        vit = dict(model_type="dinov2", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   patch_size=16, image_size=384)
        config = DepthProConfig(use_fov_model=True, image_model_config=dict(vit), patch_model_config=dict(vit),
                                fov_model_config=dict(vit))
        side = 1536
    else:
        vit = dict(model_type="dinov2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                   patch_size=8, image_size=32)
        config = DepthProConfig(patch_size=32, fusion_hidden_size=16, intermediate_hook_ids=[1, 0],
                                intermediate_feature_dims=[8, 8], scaled_images_feature_dims=[16, 16, 8],
                                use_fov_model=True, image_model_config=dict(vit), patch_model_config=dict(vit),
                                fov_model_config=dict(vit))
        side = 128  # 4 x patch_size, as 1536 = 4 x 384
    model = DepthProForDepthEstimation(config)
    _write(folder, model, DepthProImageProcessor(size={"height": side, "width": side}), spread=not full_size)
    return {"model_id": str(folder), "resolution": side}


def depth_pro_baseline(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
    """transformers `pipeline("depth-estimation")`, fp32, one image per call (the model card's usage)."""
    from PIL import Image
    from transformers import pipeline

    _built(folder, depth_pro, full_size)
    pipe = pipeline("depth-estimation", model=str(folder), device="cpu", dtype="float32")
    return lambda image: pipe(Image.fromarray(image))


# ----- MoGe-2: tests/builders/moge.py (official checkpoint format on our own network) ------------------


# ----- ViTPose + RT-DETR --------------------------------------------------------------------------


def _rt_detr(folder: Path, full_size: bool) -> None:
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    # COCO's 80 classes with "person" first, as in PekingU/rtdetr_r50vd_coco_o365's config.json id2label.
    id2label = {0: "person", **{i: f"coco_{i}" for i in range(1, 80)}}
    if full_size:  # PekingU/rtdetr_r50vd_coco_o365: ResNet-50-vd, hybrid encoder 256, 300 queries, 6 layers
        config = RTDetrConfig(id2label=id2label)
        side = 640
    else:
        backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                      out_features=["stage2", "stage3", "stage4"])
        config = RTDetrConfig(backbone_config=backbone, encoder_hidden_dim=16, d_model=16,
                              encoder_in_channels=[16, 32, 64], decoder_in_channels=[16, 16, 16], num_queries=12,
                              decoder_layers=1, encoder_layers=1, decoder_ffn_dim=32, encoder_ffn_dim=32,
                              encoder_attention_heads=2, decoder_attention_heads=2, decoder_n_points=2,
                              anchor_image_size=None, num_denoising=0, id2label=id2label)
        side = 128
    _seeded()
    model = RTDetrForObjectDetection(config)
    if not full_size:
        # RT-DETR keeps the top queries over all 80 classes; a random tiny head rarely ranks "person" there.
        # Raising the person prior (init -4.6, focal-loss prior 0.01) makes the tiny detector see people.
        import torch

        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(("enc_score_head.bias", "class_embed.0.bias")):
                    param[0] = 2.0
    # Not spread: RT-DETR's head init (class prior, box refinement) is what keeps its boxes valid.
    _write(folder, model, RTDetrImageProcessor(size={"height": side, "width": side}), spread=False)


def vitpose(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """ViTPose (pose/) + RT-DETR (detector/); full size = usyd-community/vitpose-base-simple (ViT-B/16 at
    256 x 192) and PekingU/rtdetr_r50vd_coco_o365 (640 x 640)."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    _seeded()
    if full_size:
        backbone = VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768,
                                         num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4, out_indices=[12])
        crop = {"height": 256, "width": 192}
    else:
        backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, out_indices=[2])
        crop = {"height": 64, "width": 48}
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17))
    _write(folder / "pose", model, VitPoseImageProcessor(size=crop), spread=not full_size)
    _rt_detr(folder / "detector", full_size)
    return {"model_id": str(folder / "pose"), "detector_id": str(folder / "detector"),
            "detector_size": 640 if full_size else 128}


def vitpose_baseline(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
    """The transformers ViTPose docs' recipe, one image per call, fp32: RT-DETR processor + model +
    post-processing (threshold 0.3), then ViTPose processor on the person boxes + model + post-processing.
    (It stops at keypoints: the drawing our annotator also does is not counted against the baseline.)"""
    import torch
    from PIL import Image
    from transformers import (
        RTDetrForObjectDetection,
        RTDetrImageProcessor,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    if not (folder / "pose" / "config.json").exists():
        vitpose(folder, full_size)
    det_proc = RTDetrImageProcessor.from_pretrained(folder / "detector")
    det = RTDetrForObjectDetection.from_pretrained(folder / "detector").eval()
    pose_proc = VitPoseImageProcessor.from_pretrained(folder / "pose")
    pose = VitPoseForPoseEstimation.from_pretrained(folder / "pose").eval()

    def run(image: np.ndarray):
        pil = Image.fromarray(image)
        with torch.inference_mode():
            found = det_proc.post_process_object_detection(
                det(**det_proc(images=pil, return_tensors="pt")), threshold=0.3,
                target_sizes=torch.tensor([(pil.height, pil.width)]))[0]
            boxes = found["boxes"][found["labels"] == 0].numpy()
            if not len(boxes):
                return []
            boxes[:, 2:] -= boxes[:, :2]  # xyxy -> COCO xywh
            inputs = pose_proc(pil, boxes=[boxes], return_tensors="pt")
            return pose_proc.post_process_pose_estimation(pose(**inputs), boxes=[boxes])[0]

    return run


# ----- EoMT ---------------------------------------------------------------------------------------


def eomt(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """EomtForUniversalSegmentation, ADE20K-150; full size = tue-mps/ade20k_semantic_eomt_large_512
    (ViT-L/16, 512 windows, 100 queries in the last 4 blocks)."""
    from transformers import EomtConfig, EomtForUniversalSegmentation, EomtImageProcessor

    _seeded()
    if full_size:
        config = EomtConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                            image_size=512, patch_size=16, num_queries=100, num_blocks=4, num_labels=150)
    else:
        config = EomtConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=64, patch_size=16, num_queries=10, num_blocks=2, num_labels=150,
                            num_register_tokens=0)
    side = config.image_size
    processor = EomtImageProcessor(size={"shortest_edge": side, "longest_edge": None}, do_split_image=True)
    _write(folder, EomtForUniversalSegmentation(config), processor, spread=not full_size)
    return {"model_id": str(folder), "resolution": side}


def eomt_baseline(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
    """The model card's recipe, one image per call, fp32: processor (split into windows) + model +
    `post_process_semantic_segmentation`."""
    import torch
    from PIL import Image
    from transformers import EomtForUniversalSegmentation, EomtImageProcessor

    _built(folder, eomt, full_size)
    processor = EomtImageProcessor.from_pretrained(folder)
    model = EomtForUniversalSegmentation.from_pretrained(folder).eval()

    def run(image: np.ndarray):
        pil = Image.fromarray(image)
        with torch.inference_mode():
            out = model(**processor(images=pil, return_tensors="pt"))
        return processor.post_process_semantic_segmentation(out, target_sizes=[(pil.height, pil.width)])[0]

    return run


# ----- Qwen3-VL -----------------------------------------------------------------------------------


def qwen3_vl(folder: Path, full_size: bool = False, size_b: int = 2) -> dict[str, Any]:
    """Qwen3VLForConditionalGeneration with a real Qwen3VLProcessor (16 px patches, merge 2, ChatML);
    full size = Qwen/Qwen3-VL-{2B,8B}-Instruct config.json."""
    import transformers as tf

    special = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
             "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
    tok = _tokenizer(special, named, extra_tokens=("<|im_start|>",))
    if full_size:
        hidden, layers, heads, kv, inter, vis = (
            (2048, 28, 16, 8, 6144, (24, 1024, 4096, 16, [5, 11, 17])) if size_b == 2
            else (4096, 36, 32, 8, 12288, (27, 1152, 4304, 16, [8, 16, 24])))
        text = dict(vocab_size=151936, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                    num_key_value_heads=kv, intermediate_size=inter, head_dim=128,
                    rope_parameters={"rope_type": "default", "mrope_section": [24, 20, 20], "rope_theta": 5e6,
                                     "mrope_interleaved": True})
        depth, width, vis_inter, vis_heads, deepstack = vis
        vision = dict(depth=depth, hidden_size=width, intermediate_size=vis_inter, num_heads=vis_heads,
                      out_hidden_size=hidden, deepstack_visual_indexes=deepstack)
        pixels = dict(min_pixels=256 * 32 * 32, max_pixels=1024 * 32 * 32)
    else:
        # head_dim 16 -> 8 rotary frequencies split over (time, height, width) like the real [24, 20, 20].
        text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, intermediate_size=64, head_dim=16, max_position_embeddings=512,
                    rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2], "rope_theta": 1e4,
                                     "mrope_interleaved": True})
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                      num_position_embeddings=64, deepstack_visual_indexes=[0])
        pixels = dict(min_pixels=4 * 32 * 32, max_pixels=12 * 32 * 32)
    text.update(bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=tok.image_token_id,
                              video_token_id=tok.video_token_id,
                              vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                              vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    _seeded()
    model = tf.Qwen3VLForConditionalGeneration(config).eval()
    images = tf.Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, **pixels)
    videos = tf.Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    processor = tf.Qwen3VLProcessor(image_processor=images, video_processor=videos, tokenizer=tok,
                                    chat_template=QWEN_CHAT_TEMPLATE)
    out = _save(folder, model, processor)
    if not full_size:  # the tiny processor's budget, so the captioner asks for what the test model can see
        out.update(min_pixels=pixels["min_pixels"], max_pixels=pixels["max_pixels"], max_new_tokens=8)
    return out


def qwen3_vl_8b(folder: Path, full_size: bool = False) -> dict[str, Any]:
    return qwen3_vl(folder, full_size, size_b=8)


# ----- Depth Anything 3 ---------------------------------------------------------------------------

DA3_PRESETS = {"da3mono_large": "da3mono-large", "da3metric_large": "da3metric-large", "da3_small": "da3-small",
               "da3_base": "da3-base", "da3_large": "da3-large"}


def _da3_tiny_graph(preset: str) -> dict:
    """The preset's object graph on the smallest backbone the package builds (its DinoV2 wrapper takes only
    vits/vitb/vitl/vitg: ViT-S/14, 12 blocks of 384) with narrow DPT heads (16 features)."""
    from annotators.depth_anything3 import network_config

    graph = network_config("builder", {"model_name": preset})
    graph["net"].update(name="vits", out_layers=[2, 5, 8, 11])
    cat = 2 if graph["net"]["cat_token"] else 1  # any-view models concatenate local and global tokens
    graph["head"].update(dim_in=384 * cat, features=16, out_channels=[8, 16, 32, 32])
    if "cam_enc" in graph:
        graph["cam_enc"]["dim_out"] = 384
        graph["cam_dec"]["dim_in"] = 384 * cat
    for key in ("gs_head", "gs_adapter"):
        graph.pop(key, None)
    return graph


def depth_anything3(folder: Path, full_size: bool = False, preset: str = "da3mono-large") -> dict[str, Any]:
    """A DA3 checkpoint as `DepthAnything3.from_pretrained` reads it: config.json + model.safetensors with the
    wrapper's `model.` keys. Full size = the package preset itself (config.json names it, as on the hub);
    tiny = the preset's graph on ViT-S with 16-wide heads, written into config.json's `config`."""
    import json

    from omegaconf import OmegaConf
    from safetensors.torch import save_model

    from annotators.depth_anything3 import hub_wrapper, import_da3, network_config

    _, cfg, _ = import_da3()
    config_json = {"model_name": preset} if full_size else {"model_name": preset, "config": _da3_tiny_graph(preset)}
    _seeded()
    net = cfg.create_object(OmegaConf.create(network_config("builder", config_json)))
    if not full_size:
        _spread(net)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_json))
    save_model(hub_wrapper(net), str(folder / "model.safetensors"))  # as PyTorchModelHubMixin.save_pretrained
    return {"model_id": str(folder), "resolution": 504 if full_size else 70}


def depth_anything3_baseline(folder: Path, full_size: bool = False,
                             preset: str = "da3mono-large") -> Callable[[np.ndarray], object]:
    """The package's own per-image recipe, fp32 (`DepthAnything3.inference` minus its exporters, whose module
    needs moviepy): InputProcessor (long side 504, multiples of 14) -> the network (sky fill included) ->
    OutputProcessor. Returns the Prediction (depth at the processed size)."""
    import torch
    from depth_anything_3.utils.io.input_processor import InputProcessor
    from depth_anything_3.utils.io.output_processor import OutputProcessor

    from annotators.depth_anything3 import load_network

    overrides = depth_anything3(folder, full_size, preset) if not (folder / "config.json").exists() else {}
    net = load_network("baseline", str(folder), None)
    inputs, outputs = InputProcessor(), OutputProcessor()
    res = overrides.get("resolution", 504 if full_size else 70)

    def run(image: np.ndarray):
        x, _, _ = inputs([image], process_res=res, process_res_method="upper_bound_resize", num_workers=1)
        with torch.inference_mode():
            return outputs(net(x[None].float()))

    return run


def _da3(name: str):
    def build(folder: Path, full_size: bool = False) -> dict[str, Any]:
        return depth_anything3(folder, full_size, DA3_PRESETS[name])

    def baseline(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
        return depth_anything3_baseline(folder, full_size, DA3_PRESETS[name])

    return build, baseline



# ----- the tables the tests and the benchmark read ---------------------------------------------------

RANDOM: dict[str, Callable[..., dict[str, Any]]] = {
    "depth_pro": depth_pro,
    "depth_pro_geometry": depth_pro,
    "moge2_vitl_normal": moge2,
    "vitpose_base": vitpose,
    "eomt_ade20k": eomt,
    "qwen3_vl_2b": qwen3_vl,
    "qwen3_vl_8b": qwen3_vl_8b,
    **{name: _da3(name)[0] for name in DA3_PRESETS},
}
BASELINES: dict[str, Callable[..., Callable[[np.ndarray], object]]] = {
    "depth_pro": depth_pro_baseline,
    "depth_pro_geometry": depth_pro_baseline,
    "moge2_vitl_normal": moge2_baseline,
    "vitpose_base": vitpose_baseline,
    "eomt_ade20k": eomt_baseline,
    "qwen3_vl_2b": pipeline_baseline(qwen3_vl, DETAILED, chat=True),
    "qwen3_vl_8b": pipeline_baseline(qwen3_vl_8b, DETAILED, chat=True),
    **{name: _da3(name)[1] for name in DA3_PRESETS},
}
