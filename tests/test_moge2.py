"""MoGe-2 on our own network: the official checkpoint layout loads strictly, the label contract holds
(one forward per image for depth and normals, batched == alone, invalid pixels), and the focal/shift
recovery returns a known camera from a synthetic point map.

The checkpoint is tiny and random (tests/builders/moge.py) in the official format, read from a local
folder through the annotator's real loading path (hub_file, weights-only torch.load) with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from annotators.loading import ModelUnavailableError
from annotators.moge import load_moge
from annotators.moge_net import MoGeNet, VisionTransformer, recover_focal_shift, view_plane_uv
from annotators.registry import build
from tests.builders.moge import FULL_VIT, model_config, moge2, moge2_baseline

# Key names of microsoft/MoGe's v2 MoGeModel state dict (modules.py / vision_transformer.py attribute names).
OFFICIAL_KEYS = [
    "encoder.image_mean", "encoder.image_std", "encoder.output_projections.3.weight",
    "encoder.backbone.cls_token", "encoder.backbone.pos_embed", "encoder.backbone.mask_token",
    "encoder.backbone.patch_embed.proj.weight", "encoder.backbone.blocks.0.norm1.weight",
    "encoder.backbone.blocks.0.attn.qkv.weight", "encoder.backbone.blocks.0.attn.proj.bias",
    "encoder.backbone.blocks.0.ls1.gamma", "encoder.backbone.blocks.0.mlp.fc1.weight",
    "encoder.backbone.blocks.0.ls2.gamma", "encoder.backbone.norm.weight",
    "neck.input_blocks.0.weight", "neck.res_blocks.1.0.layers.2.weight", "neck.resamplers.0.0.weight",
    "neck.resamplers.3.1.weight", "points_head.output_blocks.4.weight", "normal_head.output_blocks.4.bias",
    "mask_head.output_blocks.4.weight", "scale_head.0.weight", "scale_head.4.bias",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moge2")
    moge2(folder)
    return folder


@pytest.fixture(scope="module")
def annotator(folder):
    return build("moge2_vitl_normal", **moge2(folder))


def _images(seed: int = 0) -> list[np.ndarray]:
    """Square, landscape, portrait and a wide strip."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 64), (67, 100), (91, 61), (40, 120))]


def test_checkpoint_loads_strictly_with_the_official_key_names(folder):
    checkpoint = torch.load(folder / "model.pt", weights_only=True)
    net = load_moge("moge2_vitl_normal", str(folder), "model.pt", None)  # load_state_dict(strict=True) inside
    assert set(net.state_dict()) == set(checkpoint["model"])
    assert set(OFFICIAL_KEYS) <= set(checkpoint["model"])
    for key, value in net.state_dict().items():
        assert torch.equal(value, checkpoint["model"][key]), key


def test_full_size_layout_has_the_published_shapes():
    """The ViT-L config on the meta device (no memory): DINOv2 ViT-L/14 tensors and the neck's 1024+2 input."""
    with torch.device("meta"):
        net = MoGeNet(VisionTransformer(**FULL_VIT, name="dinov2_vitl14"), model_config(full_size=True))
    state = net.state_dict()
    assert state["encoder.backbone.pos_embed"].shape == (1, 1370, 1024)  # 37 x 37 patches + class token
    assert state["encoder.backbone.blocks.23.attn.qkv.weight"].shape == (3072, 1024)
    assert state["encoder.backbone.patch_embed.proj.weight"].shape == (1024, 3, 14, 14)
    assert net.encoder.backbone.blocks[0].attn.heads == 16
    assert state["neck.input_blocks.0.weight"].shape == (1024, 1026, 1, 1)
    assert state["scale_head.0.weight"].shape == (1024, 1024)
    assert set(OFFICIAL_KEYS) <= set(state)


def test_depth_and_normal_shapes_dtypes_ranges_at_each_inputs_size(annotator):
    images = _images()
    out = annotator({"image": images})
    assert set(out) == {"depth", "normal"}
    for image, depth, normal in zip(images, out["depth"], out["normal"]):
        h, w = image.shape[:2]
        assert depth.shape == (h, w) and depth.dtype == np.float32 and np.isfinite(depth).all()
        assert depth.min() >= 0 and depth.std() > 0
        assert normal.shape == (h, w, 3) and normal.dtype == np.float32
        # Unit length, up to the bilinear resize back from the working size.
        np.testing.assert_allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=0.02)


def test_one_forward_per_image_for_both_domains(annotator, monkeypatch):
    seen: list[int] = []
    forward = annotator.net.forward

    def counting(x, num_tokens):
        seen.append(len(x))
        return forward(x, num_tokens)

    monkeypatch.setattr(annotator.net, "forward", counting)
    same = [_images()[1]] * 3
    out = annotator({"image": same})
    assert seen == [3]  # one batched pass labelled both domains of all three
    assert len(out["depth"]) == len(out["normal"]) == 3
    seen.clear()
    annotator({"image": _images()})
    assert sum(seen) == 4  # four sizes: each image through the network once


def test_batched_equals_single(annotator):
    images = [_images(1)[1], _images(2)[1], _images(3)[1]]
    together = annotator({"image": images})
    for i, image in enumerate(images):
        alone = annotator({"image": [image]})
        for domain in ("depth", "normal"):
            np.testing.assert_allclose(alone[domain][0], together[domain][i], atol=2e-4, rtol=1e-4)


def test_deterministic(folder, annotator):
    again = build("moge2_vitl_normal", **moge2(folder))
    images = _images()
    a, b = annotator({"image": images}), again({"image": images})
    for domain in ("depth", "normal"):
        for x, y in zip(a[domain], b[domain]):
            np.testing.assert_array_equal(x, y)


def test_invalid_pixels_get_depth_zero_and_the_viewer_facing_normal(folder):
    annotator = build("moge2_vitl_normal", **moge2(folder))
    x = torch.from_numpy(_images()[1]).permute(2, 0, 1)[None].float() / 255.0
    bias = annotator.net.mask_head.output_blocks[4].bias
    with torch.inference_mode():
        # Centre the mask logits on their median: about half the pixels become invalid (sky).
        logits = torch.logit(annotator.net(x, 64)["mask"])
        bias -= logits.median()
        raw = annotator.net(x, 64)
        label = annotator.forward(x)[0]
    valid = raw["mask"][0] > 0.5
    assert 0.2 < valid.float().mean() < 0.8
    inverse, normal = label[0], label[1:].permute(1, 2, 0)
    assert (inverse[~valid] == 0).all() and (inverse >= 0).all()
    # `infer` also drops pixels whose shifted depth is <= 0; what is left is the labelled set.
    labelled = inverse > 0
    assert (labelled <= valid).all() and labelled.float().mean() > 0.1
    assert (normal[~labelled] == torch.tensor([0.0, 0.0, 1.0])).all()
    # Labelled pixels: the network's OpenCV-frame normal with y and z negated.
    torch.testing.assert_close(normal[labelled], raw["normal"][0][labelled] * torch.tensor([1.0, -1.0, -1.0]))


def test_label_is_the_inverse_of_the_recipes_metric_depth(folder, annotator):
    """At the working size (56 short side, even sides) the annotator matches MoGe's per-image recipe."""
    image = np.random.default_rng(5).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    ref = moge2_baseline(folder)(image)
    depth = annotator({"image": [image]})["depth"][0]
    mask = ref["mask"].numpy()
    np.testing.assert_allclose(depth[mask], 1.0 / ref["depth"].numpy()[mask], rtol=1e-4)
    assert (depth[~mask] == 0).all()


def _camera_points(focal: float, shift: float, h: int = 48, w: int = 64):
    """A slanted plane seen by a centred pinhole camera with `focal` (relative to half the diagonal),
    then moved by -shift in z: the affine-invariant point map MoGe predicts."""
    uv = view_plane_uv(h, w, w / h, dtype=torch.float64)
    depth = 3.0 + 0.8 * uv[..., 0] - 0.5 * uv[..., 1]
    points = torch.stack([uv[..., 0] * depth / focal, uv[..., 1] * depth / focal, depth - shift], dim=-1)
    return points.float()[None]


def test_view_plane_uv_spans_the_half_diagonal_at_pixel_centres():
    uv = view_plane_uv(3, 4, 4 / 3)  # diagonal 5: x in +-4/5, y in +-3/5, shrunk to pixel centres
    torch.testing.assert_close(uv[0, 0], torch.tensor([-0.8 * 3 / 4, -0.6 * 2 / 3]))
    torch.testing.assert_close(uv[-1, -1], torch.tensor([0.8 * 3 / 4, 0.6 * 2 / 3]))


@pytest.mark.parametrize(("focal", "shift"), [(1.3, 1.7), (0.6, -0.4), (2.5, 0.0)])
def test_focal_shift_recovery_returns_the_known_camera(focal, shift):
    f, s = recover_focal_shift(_camera_points(focal, shift))
    assert math.isclose(f.item(), focal, rel_tol=1e-3) and math.isclose(s.item(), shift, abs_tol=1e-3)


def test_focal_shift_recovery_ignores_masked_points():
    points = _camera_points(1.3, 1.7)
    mask = torch.ones(points.shape[:3], dtype=torch.bool)
    mask[:, :, 40:] = False
    points[:, :, 40:] = 100.0  # garbage where the mask says sky
    f, s = recover_focal_shift(points, mask)
    assert math.isclose(f.item(), 1.3, rel_tol=1e-3) and math.isclose(s.item(), 1.7, abs_tol=1e-3)
    f, s = recover_focal_shift(points, torch.zeros_like(mask))  # nothing valid: upstream's fallback
    assert (f.item(), s.item()) == (1.0, 0.0)


def test_bad_checkpoints_fail_in_one_line(folder, tmp_path):
    config = model_config()
    state = torch.load(folder / "model.pt", weights_only=True)["model"]
    torch.save({"model_config": {**config, "normal_head": None}, "model": state}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="no normal head"):
        build("moge2_vitl_normal", model_id=str(tmp_path))
    torch.save({"model_config": {**config, "extra": 1}, "model": state}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"does not implement: \['extra'\]"):
        build("moge2_vitl_normal", model_id=str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build("moge2_vitl_normal", model_id=str(tmp_path / "absent"))
