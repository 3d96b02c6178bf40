"""The optimised annotator paths give the labels of the plain reference path.

Reference: every image on its own, float32 antialiased resize to the working size,
one forward per image, resize back. Optimised: the base class's uint8 resize,
same-size batching, channels_last, and bf16 autocast when asked for.
"""

from __future__ import annotations

import numpy as np
import pytest

from annotators.base import working_size
from tests.bad_inputs import photo


def reference_labels(ann, images):
    """The plain path, written out independently of the base class's batching and uint8 resize."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.inference_mode():
        for im in images:
            size = working_size(im.shape[:2], ann.config.resolution, ann.config.multiple_of)
            x = torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float() / 255.0
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
            out.append(ann.postprocess(ann._back_to_numpy(ann.forward(x.contiguous()), im.shape[:2])))
    return out


@pytest.fixture(scope="module")
def lineart(tmp_path_factory):
    """A tiny random Informative Drawings generator (its real architecture, instance norm)."""
    import annotators
    from tests.builders import RANDOM_CHECKPOINTS

    overrides = RANDOM_CHECKPOINTS["informative_drawings"](tmp_path_factory.mktemp("fast") / "id")
    return annotators.build("informative_drawings", **{**overrides, "resolution": 48})


@pytest.fixture(scope="module")
def mixed_images():
    # Two share a shape (one real batch), one has its own; all need a resize to the working size.
    return [photo((60, 80)), photo((60, 80)), photo((90, 64))]


def test_uint8_resize_is_within_one_grey_level_of_the_float_resize(lineart, mixed_images):
    import torch
    import torch.nn.functional as F

    size = (48, 64)
    fast = lineart._to_tensor(mixed_images[:2], size)
    assert fast.dtype == torch.float32 and fast.shape == (2, 3, 48, 64)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    x = torch.from_numpy(np.stack(mixed_images[:2])).permute(0, 3, 1, 2).float() / 255.0
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    assert (fast - ref).abs().max().item() <= 1.0 / 255 + 1e-6


def test_batched_fp32_labels_match_the_per_image_reference(lineart, mixed_images):
    fast = lineart.annotate(mixed_images)
    ref = reference_labels(lineart, mixed_images)
    for a, b, im in zip(fast, ref, mixed_images, strict=True):
        assert a.shape == b.shape == im.shape[:2] and a.dtype == np.float32
        # Only the resize's rounding to uint8 differs (<= 1/255 on the input); the net amplifies it a little.
        assert np.abs(a - b).max() < 0.02
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_bf16_labels_stay_within_bf16_rounding_of_the_reference(lineart, mixed_images):
    import dataclasses

    bf16 = type(lineart)(dataclasses.replace(lineart.config, dtype="bfloat16"))
    bf16.net = lineart.net  # the same weights
    fast = bf16.annotate(mixed_images)
    ref = reference_labels(lineart, mixed_images)
    for a, b in zip(fast, ref, strict=True):
        assert a.shape == b.shape and a.dtype == np.float32
        # bf16 keeps 8 mantissa bits (relative rounding 2^-8 per op); labels in [0, 1] stay within a few %.
        assert np.abs(a - b).mean() < 0.02
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_cpu_pixel_budget_splits_batches_without_changing_labels(lineart, mixed_images, monkeypatch):
    """A CPU pixel budget of one working-size image runs each image alone; labels equal the batched path's."""
    batched = lineart.annotate(mixed_images)
    assert [len(chunk) for _, chunk in lineart.batches(mixed_images)] == [2, 1]
    monkeypatch.setattr(lineart, "cpu_batch_pixels", 48 * 64)
    assert [len(chunk) for _, chunk in lineart.batches(mixed_images)] == [1, 1, 1]
    for a, b in zip(lineart.annotate(mixed_images), batched, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.fixture
def torch_threads():
    """`torch.set_num_threads` for the test; the previous count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_images_in_parallel_give_the_serial_labels(lineart, mixed_images, monkeypatch, torch_threads):
    """`cpu_image_parallel`: each image runs on its own pool thread with one torch thread; the labels
    are the serial path's, and the caller's thread count is back afterwards."""
    import threading

    import torch

    torch_threads(2)
    assert type(lineart).cpu_image_parallel
    seen = []
    forward = lineart.forward

    def recording(x):
        seen.append((threading.current_thread().name, torch.get_num_threads(), x.shape[0]))
        return forward(x)

    monkeypatch.setattr(lineart, "forward", recording)
    parallel = lineart.annotate(mixed_images)
    assert torch.get_num_threads() == 2
    assert len(seen) == 3 and all(name.startswith("annotate") and n == 1 and b == 1 for name, n, b in seen)
    monkeypatch.setattr(lineart, "cpu_image_parallel", False)
    seen.clear()
    serial = lineart.annotate(mixed_images)
    assert [b for _, _, b in seen] == [2, 1] and all(not name.startswith("annotate") for name, _, _ in seen)
    for a, b in zip(parallel, serial, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_failure_in_a_parallel_image_reaches_the_caller(lineart, mixed_images, monkeypatch, torch_threads):
    import torch

    torch_threads(2)
    forward = lineart.forward

    def failing(x):
        if x.shape[-2:] == (64, 48):
            raise RuntimeError("out of memory in one image")
        return forward(x)

    monkeypatch.setattr(lineart, "forward", failing)
    with pytest.raises(RuntimeError, match="out of memory in one image"):
        lineart.annotate(mixed_images)
    assert torch.get_num_threads() == 2


def test_fewer_images_than_threads_share_the_threads(lineart, mixed_images, monkeypatch, torch_threads):
    """Two images on four torch threads: two pool threads with two torch threads each, none left idle."""
    import torch

    counts = []
    forward = lineart.forward
    monkeypatch.setattr(lineart, "forward", lambda x: (counts.append(torch.get_num_threads()), forward(x))[1])
    torch_threads(4)
    labels = lineart.annotate(mixed_images[:2])
    assert torch.get_num_threads() == 4
    assert counts == [2, 2] and len(labels) == 2
