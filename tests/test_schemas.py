"""Record schema, label encodings and safe paths."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from schemas import LABEL_DOMAINS, RECORD_SCHEMA, LabeledRecord, Provenance, UnsafePathError, resolve_inside
from schemas.codec import decode_file, encode_file
from schemas.domains import annotation_key, canonical_domain, relative_path
from schemas.encoding import (
    ade150_to_12,
    decode_depth,
    decode_edge,
    decode_lineart,
    decode_normal,
    decode_seg,
    encode_albedo,
    encode_depth,
    encode_edge,
    encode_label,
    encode_lineart,
    encode_normal,
    encode_seg,
    palette_only,
)
from schemas.palette import ADE150_TO_12

SHARED = Path(__file__).resolve().parents[2] / "shared"

rng = np.random.default_rng(0)


def test_domain_order_matches_the_checkpoint():
    # Jodi training config `conditions`, image first: this order indexes x_embedders in Jodi.pth.
    assert LABEL_DOMAINS == ("lineart", "edge", "depth", "normal", "albedo", "seg_12colors", "openpose")
    assert canonical_domain("segmentation") == "seg_12colors"
    assert relative_path("seg_12colors", "abc") == "annotation_seg_12colors/abc.jpg.png"
    assert relative_path("image", "abc") == "image/abc.jpg"
    with pytest.raises(ValueError, match="known domains"):
        canonical_domain("heat")


def test_depth_min_max_near_bright_and_round_trip():
    disparity = rng.uniform(0.5, 3.0, (20, 30))
    stored = encode_depth(disparity)
    assert stored.dtype == np.uint8 and stored.shape == (20, 30)
    assert stored.min() == 0 and stored.max() == 255
    assert stored.flat[np.argmax(disparity)] == 255  # nearest pixel is brightest
    back = decode_depth(stored)
    expected = (disparity - disparity.min()) / (disparity.max() - disparity.min())
    assert np.abs(back - expected).max() <= 0.5 / 255 + 1e-6
    metric = 1.0 / disparity  # metric depth: far = large, stored as inverse depth so near stays bright
    assert np.array_equal(encode_depth(metric, near_is_large=False), stored)
    assert encode_depth(np.full((3, 3), 2.0)).max() == 0  # a constant map is all zeros, not NaN


def test_normal_encoding_matches_joint_convention():
    n = rng.normal(size=(16, 16, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    stored = encode_normal(n)
    assert stored.dtype == np.uint8 and stored.shape == (16, 16, 3)
    assert np.all(encode_normal(np.tile([0.0, 0.0, 1.0], (2, 2, 1))) == [128, 128, 255])
    back = decode_normal(stored)
    assert np.allclose(np.linalg.norm(back, axis=-1), 1.0, atol=1e-5)
    assert np.degrees(np.arccos(np.clip((back * n).sum(-1), -1, 1))).max() < 1.0


def test_edge_white_on_black_and_lineart_black_on_white():
    soft = rng.uniform(0, 1, (8, 9))
    edge = encode_edge(soft)
    assert edge.shape == (8, 9, 3) and np.all(edge[..., 0] == edge[..., 2])
    assert np.abs(decode_edge(edge) - soft).max() <= 0.5 / 255 + 1e-6
    assert encode_edge(np.zeros((2, 2))).max() == 0  # no edges = black
    line = encode_lineart(soft)
    assert encode_lineart(np.zeros((2, 2))).min() == 255  # no ink = white
    assert np.abs(decode_lineart(line) - soft).max() <= 0.5 / 255 + 1e-6


def test_albedo_and_seg_round_trip():
    alb = rng.uniform(0, 1, (5, 5, 3))
    assert np.abs(encode_albedo(alb) / 255.0 - alb).max() <= 0.5 / 255 + 1e-9
    classes = rng.integers(0, 12, (10, 11))
    rgb = encode_seg(classes)
    assert palette_only(rgb)
    assert np.array_equal(decode_seg(rgb), classes)
    assert not palette_only(rgb + 1)
    with pytest.raises(ValueError):
        encode_seg(np.full((2, 2), 12))


def test_ade150_mapping_matches_reference_csv():
    path = SHARED / "reference" / "ade20k_to_12colors.csv"
    if not path.exists():
        pytest.skip("../shared/reference not present")
    with open(path, newline="") as f:
        reference = {int(r["class150"]): int(r["class8"]) for r in csv.DictReader(f)}
    ours = {c: ADE150_TO_12.get(c, 0) for c in range(1, 151)}
    assert ours == {c: reference.get(c, 0) for c in range(1, 151)}
    # transformers heads are 0-based: id 12 is ADE "person" (13 in the CSV).
    assert ade150_to_12(np.array([12, 0, 2]))[0] == 1
    assert list(ade150_to_12(np.array([12, 0, 2]))) == [1, 9, 6]  # person, wall, sky


@pytest.mark.parametrize("domain", LABEL_DOMAINS)
def test_file_codec_round_trip_and_modes(domain):
    shapes = {"depth": (24, 32), "edge": (24, 32), "lineart": (24, 32), "seg_12colors": (24, 32)}
    if domain == "seg_12colors":
        label = rng.integers(0, 12, shapes[domain])
    elif domain == "openpose":
        label = np.zeros((24, 32, 3), np.uint8)
        label[10:12, 4:28] = (255, 0, 0)
    elif domain in shapes:
        label = rng.uniform(0, 1, shapes[domain])
    elif domain == "normal":
        label = np.dstack([np.zeros((24, 32)), np.zeros((24, 32)), np.ones((24, 32))])
    else:
        label = rng.uniform(0, 1, (24, 32, 3))
    stored = encode_label(domain, label)
    data = encode_file(domain, stored)
    img = Image.open(io.BytesIO(data))
    assert img.size == (32, 24)
    assert img.mode == ("L" if domain == "depth" else "RGB")
    assert img.format == ("PNG" if domain == "seg_12colors" else "JPEG")
    back = decode_file(data)
    if domain == "seg_12colors":
        assert np.array_equal(back, stored)  # lossless: only palette colours
    else:
        assert np.abs(back.astype(int) - stored.astype(int)).mean() < 6  # JPEG q95


def test_joint_example_files_have_the_encodings_we_write(joint_example):
    """The official samples: depth mode L full range, seg palette-only PNG, normals unit length."""
    import json

    line = json.loads((joint_example / "metadata.jsonl").read_text().splitlines()[0])
    depth = Image.open(joint_example / line["annotation_depth"])
    assert depth.mode == "L"
    d = np.asarray(depth)
    assert d.min() <= 2 and d.max() >= 253
    seg = np.asarray(Image.open(joint_example / line["annotation_seg_12colors"]).convert("RGB"))
    assert palette_only(seg)
    normal = decode_normal(np.asarray(Image.open(joint_example / line["annotation_normal"]).convert("RGB")))
    assert np.allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-4)
    edge = np.asarray(Image.open(joint_example / line["annotation_edge"]).convert("RGB"))
    assert edge.mean() < 60  # white soft edges on black
    lineart = np.asarray(Image.open(joint_example / line["annotation_lineart"]).convert("RGB"))
    assert lineart.mean() > 200  # black lines on white


def test_record_row_round_trip_through_parquet(tmp_path):
    import pyarrow.parquet as pq

    image = encode_file("image", rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    depth = encode_file("depth", encode_depth(rng.uniform(0, 1, (12, 16))))
    rec = LabeledRecord(
        id="0" * 32,
        source="/data/a b/ü.jpg",
        image=image,
        height=12,
        width=16,
        captions={"BLIP2-OPT-2.7b": "a cat"},
        labels={"depth": depth},
        provenance=(Provenance("depth", "depth_anything_v2_large", "depth-anything/x", "abc", "{}"),),
    )
    table = pa.Table.from_pylist([rec.to_row()], schema=RECORD_SCHEMA)
    pq.write_table(table, tmp_path / "s.parquet")
    back = LabeledRecord.from_row(pq.read_table(tmp_path / "s.parquet").to_pylist()[0])
    assert back == rec
    meta = rec.joint_metadata()
    assert meta["annotation_depth"] == f"annotation_depth/{rec.id}.jpg"
    assert "annotation_openpose" not in meta  # absent label -> absent key, as in Joint
    assert meta["info"] == {"height": 12, "width": 16}
    assert annotation_key("openpose") in RECORD_SCHEMA.names


def test_paths_never_escape_the_root(tmp_path):
    root = tmp_path / "ds"
    (root / "image").mkdir(parents=True)
    (root / "image" / "a.jpg").write_bytes(b"x")
    assert resolve_inside(root, "image/a.jpg") == (root / "image" / "a.jpg").resolve()
    for bad in ("../secret.jpg", "/etc/passwd", "image/../../x.jpg", "C:/x.jpg", "", "a\x00b"):
        with pytest.raises(UnsafePathError):
            resolve_inside(root, bad)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "image" / "link.jpg")
    with pytest.raises(UnsafePathError, match="symlink"):
        resolve_inside(root, "image/link.jpg")
