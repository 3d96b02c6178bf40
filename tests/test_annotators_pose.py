"""openpose, openpose_full and normalbae: real controlnet_aux networks with random weights, tiny images.

A random OpenPose net finds nobody, so the grouping and drawing path is tested on synthetic
heatmaps and part affinity fields drawn from a known skeleton.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from pathlib import Path

from annotators.base import working_size
from annotators.pose_grouping import LIMBS, PAF_CHANNELS
from tests import builders as random_weights
from tests.builders.tiny import tiny_annotator, tiny_overrides
from schemas.codec import decode_file, encode_file
from schemas.encoding import decode_normal, encode_label

PRESETS = ("openpose", "openpose_full", "normalbae")

# controlnet_aux's joint colours (draw_bodypose), COCO-18 order.
JOINT_COLOURS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]  # fmt: skip
# A standing person (x, y) in pixels: nose, neck, right arm, left arm, right leg, left leg, eyes, ears.
PERSON = np.array([
    (80, 30), (80, 50), (60, 52), (48, 72), (40, 94), (100, 52), (112, 72), (120, 94), (68, 100),
    (64, 125), (62, 150), (92, 100), (96, 125), (98, 150), (74, 24), (86, 24), (66, 28), (94, 28),
], dtype=np.float64)  # fmt: skip


@pytest.fixture(scope="module")
def small_images(sample_images):
    """Three real photos, ~60-90 px (the nets are full-size): two share a size, so one batch holds two."""
    astronaut, coffee, chelsea, _ = sample_images
    cat = np.ascontiguousarray(chelsea[::5, ::5])
    cup = np.ascontiguousarray(coffee[::6, ::6][: cat.shape[0], : cat.shape[1]])
    assert cup.shape == cat.shape
    return [np.ascontiguousarray(astronaut[::8, ::8]), cat, cup]


@pytest.fixture(scope="module")
def weights():
    """name -> (folder, overrides) of its tiny random weights in the hub layout (shared with the contract test)."""
    return {name: (Path(tiny_overrides(name)["model_id"]), tiny_overrides(name)) for name in PRESETS}


@pytest.fixture(scope="module")
def annotators():
    return {name: tiny_annotator(name) for name in PRESETS}


def with_config(annotator, **changes):
    """A copy of a built annotator with other settings (all read at call time): no second model load."""
    twin = copy.copy(annotator)
    twin.config = dataclasses.replace(annotator.config, **changes)
    return twin


@pytest.fixture(scope="module")
def normals(annotators, small_images):
    """normalbae: batched labels (computed once)."""
    return (annotators["normalbae"].annotate(small_images),)


# ----- registry and loading -------------------------------------------------------------------


# ----- every preset on real images -------------------------------------------------------------


@pytest.mark.parametrize("name", ["openpose", "openpose_full"])
def test_random_openpose_finds_nobody(name, annotators, small_images):
    """A random net finds no person: every label is None (Joint omits the key). The person path is
    tested below on synthetic network outputs, where batching and determinism are checked too."""
    assert annotators[name].annotate(small_images) == [None] * len(small_images)


def test_normalbae_labels_are_unit_vectors(normals, small_images):
    # Shapes, dtype and batching are the shared contract's (tests/test_annotator_contract.py).
    for label in normals[0]:
        np.testing.assert_allclose(np.linalg.norm(label, axis=-1), 1.0, atol=1e-4)


def test_normal_encoding_matches_joint(normals, joint_example):
    """Stored normals decode to unit vectors, as Joint's own files do."""
    label = normals[0][0]
    stored = decode_file(encode_file("normal", encode_label("normal", label)), "RGB")
    assert stored.dtype == np.uint8 and stored.shape == label.shape
    ours = np.linalg.norm(decode_normal(stored), axis=-1).mean()
    theirs = np.mean(
        [
            np.linalg.norm(decode_normal(decode_file(p.read_bytes(), "RGB")), axis=-1).mean()
            for p in sorted((joint_example / "annotation_normal").glob("*.jpg"))
        ]
    )
    assert abs(ours - 1.0) < 0.01 and abs(theirs - 1.0) < 0.01


def test_joint_normals_face_the_camera_and_ground_points_up(joint_example):
    """Joint: ground (image bottom) points up (G > 128), surfaces face the camera (B > 128)."""
    for path in sorted((joint_example / "annotation_normal").glob("*.jpg")):
        n = decode_normal(decode_file(path.read_bytes(), "RGB"))
        h = n.shape[0]
        assert n[..., 2].mean() > 0.4
        assert n[-h // 8 :, :, 1].mean() > n[: h // 8, :, 1].mean() - 0.05


def test_normalbae_flip_x_negates_only_x(annotators, normals, small_images):
    unflipped = with_config(annotators["normalbae"], flip_x=False).annotate(small_images[:1])[0]
    flipped = normals[0][0]
    np.testing.assert_allclose(flipped[..., 0], -unflipped[..., 0], atol=1e-5)
    np.testing.assert_allclose(flipped[..., 1:], unflipped[..., 1:], atol=1e-5)


@pytest.mark.parametrize("memory_format", ["contiguous_format", "channels_last"])
def test_normalbae_refine_equals_the_decoder(annotators, small_images, memory_format):
    """`refine` (first layer before the upsampling, 1x1 Conv2d heads) gives controlnet_aux's
    Decoder.forward(mode="test") full-resolution output, on a batch of two real photos."""
    import torch

    from annotators.normal_bae import refine

    model = annotators["normalbae"]
    x = model._to_tensor(small_images[1:], (64, 96)).contiguous(memory_format=getattr(torch, memory_format))
    with torch.inference_mode():
        features = model.model.encoder(model.normalize(x))
        reference = model.model.decoder(features)[0][-1]
        ours = refine(model.model.decoder, features)
    assert ours.shape == reference.shape == (2, 4, 64, 96)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert not torch.equal(reference[0], reference[1])  # two different photos, two different maps


def test_normalbae_matches_controlnet_aux_detector(weights, annotators):
    """The baseline runs, and on the same input at the working size our label (unflipped) equals
    NormalBaeDetector's map up to uint8 rounding: same network, same normalisation, no resizing."""
    folder, _ = weights["normalbae"]
    side = 64  # the baseline's smallest size: controlnet_aux rounds to multiples of 64
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    ours = with_config(annotators["normalbae"], flip_x=False, resolution=side).annotate([image])[0]
    theirs = random_weights.BASELINES["normalbae"](folder)(image)
    assert theirs.shape == (side, side, 3) and theirs.dtype == np.uint8
    ours_u8 = ((ours + 1) * 0.5 * 255.0).clip(0, 255)
    assert np.abs(ours_u8 - theirs.astype(np.float64)).max() <= 2.0


@pytest.mark.parametrize("name", ["openpose", "openpose_full"])
def test_openpose_baseline_runs(name, weights, small_images):
    folder, _ = weights[name]
    out = random_weights.BASELINES[name](folder)(small_images[0])
    assert out.dtype == np.uint8 and out.shape == small_images[0].shape
    assert out.max() == 0  # nobody found: an all-black map, where we return None


# ----- grouping and drawing on synthetic maps -----------------------------------------------------


def skeleton_maps(people: list[np.ndarray], shape: tuple[int, int], sigma: float = 2.0, width: float = 2.0):
    """Heatmaps (19xHxW, a Gaussian per joint) and PAFs (38xHxW, the limb's unit vector near the limb)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((19, h, w))
    paf = np.zeros((38, h, w))
    for joints in people:
        for p, (x, y) in enumerate(joints):
            heat[p] = np.maximum(heat[p], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
        for (a, b), (cx, cy) in zip(LIMBS, PAF_CHANNELS):
            start, end = joints[a], joints[b]
            v = end - start
            length = np.hypot(*v)
            u = v / length
            along = (xx - start[0]) * u[0] + (yy - start[1]) * u[1]
            across = np.abs((xx - start[0]) * u[1] - (yy - start[1]) * u[0])
            on = (along >= -width) & (along <= length + width) & (across <= width)
            paf[cx][on], paf[cy][on] = u[0], u[1]
    heat[18] = 1.0 - heat[:18].max(0)
    return heat.astype(np.float32), paf.astype(np.float32)


def test_grouping_recovers_two_known_people():
    import torch

    from annotators.pose import _find_peaks, _group_batch

    people = [PERSON, PERSON + [120, 0]]
    heat, paf = skeleton_maps(people, (160, 256))
    peaks = _find_peaks(torch.from_numpy(heat[None, :18]), 0.1)
    found = _group_batch(peaks, torch.from_numpy(paf[None]), 160, 0.05)[0]
    assert len(found) == 2
    got = sorted((peaks[0].xy[ids] for ids in found), key=lambda xy: xy[0, 0])
    for xy, truth in zip(got, people):
        np.testing.assert_array_equal(xy, truth.astype(np.int64))


def test_rendered_skeleton_has_each_joint_colour_at_its_pixel(annotators):
    from controlnet_aux.open_pose import PoseResult
    from controlnet_aux.open_pose.body import BodyResult, Keypoint

    ann = with_config(annotators["openpose"], draw_resolution=0)
    h, w = 160, 256
    keypoints = [Keypoint(x / w, y / h) for x, y in PERSON]
    canvas = ann._render([PoseResult(BodyResult(keypoints, 1.0, 18), None, None, None)], (h, w))
    assert canvas.shape == (h, w, 3) and canvas.dtype == np.uint8
    for (x, y), colour in zip(PERSON.astype(int), JOINT_COLOURS):
        np.testing.assert_array_equal(canvas[y, x], colour)
    assert canvas[:, 200:].max() == 0 and canvas[5, 5].max() == 0  # black away from the person
    # Default draw resolution: drawn at 288 short side, resized to the input, joints stay put.
    ann = with_config(ann, draw_resolution=288)
    big = ann._render([PoseResult(BodyResult(keypoints, 1.0, 18), None, None, None)], (2 * h, 2 * w))
    assert big.shape == (2 * h, 2 * w, 3)
    x, y = PERSON[0].astype(int) * 2
    assert np.abs(big[y, x].astype(int) - JOINT_COLOURS[0]).max() <= 40


class _SyntheticBody:
    """Stands in for the body CNN's output only: stride-8 maps of PERSON at the network input's size."""

    def __init__(self, annotator):
        self.annotator = annotator

    def __call__(self, x):
        import torch

        b, _, h, w = x.shape
        scale = self.annotator.config.net_height / 160  # PERSON is drawn for a 160-px-high image
        heat, paf = skeleton_maps([PERSON * scale / 8], (h // 8, w // 8), sigma=1.0, width=1.0)
        return torch.from_numpy(paf)[None].expand(b, -1, -1, -1), torch.from_numpy(heat)[None].expand(b, -1, -1, -1)


@pytest.mark.parametrize("name", ["openpose", "openpose_full"])
def test_person_is_detected_and_drawn_at_input_size(name, annotators):
    """The full annotate path (device upsampling, peaks, grouping, hands/face crops, drawing) on a synthetic body."""
    changes = {"resolution": 160, "net_height": 160, "draw_resolution": 0}
    if name == "openpose_full":
        changes.update(hand_scales=(0.125,), face_size=48)
    ann = with_config(annotators[name], **changes)
    ann.forward = _SyntheticBody(ann)
    calls = {"hand": 0, "face": 0}
    hooks = [
        getattr(ann, part).register_forward_hook(lambda *_, part=part: calls.__setitem__(part, calls[part] + 1))
        for part in ("hand", "face")
        if getattr(ann, part) is not None
    ]
    images = [np.full((160, 256, 3), 90, np.uint8), np.full((320, 512, 3), 90, np.uint8)]
    labels = ann.annotate(images)
    for label, image in zip(labels, images):
        assert label is not None and label.shape == image.shape and label.dtype == np.uint8
        s = image.shape[0] // 160
        x, y = (PERSON[1] * s).astype(int)  # the neck; peaks from stride-8 maps land within a few pixels
        window = label[y - 4 * s : y + 4 * s + 1, x - 4 * s : x + 4 * s + 1].reshape(-1, 3).astype(int)
        assert (np.abs(window - JOINT_COLOURS[1]).max(axis=1) <= 40).any()
    assert working_size((320, 512), 160, 1) == (160, 256)
    if name == "openpose":  # batching: the first image alone gets the label it got beside the second
        np.testing.assert_array_equal(labels[0], ann.annotate(images[:1])[0])
    for hook in hooks:
        hook.remove()
    if name == "openpose_full":  # both people's hands in one forward (one scale here), both faces in another
        assert calls == {"hand": 1, "face": 1}
    empty = with_config(ann)
    empty.forward = lambda x: tuple(t * 0 for t in _SyntheticBody(ann)(x))
    assert empty.annotate(images) == [None, None]


def test_same_people_as_controlnet_aux_on_the_same_network_output(annotators):
    """Parity of everything after the CNN: one stand-in network (stride-8 maps of PERSON) inside both
    controlnet_aux's `OpenposeDetector` and our annotator gives the same joints (within 2 px of 192)."""
    import torch
    from controlnet_aux.open_pose import OpenposeDetector
    from controlnet_aux.open_pose.body import Body

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))  # Body reads the device from a parameter

        def forward(self, x):
            h, w = x.shape[-2:]
            joints = PERSON * (192 / 160) * (184 / 192) / 8  # drawn for a 192-px detect image, net height 184
            heat, paf = skeleton_maps([joints], (h // 8, w // 8), sigma=1.0, width=1.0)
            b = x.shape[0]
            return torch.from_numpy(paf)[None].repeat(b, 1, 1, 1), torch.from_numpy(heat)[None].repeat(b, 1, 1, 1)

    image = np.full((192, 320, 3), 90, np.uint8)  # multiples of 64: controlnet_aux does not resize it
    body = Body.__new__(Body)
    body.model = StandIn()
    theirs = OpenposeDetector(body).detect_poses(image)
    ann = with_config(annotators["openpose"], resolution=192, net_height=184)
    ann.body = StandIn()
    ours = ann._detect_batch([image], (192, 320))[0]
    assert len(theirs) == len(ours) == 1
    pairs = list(zip(theirs[0].body.keypoints, ours[0].body.keypoints))
    assert len(pairs) == 18 and all(a is not None and b is not None for a, b in pairs)
    for a, b in pairs:
        assert abs(a.x - b.x) * 320 <= 2 and abs(a.y - b.y) * 192 <= 2
