"""Random-weight checkpoints and per-image baselines for openpose, openpose_full and normalbae.

The OpenPose and NormalBae networks have fixed architectures, so "tiny" means the real
network with random weights (saved in fp16 to halve the disk traffic) run at a small working
resolution; `full_size=True` keeps the presets' real resolutions for timing. Files are written
with the names and key layouts of lllyasviel/Annotators, so they load through the annotators'
real loading code and through controlnet_aux's own loaders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TINY_RESOLUTION = 64  # detect/working short side for tests
TINY_NET_HEIGHT = 32  # OpenPose body input height for tests (multiple of 8)
TINY_NORMAL_RESOLUTION = 32  # NormalBae working short side for tests: one EfficientNet stride


def _state(model, half: bool) -> dict:
    return {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}


def _save_openpose_nets(folder: Path, full_size: bool, hands_and_face: bool) -> None:
    """body_pose_model.pth (+ hand_pose_model.pth, facenet.pth) with the hub files' key layout."""
    import torch
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    nets = {"body_pose_model.pth": bodypose_model}
    if hands_and_face:
        nets["hand_pose_model.pth"] = handpose_model
    for filename, cls in nets.items():
        if (folder / filename).exists():
            continue
        # The released files drop the first module name ("model0.conv1_1.weight" -> "conv1_1.weight").
        state = _state(cls(), half=not full_size)
        torch.save({k.split(".", 1)[1]: v for k, v in state.items()}, folder / filename)
    if hands_and_face and not (folder / "facenet.pth").exists():
        torch.save(_state(FaceNet(), half=not full_size), folder / "facenet.pth")


def openpose(folder: Path, full_size: bool = False) -> dict[str, Any]:
    _save_openpose_nets(Path(folder), full_size, hands_and_face=False)
    tiny = {} if full_size else {"resolution": TINY_RESOLUTION, "net_height": TINY_NET_HEIGHT, "draw_resolution": 0}
    return {"model_id": str(folder), **tiny}


def openpose_full(folder: Path, full_size: bool = False) -> dict[str, Any]:
    _save_openpose_nets(Path(folder), full_size, hands_and_face=True)
    tiny = {} if full_size else {"resolution": TINY_RESOLUTION, "net_height": TINY_NET_HEIGHT, "draw_resolution": 0}
    return {"model_id": str(folder), **tiny}


def normalbae(folder: Path, full_size: bool = False) -> dict[str, Any]:
    """scannet.pt as released: {"model": state_dict} of controlnet_aux's NNET."""
    import torch
    from controlnet_aux.normalbae.nets.NNET import NNET

    from annotators.normal_bae import build_nnet

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "scannet.pt").exists():
        torch.manual_seed(0)
        torch.save({"model": _state(build_nnet(NNET), half=not full_size)}, folder / "scannet.pt")
    return {"model_id": str(folder), **({} if full_size else {"resolution": TINY_NORMAL_RESOLUTION})}


# ----- baselines: controlnet_aux detectors, one image per call, fp32 ----------------------------


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _detect_resolution(overrides: dict[str, Any]) -> int:
    from annotators.pose import OpenposeConfig

    return int(overrides.get("resolution", OpenposeConfig.resolution))


def openpose_baseline(folder: Path, full_size: bool = False, hands_and_face: bool = False) -> Callable:
    """`OpenposeDetector(Body(...))` around the same weights, called per image at the same detect resolution."""
    from controlnet_aux.open_pose import OpenposeDetector
    from controlnet_aux.open_pose.body import Body
    from controlnet_aux.open_pose.face import Face
    from controlnet_aux.open_pose.hand import Hand

    folder = Path(folder)
    overrides = (openpose_full if hands_and_face else openpose)(folder, full_size)
    body = Body(str(folder / "body_pose_model.pth"))
    hand = Hand(str(folder / "hand_pose_model.pth")) if hands_and_face else None
    face = Face(str(folder / "facenet.pth")) if hands_and_face else None
    detector = OpenposeDetector(body, hand, face)
    for part in (body, hand, face):
        if part is not None:
            part.to(_device())
    resolution = _detect_resolution(overrides)

    def run(image: np.ndarray):
        return detector(
            image,
            detect_resolution=resolution,
            image_resolution=min(image.shape[:2]),
            include_hand=hands_and_face,
            include_face=hands_and_face,
            output_type="np",
        )

    return run


def openpose_full_baseline(folder: Path, full_size: bool = False) -> Callable:
    return openpose_baseline(folder, full_size, hands_and_face=True)


def normalbae_baseline(folder: Path, full_size: bool = False) -> Callable:
    """`NormalBaeDetector(model)` with controlnet_aux's own checkpoint loader, per image."""
    from controlnet_aux.normalbae import NormalBaeDetector, load_checkpoint
    from controlnet_aux.normalbae.nets.NNET import NNET

    from annotators.normal_bae import build_nnet

    folder = Path(folder)
    overrides = normalbae(folder, full_size)
    model = load_checkpoint(str(folder / "scannet.pt"), build_nnet(NNET)).eval()
    detector = NormalBaeDetector(model).to(_device())
    # controlnet_aux rounds sizes to multiples of 64, so it cannot run below 64.
    resolution = max(64, int(overrides.get("resolution", 512)))

    def run(image: np.ndarray):
        return detector(image, detect_resolution=resolution, image_resolution=min(image.shape[:2]), output_type="np")

    return run


RANDOM: dict[str, Callable[..., dict[str, Any]]] = {
    "openpose": openpose,
    "openpose_full": openpose_full,
    "normalbae": normalbae,
}
BASELINE: dict[str, Callable[..., Callable]] = {
    "openpose": openpose_baseline,
    "openpose_full": openpose_full_baseline,
    "normalbae": normalbae_baseline,
}
