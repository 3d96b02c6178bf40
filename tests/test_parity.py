"""Parity with the upstream reference code, as a tested property.

For every annotator whose reference runs here, the same random weights go to both sides and our
label must equal the reference label within 1/255 (2/255 after a JPEG round trip) on real
photographs of several aspect ratios: controlnet_aux detectors (their own resizes restored by
`parity=True`), and the authors' algorithms of Depth Anything V2, Lotus-D and RGB-X re-expressed
below with the libraries they use (OpenCV, torchvision), not with our helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io

import numpy as np
import pytest

from annotators.registry import build
from schemas.codec import JPEG_PROFILES, decode_file, encode_file
from tests.builders.tiny import tiny_annotator, tiny_overrides

ONE = 1.0 / 255.0


@pytest.fixture(scope="module")
def photos(sample_images) -> dict[str, np.ndarray]:
    """Real photographs in three aspect ratios, ~100-190 px: landscape 3:2, portrait 2:3 and square."""
    astronaut, coffee, _, rocket = sample_images
    return {
        "landscape": np.ascontiguousarray(coffee[::4, ::4]),  # 100x150
        "portrait": np.ascontiguousarray(rocket[::3, ::3].transpose(1, 0, 2)[:, :100]),  # 213x100 crop
        "square": np.ascontiguousarray(astronaut[::4, ::4]),  # 128x128
    }


def twin(annotator, **changes):
    """The same loaded model with other settings (read at call time): no second load."""
    other = copy.copy(annotator)
    other.config = dataclasses.replace(annotator.config, **changes)
    return other


# ----- JPEG: the `joint` profile writes what Joint-1.6M's files are ------------------------------


def _standard_q75_luma() -> list[int]:
    """libjpeg's standard luminance table (ITU T.81 Annex K) scaled to quality 75, in zigzag order."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="JPEG", quality=75)
    return list(Image.open(buf).quantization[0])


@pytest.mark.parametrize("domain", ["image", "normal", "edge", "depth"])
def test_joint_profile_is_libjpeg_q75_with_420_chroma(domain, photos):
    from PIL import Image, JpegImagePlugin

    rgb = photos["landscape"]
    data = encode_file(domain, rgb[..., 0] if domain == "depth" else rgb, "joint")
    img = Image.open(io.BytesIO(data))
    assert list(img.quantization[0]) == _standard_q75_luma() and list(img.quantization[0])[:4] == [8, 6, 5, 8]
    assert JpegImagePlugin.get_sampling(img) == (-1 if domain == "depth" else 2)  # grey has no chroma; else 4:2:0
    high = Image.open(io.BytesIO(encode_file(domain, rgb[..., 0] if domain == "depth" else rgb)))
    assert JpegImagePlugin.get_sampling(high) in (-1, 0) and high.quantization[0][0] < img.quantization[0][0]


def test_joint_profile_matches_the_official_files(joint_example):
    from PIL import Image, JpegImagePlugin

    ours = Image.open(io.BytesIO(encode_file("image", np.zeros((16, 16, 3), np.uint8), "joint")))
    for path in sorted(joint_example.glob("*/*.jpg")):
        theirs = Image.open(path)
        assert theirs.quantization == {k: v for k, v in ours.quantization.items() if k in theirs.quantization}
        if theirs.mode == "RGB":
            assert JpegImagePlugin.get_sampling(theirs) == JpegImagePlugin.get_sampling(ours) == 2
    assert JPEG_PROFILES["joint"].quality == 75


# ----- controlnet_aux detectors ------------------------------------------------------------------


def _controlnet_aux_reference(name: str, net, image: np.ndarray, resolution: int) -> np.ndarray:
    """The detector's label (uint8, at its 64-multiple size) resized back to the photo with cubic."""
    import cv2
    from controlnet_aux import HEDdetector, LineartDetector, PidiNetDetector

    kw = {"detect_resolution": resolution, "image_resolution": resolution, "output_type": "np"}
    if name == "pidinet":
        out = PidiNetDetector(net)(image, **kw)
    elif name == "hed_controlnet":
        out = HEDdetector(net)(image, **kw)
    else:  # LineartDetector inverts to white ink on black: the same convention as our ink strength
        out = LineartDetector(net, net)(image, **kw)
    h, w = image.shape[:2]
    return cv2.resize(out[..., 0], (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0


@functools.cache
def _plain_pidinet():
    """controlnet_aux's PiDiNet with its pixel-difference convolutions (ours folds them at load)."""
    return build("pidinet", **{**tiny_overrides("pidinet"), "reparameterize": False})


@pytest.mark.parametrize("name", ["pidinet", "informative_drawings", "hed_controlnet"])
@pytest.mark.parametrize("aspect", ["landscape", "portrait"])
def test_controlnet_aux_parity(name, aspect, photos):
    image = photos[aspect]
    ours = twin(tiny_annotator(name), parity=True, resolution=128)
    label = ours.annotate([image])[0]
    net = ours.net if name != "pidinet" else _plain_pidinet().net
    ref = _controlnet_aux_reference(name, net, image, 128)
    assert label.shape == ref.shape
    # The reference's cubic runs on uint8 (rounded, saturated): within one level.
    assert np.abs(label - ref).max() <= ONE + 1e-6, f"{name}/{aspect}: {np.abs(label - ref).max() * 255:.2f}/255"
    a = decode_file(encode_file("edge", (label * 255).round().astype(np.uint8), "joint")).astype(np.float32)
    b = decode_file(encode_file("edge", (ref * 255).round().astype(np.uint8), "joint")).astype(np.float32)
    assert np.abs(a - b).mean() <= 2.0 and np.quantile(np.abs(a - b), 0.99) <= 2.0  # after Joint's JPEG


# ----- Depth Anything V2: the authors' infer_image ----------------------------------------------


def _dav2_infer_image(model, raw_rgb: np.ndarray, input_size: int) -> np.ndarray:
    """depth_anything_v2/dpt.py `infer_image` + util/transform.py, on the transformers port of the network."""
    import math

    import cv2
    import torch
    import torch.nn.functional as F

    h, w = raw_rgb.shape[:2]
    image = raw_rgb.astype(np.float32) / 255.0
    scale = max(input_size / h, input_size / w)  # keep_aspect_ratio, resize_method="lower_bound"

    def constrain(x):  # ensure_multiple_of=14 with min_val=input_size
        y = int(np.round(x / 14) * 14)
        return y if y >= input_size else int(math.ceil(x / 14) * 14)

    nh, nw = constrain(scale * h), constrain(scale * w)
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_CUBIC)
    image = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        depth = model(pixel_values=x).predicted_depth
        depth = F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=True)[0, 0]
    return depth.numpy()


@pytest.mark.parametrize("aspect", ["landscape", "portrait", "square"])
def test_depth_anything_v2_parity(aspect, photos):
    ann = tiny_annotator("depth_anything_v2_small")
    ours = twin(ann, parity=True, resolution=70).annotate([photos[aspect]])[0]
    ref = _dav2_infer_image(ann.model, photos[aspect], 70)
    span = ref.max() - ref.min()
    assert ours.shape == ref.shape and span > 0
    # Joint stores depth min-max normalised to 8 bits: compare on that scale.
    assert np.abs((ours - ref.min()) / span - (ref - ref.min()) / span).max() <= ONE


# ----- Lotus-D: LotusDPipeline + infer.py ------------------------------------------------------


def _lotus_reference(ann, raw_rgb: np.ndarray, processing_res: int) -> np.ndarray:
    """infer.py: rgb/127.5 - 1, `resize_max_res` (torchvision bilinear, antialias), one UNet step at
    t=999 with the task switcher, VAE decode, (x + 1) / 2, back to the input size with NEAREST_EXACT.
    The VAE latent is the posterior mode on both sides (upstream samples; its std is ~0)."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    x = torch.from_numpy(raw_rgb.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    h, w = x.shape[-2:]
    s = processing_res / max(h, w)
    nh, nw = int(h * s) // 8 * 8, int(w * s) // 8 * 8  # ours floors to the VAE stride (docstring)
    x = resize(x, [nh, nw], InterpolationMode.BILINEAR, antialias=True)
    task = torch.tensor([[1.0, 0.0]])
    task = torch.cat([torch.sin(task), torch.cos(task)], dim=-1)
    with torch.no_grad():
        latent = ann.vae.encode(x).latent_dist.mode() * ann.vae.config.scaling_factor
        pred = ann.unet(latent, torch.tensor([999]), encoder_hidden_states=ann.prompt_embedding,
                        class_labels=task).sample
        image = ann.vae.decode(pred / ann.vae.config.scaling_factor).sample.clamp(-1, 1)
    image = (image + 1.0) / 2.0
    image = resize(image, [h, w], InterpolationMode.NEAREST_EXACT)
    return image[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("aspect", ["landscape", "portrait"])
def test_lotus_normal_parity(aspect, photos):
    ann = tiny_annotator("lotus_normal")
    ours = twin(ann, resolution=96).annotate([photos[aspect]])[0]
    ref = _lotus_reference(ann, photos[aspect], 96)
    assert np.abs((ours + 1.0) / 2.0 - ref).max() <= ONE  # stored as (n + 1) / 2, not renormalised


# ----- RGB-X: gradio_demo_rgb2x.py + pipeline_rgb2x.py -------------------------------------------


def _rgbx_reference(ann, raw_rgb: np.ndarray, max_side: int, steps: int) -> np.ndarray:
    """The demo: linearise (x^2.2), torchvision Resize to long side `max_side` (multiples of 8), DDIM
    (zero-SNR, trailing) over [noisy, image] latents with the padded prompt, decode, x^(1/2.2), Resize back."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor
    from torchvision.transforms import Resize

    photo = torch.from_numpy((raw_rgb.astype(np.float32) / 255.0) ** 2.2).permute(2, 0, 1)
    old_h, old_w = photo.shape[1:]
    ratio = old_h / old_w
    if old_h > old_w:
        new_h, new_w = max_side, int(max_side / ratio)
    else:
        new_h, new_w = int(max_side * ratio), max_side
    if new_w % 8 or new_h % 8:
        new_w, new_h = new_w // 8 * 8, new_h // 8 * 8
    photo = Resize((new_h, new_w))(photo)
    sched = ann.scheduler
    sched.set_timesteps(steps)
    with torch.no_grad():
        image_latent = ann.vae.encode(photo[None] * 2 - 1).latent_dist.mode() * ann.vae.config.scaling_factor
        gen = torch.Generator().manual_seed(ann.config.seed)
        latents = randn_tensor(image_latent.shape, generator=[gen], dtype=torch.float32) * sched.init_noise_sigma
        for t in sched.timesteps:
            model_in = torch.cat([sched.scale_model_input(latents, t), image_latent], dim=1)
            out = ann.unet(model_in, t, encoder_hidden_states=ann.prompt_embedding).sample
            latents = sched.step(out, t, latents).prev_sample
        image = ann.vae.decode(latents / ann.vae.config.scaling_factor).sample.clamp(-1, 1)
    image = ((image[0] + 1) / 2).clamp(0, 1) ** (1 / 2.2)
    return Resize((old_h, old_w))(image).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("aspect", ["landscape", "portrait"])
def test_rgbx_albedo_parity(aspect, photos):
    ann = tiny_annotator("rgbx_albedo")
    ours = twin(ann, resolution=96).annotate([photos[aspect]])[0]
    ref = _rgbx_reference(ann, photos[aspect], 96, ann.config.num_inference_steps)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= ONE


# ----- OpenPose: controlnet_aux's draw-then-resize path ------------------------------------------


@pytest.mark.parametrize("size", [(1024, 1916), (1916, 1024), (600, 600)])  # landscape, portrait, square
def test_openpose_strokes_follow_the_detectors_draw_then_resize(size):
    """Same poses: our label equals OpenposeDetector's output (its detect-size canvas, its bilinear
    resize) brought to the image's size, for portrait as for landscape images."""
    import cv2
    from controlnet_aux import OpenposeDetector
    from controlnet_aux.open_pose import PoseResult
    from controlnet_aux.open_pose.body import BodyResult, Keypoint

    from tests.test_annotators_pose import PERSON

    h, w = size
    people = [PoseResult(BodyResult([Keypoint(x / 256, y / 160) for x, y in PERSON], 1.0, 18), None, None, None)]
    ann = tiny_annotator("openpose")
    ours = twin(ann, draw_resolution=288)._render(people, size)
    detector = OpenposeDetector(body_estimation=None)
    detector.detect_poses = lambda *args, **kwargs: people  # the network's output, given
    theirs = detector(np.zeros((h, w, 3), np.uint8), detect_resolution=288, image_resolution=288, output_type="np")
    theirs = cv2.resize(theirs, (w, h), interpolation=cv2.INTER_LINEAR)
    assert ours.shape == theirs.shape == (h, w, 3)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # The nose circle (pure red) is ~4 px on a 256-px canvas, ~36 px once resized to a 1024-px short side.
    red = np.argwhere((np.abs(ours.astype(int) - (255, 0, 0)) <= 40).all(axis=2))
    diameter = red[:, 0].max() - red[:, 0].min() + 1
    assert abs(diameter - 9 * min(size) / 256) <= 0.25 * 9 * min(size) / 256
