"""Depth Anything 3 (Lin et al. 2025, arXiv 2511.10647) on the `depth-anything-3` package's own network.

DA3 is a plain DINOv2 ViT with a DPT head (the Mono and Metric models) or a dual depth+ray
DPT head (the any-view Small/Base/Large models, which also predict cameras from several
views). Given one view, every variant predicts depth (larger = farther); this annotator
stores its inverse, Joint's near = bright (min-max per image at encoding, so the metric
model's focal-length scale, metres = focal * output / 300 (package README "FAQ"), cancels).

transformers has no DA3 class, and the PyPI package declares numpy<2, xformers, open3d,
pycolmap and moviepy==1.0.3 for its CLI, exporters and web app. Its network subpackage
(`depth_anything_3.model`) needs only torch, einops, omegaconf and addict, so the package is
installed with `--no-deps` (Makefile) and only the network is used here; `depth_anything_3.api`
(which imports the exporters) is never imported.

Weights are the hub layout `DepthAnything3.from_pretrained` reads (huggingface_hub's
PyTorchModelHubMixin): `config.json` with `model_name` (a package preset, configs/<name>.yaml)
and `model.safetensors` with the wrapper's keys (`model.` + the network's). A `config.json`
may instead carry the network's object graph under `config` (the package's `__object__`
format); it is accepted only when every object it names is one of the network classes below
and it holds no `${...}` interpolation (the package registers an `eval` resolver), so a
downloaded config cannot run code.

Preprocessing follows `InputProcessor` (utils/io/input_processor.py): long side to
`resolution` (504 by default, `process_res`), each side to the nearest multiple of the 14 px
patch, ImageNet mean/std. Deliberate differences, each for batching: the resize is one
antialiased bilinear on the device instead of OpenCV's INTER_AREA/INTER_CUBIC; the network
runs as B independent single views (B x 1 views, so no view attends to another); and the
mono models' sky fill (`DepthAnything3Net._process_mono_sky_estimation`, sky = the 99th
percentile of non-sky depth) runs per image with an exact quantile, where upstream pools the
whole batch and subsamples 100k pixels at random.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotators.base import Annotator, AnnotatorConfig, check_image
from annotators.loading import ModelUnavailableError, hub_file
from annotators.preprocess import IMAGENET_MEAN, IMAGENET_STD  # DA3's InputProcessor.NORMALIZE

PACKAGE_VERSION = "0.1.1"
INSTALL_HINT = (
    "the Depth Anything 3 annotators need the depth-anything-3 package without its app/export requirements "
    f"(they pin numpy<2): pip install omegaconf addict && pip install --no-deps 'depth-anything-3=={PACKAGE_VERSION}'"
)
PATCH = 14  # DepthAnything3Net.PATCH_SIZE
# The classes a config graph may name: the network, its backbone and its heads (depth_anything_3/model/).
ALLOWED_OBJECTS = {
    ("depth_anything_3.model.da3", "DepthAnything3Net"),
    ("depth_anything_3.model.dinov2.dinov2", "DinoV2"),
    ("depth_anything_3.model.dpt", "DPT"),
    ("depth_anything_3.model.dualdpt", "DualDPT"),
    ("depth_anything_3.model.cam_enc", "CameraEnc"),
    ("depth_anything_3.model.cam_dec", "CameraDec"),
}


@dataclass(frozen=True)
class DA3Config(AnnotatorConfig):
    """Depth Anything 3 settings. `resolution` is the working LONG side (upstream `process_res`)."""

    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    sky_threshold: float = 0.3  # compute_sky_mask's default: sky head output >= 0.3 is sky
    sky_quantile: float = 0.99  # sky depth = this quantile of the non-sky depth (_process_mono_sky_estimation)
    min_depth: float = 1e-6  # clamps depth before inverting


def import_da3():
    """The package's network module and config helpers, quietly (its import registers an OmegaConf
    resolver with a deprecation warning and its ViT logs to stdout; neither is our user's business)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from depth_anything_3 import cfg
            from depth_anything_3.model import da3
            from depth_anything_3.registry import MODEL_REGISTRY
            from depth_anything_3.utils import logger as da3_logger
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if "DA3_LOG_LEVEL" not in os.environ:  # the package's own switch; a user who sets it keeps their level
        da3_logger.logger.level = da3_logger.LOG_LEVELS["WARN"]
    return da3, cfg, MODEL_REGISTRY


def network_config(annotator: str, config_json: dict[str, Any]) -> dict[str, Any]:
    """The network's object graph for a checkpoint's config.json: its `config` graph (checked) or
    the package preset named by `model_name`."""
    _, cfg, registry = import_da3()
    from omegaconf import OmegaConf

    if "config" in config_json:
        graph = config_json["config"]
        root = graph.get("__object__") if isinstance(graph, dict) else None
        if not isinstance(root, dict) or (root.get("path"), root.get("name")) != ("depth_anything_3.model.da3",
                                                                                "DepthAnything3Net"):
            raise ValueError(f"{annotator}: config.json's config graph must build a DepthAnything3Net")
        _check_graph(annotator, graph)
        return graph
    name = config_json.get("model_name")
    if name not in registry:
        raise ValueError(f"{annotator}: config.json model_name {name!r} is not a depth-anything-3 preset "
                         f"({', '.join(sorted(registry))})")
    if name.startswith("da3nested"):
        raise ValueError(f"{annotator}: {name} aligns several views to a metric model; use da3mono/da3metric/da3-*")
    return OmegaConf.to_container(cfg.load_config(registry[name]), resolve=True)


def _check_graph(annotator: str, node: Any) -> None:
    if isinstance(node, dict):
        obj = node.get("__object__")
        if obj is not None:
            named = (obj.get("path"), obj.get("name")) if isinstance(obj, dict) else (obj, None)
            if named not in ALLOWED_OBJECTS:
                raise ValueError(f"{annotator}: config.json names {named[0]}.{named[1]}, "
                                 f"which is not a Depth Anything 3 network class; refusing to build it")
        for value in node.values():
            _check_graph(annotator, value)
    elif isinstance(node, list):
        for value in node:
            _check_graph(annotator, value)
    elif isinstance(node, str) and "${" in node:
        raise ValueError(f"{annotator}: config.json holds an interpolation {node!r}; refusing to resolve it")


def load_network(annotator: str, model_id: str | None, revision: str | None):
    """DepthAnything3Net from a hub repo or local folder (config.json + model.safetensors), eval mode."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_model

    _, cfg, _ = import_da3()
    if model_id is None:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/model`")
    if model_id.startswith((".", "/", "~")) and not Path(model_id).expanduser().is_dir():
        raise ModelUnavailableError(f"{annotator}: local model folder '{model_id}' does not exist")
    config_json = json.loads(Path(hub_file(annotator, model_id, "config.json", revision)).read_text())
    graph = network_config(annotator, config_json)
    weights = hub_file(annotator, model_id, "model.safetensors", revision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = cfg.create_object(OmegaConf.create(graph))
    # PyTorchModelHubMixin saves the DepthAnything3 wrapper (the network is its `model`) with
    # safetensors' save_model, which stores tied tensors once; load_model restores them, as the mixin does.
    load_model(hub_wrapper(net), weights, strict=True, device="cpu")
    return net.eval()


def hub_wrapper(net):
    """A module holding `net` as `model`: the key layout of the DepthAnything3 wrapper the hub stores."""
    import torch

    wrapper = torch.nn.Module()
    wrapper.model = net
    return wrapper


def upper_bound_size(hw: tuple[int, int], long_side: int, patch: int = PATCH) -> tuple[int, int]:
    """(h, w) InputProcessor gives for "upper_bound_resize": long side to `long_side` (rounded to a
    pixel), then each side to its nearest multiple of `patch` (ties up)."""
    h, w = hw
    scale = long_side / max(h, w)
    h, w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def nearest(x: int) -> int:
        down = (x // patch) * patch
        return down + patch if abs(down + patch - x) <= abs(x - down) else down

    return max(patch, nearest(h)), max(patch, nearest(w))


class DepthAnything3(Annotator):
    """Relative inverse depth (float HxW, larger = nearer) from a Depth Anything 3 checkpoint."""

    domain = "depth"

    def __init__(self, config: DA3Config, device: str = "cpu") -> None:
        super().__init__(config, device)
        import torch

        self.net = load_network(type(self).__name__, config.model_id, config.revision).to(device)
        self._mean = torch.tensor(config.image_mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(config.image_std, device=device).view(1, 3, 1, 1)

    def batches(self, images: Sequence[np.ndarray]) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """Same-working-size groups of at most `max_batch`, the working size from the long side."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            check_image(img)
            groups.setdefault(upper_bound_size(img.shape[:2], self.config.resolution), []).append(i)
        for size, idx in groups.items():
            for start in range(0, len(idx), self.config.max_batch):
                yield size, idx[start : start + self.config.max_batch]

    def forward(self, x):
        """x: Bx3xhxw in [0, 1] -> Bx1xhxw inverse depth. Each image is its own one-view scene."""
        import torch

        h, w = x.shape[-2:]
        views = ((x - self._mean) / self._std)[:, None]  # B x S=1 x 3 x h x w
        feats, _ = self.net.backbone(views, cam_token=None, export_feat_layers=[])
        # As DepthAnything3Net.forward: the head runs in fp32 outside autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = [(f.float(), token.float()) for f, token in feats]
            out = self.net.head(feats, h, w, patch_start_idx=0)
        depth = out["depth"][:, 0].float()  # B x h x w
        if "sky" in out:
            cfg = self.config
            skies = out["sky"][:, 0].float()
            depth = torch.stack([fill_sky(d, s, cfg.sky_threshold, cfg.sky_quantile) for d, s in zip(depth, skies)])
        return (1.0 / depth.clamp_min(self.config.min_depth))[:, None]


def fill_sky(depth, sky, threshold: float = 0.3, quantile: float = 0.99):
    """One image's depth (h x w) with its sky (sky head >= threshold) set to the `quantile` of its non-sky
    depth, when both regions exceed 10 pixels: DepthAnything3Net._process_mono_sky_estimation's rule."""
    import torch

    ground = sky < threshold
    if ground.sum() <= 10 or (~ground).sum() <= 10:
        return depth
    return torch.where(ground, depth, torch.quantile(depth[ground], quantile))


# ----- presets ------------------------------------------------------------------------------------
# Hub repos and licences as the package README's model table ("Model Cards") and each hub card state:
# DA3MONO-LARGE, DA3METRIC-LARGE, DA3-BASE and DA3-SMALL are Apache 2.0; DA3-LARGE(-1.1) and DA3-GIANT
# are CC BY-NC 4.0 (non-commercial). Revisions: the commits public DA3 integrations pin for these repos
# (not verifiable from here; a wrong pin fails with the one-line "model not available" message).
# resolution 504 = upstream `inference(process_res=504)`; max_batch 4 for the ViT-L models at 504^2.


def da3(repo: str, revision: str, max_batch: int = 4) -> DA3Config:
    return DA3Config(model_id=f"depth-anything/{repo}", revision=revision, resolution=504, multiple_of=PATCH,
                     max_batch=max_batch)


# Monocular relative depth (ViT-L + DPT with a sky head); Apache 2.0.
DA3MONO_LARGE = da3("DA3MONO-LARGE", "f465978e618db8cc79c83b8bbf24964857db1875")
# Monocular metric depth (ViT-L + DPT with a sky head); Apache 2.0.
DA3METRIC_LARGE = da3("DA3METRIC-LARGE", "4010e39f3634a45bc60553321fb49fb760bd594e")
# Any-view models run on one view (ViT-S / ViT-B + dual DPT); Apache 2.0.
DA3_SMALL = da3("DA3-SMALL", "e08cab65ca0ec38e7826075418411ab90cab4da3", max_batch=8)
DA3_BASE = da3("DA3-BASE", "f4a6c9b3c95e41c82048423d3493a81ec3fa810e", max_batch=8)
# The retrained any-view Large (README: prefer the -1.1 checkpoints); CC BY-NC 4.0, non-commercial.
DA3_LARGE = da3("DA3-LARGE-1.1", "0e109ae307c5982f319a67cf6f9f99ccdc0ec97c")
