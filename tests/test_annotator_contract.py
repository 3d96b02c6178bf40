"""The annotator contract, once, for every registry entry: it builds from its tiny random checkpoint
through its real loading code, labels real photographs of mixed sizes with labels of the right
shape, dtype and range at each input's own size, gives the same label batched as alone, and a
missing model gives one line naming the annotator and how to provide the weights."""

from __future__ import annotations

import numpy as np
import pytest

from annotators.base import AnnotationError, NumpyAnnotator
from annotators.loading import ModelUnavailableError
from annotators.registry import REGISTRY, build
from tests.builders.tiny import tiny_annotator

# Batched == alone up to float reassociation in batched kernels (and bf16-free fp32 on CPU).
ATOL = {"openpose": 0.0}


@pytest.fixture(scope="module")
def images(sample_images) -> list[np.ndarray]:
    """Real photos at 1/6-1/8 size in three aspect ratios; the first two share a size (one batch of two)."""
    astronaut, coffee, chelsea, rocket = sample_images
    a = np.ascontiguousarray(astronaut[::8, ::8])  # 64x64
    return [a, np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(coffee[::6, ::6]),  # 67x100
            np.ascontiguousarray(rocket[::7, ::7])]  # 61x91 -> portrait below
    # fmt: skip


@pytest.fixture(scope="module")
def mixed(images) -> list[np.ndarray]:
    """The photos plus a portrait crop (taller than wide)."""
    return [*images[:3], np.ascontiguousarray(images[3].transpose(1, 0, 2))]


def check_label(domain: str, label, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    if domain == "caption":
        assert isinstance(label, str | AnnotationError)
        if isinstance(label, str):
            assert label == label.strip() and "\n" not in label
        return
    if domain == "openpose":  # a random network finds nobody; when it does, a skeleton on black
        assert label is None or (label.shape == (h, w, 3) and label.dtype == np.uint8)
        return
    assert isinstance(label, np.ndarray) and label.shape[:2] == (h, w), f"{label.shape} != {(h, w)}"
    assert np.isfinite(label).all()
    if domain == "seg_12colors":
        assert label.dtype == np.uint8 and label.ndim == 2 and label.max() < 12
    elif domain in ("edge", "lineart", "albedo"):
        assert label.dtype == np.float32 and 0.0 <= label.min() and label.max() <= 1.0
        assert label.ndim == (3 if domain == "albedo" else 2)
    elif domain == "normal":
        assert label.dtype == np.float32 and label.shape[2] == 3 and np.abs(label).max() <= 1.0 + 1e-5
    elif domain == "depth":
        assert label.dtype == np.float32 and label.ndim == 2
        assert label.min() >= 0 and label.std() > 0  # disparity is never negative; a real map came back
    elif domain == "metric_depth":
        assert label.dtype == np.float32 and label.ndim == 2 and label.min() > 0  # metres, never negative


# Annotators whose package is not on PyPI: their real network runs only where it is installed
# (none today: MoGe-2 runs on our own network, annotators/moge_net.py).
OPTIONAL_PACKAGES: dict[str, str] = {}


def needs_optional_package(name: str) -> None:
    if name in OPTIONAL_PACKAGES:
        pytest.importorskip(OPTIONAL_PACKAGES[name], reason=f"{name} needs the {OPTIONAL_PACKAGES[name]} package")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_builds_and_labels_mixed_sizes(name, mixed):
    needs_optional_package(name)
    entry = REGISTRY[name]
    annotator = tiny_annotator(name)
    assert annotator.domain == entry.domain and annotator.name == name
    batch = {"image": mixed}
    if name == "alt_text":
        batch["source_caption"] = ["a photo", None, "  a cat ", "rocket"]
    out = annotator(batch)[entry.domain]
    assert len(out) == len(mixed)
    for label, image in zip(out, mixed):
        check_label(entry.domain, label, image)


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if n != "alt_text"))
def test_batched_equals_alone(name, images):
    needs_optional_package(name)
    annotator = tiny_annotator(name)
    together = annotator.annotate(images)
    for i in (0, 1, 2):  # 0 and 1 were one batch of two
        alone = annotator.annotate([images[i]])[0]
        if annotator.domain == "seg_12colors":
            assert (alone == together[i]).mean() > 0.999, name  # an argmax tie may flip on float noise
        elif isinstance(alone, np.ndarray):
            np.testing.assert_allclose(alone, together[i], atol=ATOL.get(annotator.domain, 2e-4), err_msg=name)
        else:
            assert alone == together[i] or (isinstance(alone, AnnotationError) and alone.reason == together[i].reason)


@pytest.mark.parametrize(
    "name", sorted(n for n, e in REGISTRY.items() if not issubclass(e.cls, NumpyAnnotator) and n != "alt_text")
)
def test_missing_weights_give_one_line(name, monkeypatch, tmp_path):
    needs_optional_package(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad = {"weights_path": str(tmp_path / "none.weights.h5")} if name == "hed_bsds" else {"model_id": "no-org/none"}
    if name == "vitpose_base":  # two models (person detector + ViTPose): either may be the one reported
        bad["detector_id"] = "no-org/none"
    with pytest.raises(ModelUnavailableError) as err:
        build(name, **bad)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    assert "no-org/none" in message or "none.weights.h5" in message  # which model
    assert f"--model {name}=" in message or "weights_path" in message or "weights file" in message  # how
