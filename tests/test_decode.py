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


def flat_png(width: int, height: int) -> bytes:
    """A real 8-bit greyscale PNG of width x height pixels, cheap to make: one grey level, rows filtered
    "none", deflated at level 1 (PNG spec: signature, IHDR, IDAT, IEND)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x80" * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(row * height, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_pngs():
    # 99.0 MP (under the default 100 M max_pixels, over Pillow's own 89.5 M limit) and 108.2 MP.
    return flat_png(9950, 9950), flat_png(10400, 10400)


def test_max_pixels_is_the_limit_that_applies_not_pillows(big_pngs):
    from PIL import Image

    mp99, mp108 = big_pngs
    pillow_limit = Image.MAX_IMAGE_PIXELS
    small = dict(min_short_side=32, target_short_side=32)
    img = decode_image(mp99, DecodeRules(**small))  # default max_pixels 100_000_000
    assert img.shape == (32, 32, 3) and int(img.min()) == int(img.max()) == 128
    img = decode_image(mp108, DecodeRules(max_pixels=300_000_000, **small))
    assert img.shape == (32, 32, 3)
    with pytest.raises(DecodeError, match=r"10400x10400 = 108160000 pixels > max_pixels 100000000") as err:
        decode_image(mp108, DecodeRules(**small))
    assert err.value.reason == "decompression_bomb"
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # restored for any other Pillow user in the process


def test_captions_from_text_and_json_files():
    from pipeline.decode import MAX_CAPTION_BYTES, parse_caption

    assert parse_caption(b"  A red motorcycle.\n", "txt") == "A red motorcycle."
    assert parse_caption(b'{"caption": "A cat.", "url": "http://x"}', "json") == "A cat."
    assert parse_caption(b'{"url": "http://x"}', "json") == ""  # img2dataset's json without a caption
    for data, kind in ((b"\xff\xfe\x00", "txt"), (b"{not json", "json"), (b'{"caption": 3}', "json"),
                       (b"x" * (MAX_CAPTION_BYTES + 1), "txt")):  # fmt: skip
        with pytest.raises(DecodeError) as err:
            parse_caption(data, kind)
        assert err.value.reason == "bad_caption", data[:20]
