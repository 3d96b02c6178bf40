"""common/: the bottom layer (hub loading, short-side resize) on real files and real Pillow kernels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.hub import ModelUnavailableError, hub_file, load_pretrained, require
from common.imaging import DATASET_KERNEL, MODEL_INPUT_KERNEL, resize_short_side, short_side_size


def test_short_side_size_keeps_aspect_and_hits_the_target():
    assert short_side_size(480, 640, 240) == (320, 240)  # (width, height), PIL's order
    assert short_side_size(640, 480, 240) == (240, 320)
    assert short_side_size(3, 1000, 1) == (333, 1)


@pytest.mark.parametrize("kernel, pil", [(DATASET_KERNEL, Image.Resampling.LANCZOS),
                                         (MODEL_INPUT_KERNEL, Image.Resampling.BICUBIC)])
def test_each_purpose_resizes_with_its_kernel(kernel, pil):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    out = resize_short_side(image, 40, kernel)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.asarray(Image.fromarray(image).resize((60, 40), pil, reducing_gap=3.0)))
    assert np.array_equal(resize_short_side(image, 60, kernel), image)  # already at the target: unchanged
    assert resize_short_side(image, 0, kernel).shape == image.shape  # 0 = keep the input's size


def test_missing_weights_are_one_line_naming_the_model_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_pretrained(lambda *a, **k: None, "vae", str(tmp_path / "absent"), None)
    with pytest.raises(ModelUnavailableError) as info:
        hub_file("pidinet", "no-such-org/no-such-repo", "net.pth", "abc123")
    message = str(info.value)
    assert "\n" not in message and "pidinet: model 'no-such-org/no-such-repo/net.pth@abc123'" in message
    assert "huggingface-cli download no-such-org/no-such-repo net.pth --revision abc123" in message
    assert "--model pidinet=" in message
    (tmp_path / "net.pth").write_bytes(b"x")
    assert hub_file("pidinet", str(tmp_path), "net.pth", None) == str(tmp_path / "net.pth")  # a local folder


def test_require_names_the_install_command():
    with pytest.raises(ImportError, match="demo needs the `no_such_package` package: run `pip install x`"):
        require("demo", "no_such_package.sub", "pip install x")
