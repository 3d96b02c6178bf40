"""Read/decode rules on good and bad files (no Ray)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.decode import DecodeError, DecodeRules, content_id, decode_image, resize_short_side
from tests.bad_inputs import exif_rotated_jpeg, photo, write_corpus

RULES = DecodeRules(min_short_side=32, target_short_side=64, max_pixels=50_000_000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


def test_every_case_decodes_or_fails_with_its_reason(corpus):
    folder, expected = corpus
    for name, reason in expected.items():
        data = (folder / name).read_bytes()
        if reason is None:
            img = decode_image(data, RULES)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
            assert min(img.shape[:2]) == 64, name
        else:
            with pytest.raises(DecodeError) as err:
                decode_image(data, RULES)
            assert err.value.reason == reason, (name, err.value)


def test_exif_orientation_is_applied():
    a = photo((60, 100))  # landscape pixels
    img = decode_image(exif_rotated_jpeg(a), DecodeRules(min_short_side=10, target_short_side=0))
    assert img.shape[:2] == (100, 60)  # displayed portrait


def test_sixteen_bit_is_scaled_not_clipped(corpus):
    folder, _ = corpus
    img = decode_image((folder / "grey16.png").read_bytes(), DecodeRules(min_short_side=10, target_short_side=0))
    ref = photo()[..., 0]
    assert np.abs(img[..., 0].astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(img[..., 0], img[..., 2])


def test_alpha_is_composited_on_white(corpus):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 4), np.uint8)).save(buf, format="PNG")  # fully transparent
    img = decode_image(buf.getvalue(), DecodeRules(min_short_side=10, target_short_side=0))
    assert img.min() == 255


def test_bomb_is_refused_from_the_header_alone(corpus):
    folder, _ = corpus
    with pytest.raises(DecodeError, match="900000000 pixels|30000x30000") as err:
        decode_image((folder / "bomb.png").read_bytes(), DecodeRules())
    assert err.value.reason == "decompression_bomb"


def test_resize_short_side_keeps_aspect():
    a = np.zeros((300, 451, 3), np.uint8)
    out = resize_short_side(a, 1024)
    assert out.shape == (1024, 1539, 3)  # 451 * 1024 / 300 = 1539.4
    assert resize_short_side(a, 300).shape == a.shape  # already at target: unchanged
    assert resize_short_side(np.zeros((2000, 1000, 3), np.uint8), 1024).shape == (2048, 1024, 3)


def test_content_id_is_md5_of_the_file_bytes():
    assert content_id(b"abc") == hashlib.md5(b"abc").hexdigest()
