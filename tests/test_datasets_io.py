"""Datasets in and out: the Joint/Parquet reader, conversion, `datasets` round trips, validate, preview, publish."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from jobs.cli import main as jodi
from pipeline.convert import ShardConfig, parquet_to_joint, write_joint, write_parquet
from pipeline.preview import contact_sheet
from pipeline.publish import HubLayoutError, PublishConfig, check_hub_layout, prepare_folder
from pipeline.validate import validate
from schemas.codec import decode_file, encode_file
from schemas.encoding import encode_depth, encode_edge, encode_lineart, encode_normal, encode_seg
from schemas.joint import (
    JointFormatError,
    detect_layout,
    iter_joint,
    iter_joint_entries,
    iter_parquet,
    iter_records,
    parquet_files,
)
from schemas.paths import UnsafePathError
from schemas.palette import PALETTE
from schemas.record import ERROR_SCHEMA, LabeledRecord, Provenance

TOKEN = "hf_jodiTestToken0123456789abcdef"
REPO = Path(__file__).resolve().parents[1]


def _labels(rgb: np.ndarray, with_pose: bool) -> dict[str, bytes]:
    """Real encodings of simple synthetic label maps of the image's size."""
    h, w = rgb.shape[:2]
    grey = rgb.mean(axis=-1) / 255.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gy, gx = np.gradient(grey)
    normal = np.dstack([(xx / w - 0.5), (yy / h - 0.5), np.ones_like(xx)])
    labels = {
        "edge": encode_file("edge", encode_edge(np.clip(np.hypot(gx, gy) * 4, 0, 1))),
        "lineart": encode_file("lineart", encode_lineart(np.clip(np.hypot(gx, gy) * 2, 0, 1))),
        "depth": encode_file("depth", encode_depth(yy + grey)),
        "normal": encode_file("normal", encode_normal(normal)),
        "seg_12colors": encode_file("seg_12colors", encode_seg((xx * 12 // w).astype(np.int64))),
    }
    if with_pose:
        canvas = np.zeros((h, w, 3), np.uint8)
        canvas[h // 4 : h // 2, w // 2 - 1 : w // 2 + 1] = (255, 0, 85)
        labels["openpose"] = encode_file("openpose", canvas)
    return labels


@pytest.fixture(scope="module")
def records(sample_images) -> list[LabeledRecord]:
    """Three small labeled records built the way the label job builds them (md5 ids, real encodings)."""
    out = []
    for i, img in enumerate(sample_images[:3]):
        rgb = np.asarray(Image.fromarray(img).resize((48, 32 + 8 * i), Image.Resampling.BILINEAR))
        image = encode_file("image", rgb)
        out.append(
            LabeledRecord(
                id=hashlib.md5(image).hexdigest(),
                source=f"memory://sample-{i}.png",
                image=image,
                height=rgb.shape[0],
                width=rgb.shape[1],
                captions={"BLIP2-OPT-2.7b": f"sample {i}", "Qwen2-VL-7b-Instruct": f"a longer caption {i}"},
                labels=_labels(rgb, with_pose=i == 1),
                provenance=(
                    Provenance("edge", "canny", None, None, '{"low_threshold": 100}'),
                    Provenance("depth", "depth_anything_v2_small", "depth-anything/Depth-Anything-V2-Small-hf", "abc123"),
                ),
            )
        )
    return out


@pytest.fixture()
def joint_dir(tmp_path, records) -> Path:
    write_joint(records, tmp_path / "joint")
    return tmp_path / "joint"


def _pixels(data: bytes) -> np.ndarray:
    return decode_file(data)


# ----- reader -------------------------------------------------------------------------------------
def test_reader_official_layout(joint_example):
    entries = list(iter_joint_entries(joint_example))
    assert [e.id for e in entries] == sorted(e.id for e in entries) and len(entries) == 3
    assert all(len(e.id) == 32 for e in entries)  # md5 names
    assert [("openpose" in e.domains) for e in entries] == [False, True, False]  # absent keys stay absent
    assert entries[0].files["seg_12colors"].endswith(".jpg.png")
    first = next(iter_joint(joint_example))
    assert (first.height, first.width) == (1280, 1024) and "BLIP2-OPT-2.7b" in first.captions
    assert _pixels(first.labels["depth"]).shape == (1280, 1024)  # depth is stored as mode L


def test_reader_splits_nested_dirs_and_absent_keys(tmp_path, records):
    root = tmp_path / "ds"
    rec = records[0]
    for rel, data in {"image/a/x.jpg": rec.image, "annotation_depth/a/x.jpg": rec.labels["depth"]}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    line = {"image": "image/a/x.jpg", "info": {"height": rec.height, "width": rec.width}, "caption": {}}
    (root / "metadata.train.jsonl").write_text(json.dumps({**line, "annotation_depth": "annotation_depth/a/x.jpg"}) + "\n")
    (root / "metadata.test.jsonl").write_text(json.dumps(line) + "\n\n")
    assert [(e.split, e.id, e.domains) for e in iter_joint_entries(root)] == [
        ("test", "a/x", ()),
        ("train", "a/x", ("depth",)),
    ]
    [train] = iter_joint(root, split="train")
    assert train.labels["depth"] == rec.labels["depth"]
    with pytest.raises(JointFormatError, match="no split 'val'"):
        list(iter_joint_entries(root, split="val"))


@pytest.mark.parametrize(
    "image_path", ["../outside.jpg", "/etc/hostname", "image/../../outside.jpg", "link/outside.jpg"]
)
def test_reader_rejects_paths_outside_root(tmp_path, records, image_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(records[0].image)
    root = tmp_path / "ds"
    root.mkdir()
    (root / "link").symlink_to(tmp_path, target_is_directory=True)  # a symlink out of the root
    line = {"image": image_path, "info": {"height": 40, "width": 48}, "caption": {}}
    (root / "metadata.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(UnsafePathError):
        list(iter_joint(root))


def test_reader_reports_bad_lines(tmp_path):
    (tmp_path / "metadata.jsonl").write_text('{"image": "image/a.jpg", "info": {"height": 0, "width": 4}}\n')
    with pytest.raises(JointFormatError, match=r"metadata.jsonl:1: 'info' height/width"):
        list(iter_joint_entries(tmp_path))
    (tmp_path / "metadata.jsonl").write_text("{oops\n")
    with pytest.raises(JointFormatError, match=r"metadata.jsonl:1: not valid JSON"):
        list(iter_joint_entries(tmp_path))


# ----- conversion and `datasets` round trips --------------------------------------------------------
def test_parquet_shards_row_groups_and_round_trip(tmp_path, records):
    many = records * 5  # 15 rows
    stats = write_parquet(many, tmp_path / "data", "train", ShardConfig(rows_per_group=4, max_shard_bytes=40_000))
    assert len(stats.files) > 1 and all(f.name.endswith(f"-of-{len(stats.files):05d}.parquet") for f in stats.files)
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows for f in stats.files for i in range(pq.ParquetFile(f).num_row_groups)]
    assert sum(groups) == 15 and max(groups) <= 4
    assert list(parquet_files(tmp_path)) == ["train"] and detect_layout(tmp_path) == "parquet"
    assert list(iter_parquet(tmp_path)) == many
    assert stats.domains["openpose"] == 5 and stats.domains["depth"] == 15


def test_joint_parquet_joint_round_trip(tmp_path, joint_example):
    assert jodi(["convert", str(joint_example), str(tmp_path / "pq"), "--to", "parquet"]) == 0
    assert jodi(["convert", str(tmp_path / "pq"), str(tmp_path / "back"), "--to", "joint"]) == 0
    original, back = list(iter_joint(joint_example)), list(iter_joint(tmp_path / "back"))
    assert [r.id for r in back] == [r.id for r in original]
    for a, b in zip(original, back):
        assert (a.image, a.labels, a.captions, a.height) == (b.image, b.labels, b.captions, b.height)  # byte-exact
    meta = [json.loads(line) for line in (tmp_path / "back" / "metadata.jsonl").read_text().splitlines()]
    assert ["annotation_openpose" in m for m in meta] == [False, True, False]


def test_load_dataset_matches_what_the_pipeline_wrote(tmp_path, records):
    import datasets

    write_parquet(records, tmp_path / "src" / "data")
    prepared = prepare_folder(PublishConfig(str(tmp_path / "src"), "user/name", str(tmp_path / "hub"), dry_run=True))
    ds = datasets.load_dataset(str(prepared.path), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], datasets.Image)
    assert all(isinstance(ds.features[f"annotation_{d}"], datasets.Image) for d in ("depth", "seg_12colors", "openpose"))
    assert ds.features["info"]["height"] == datasets.Value("int32")
    assert len(ds) == len(records)
    for row, rec in zip(ds, records):
        assert row["id"] == rec.id
        assert np.array_equal(np.asarray(row["image"]), _pixels(rec.image))
        for domain in ("edge", "lineart", "depth", "normal", "albedo", "seg_12colors", "openpose"):
            got = row[f"annotation_{domain}"]
            if domain not in rec.labels:
                assert got is None
            else:
                assert np.array_equal(np.asarray(got), _pixels(rec.labels[domain])), domain
        assert {c["model"]: c["text"] for c in row["caption"]} == rec.captions


def test_joint_folder_loads_as_imagefolder(tmp_path, records):
    import datasets

    write_parquet(records, tmp_path / "pq" / "data")
    parquet_to_joint(tmp_path / "pq", tmp_path / "joint", imagefolder=True)
    assert list(iter_joint(tmp_path / "joint")) == [
        LabeledRecord(**{**r.__dict__, "source": f"image/{r.id}.jpg", "provenance": ()}) for r in records
    ]
    assert validate(tmp_path / "joint").ok  # the extra keys are allowed
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "joint"), split="train", cache_dir=str(tmp_path / "cache")
    )
    by_id = {r.id: r for r in records}
    for row in ds:
        rec = by_id[Path(row["image"].filename).stem]
        assert np.array_equal(np.asarray(row["annotation_seg_12colors"]), _pixels(rec.labels["seg_12colors"]))
        assert (row["annotation_openpose"] is None) == ("openpose" not in rec.labels)
        assert row["info"] == {"height": rec.height, "width": rec.width}


def test_incremental_labeling_writes_only_the_new_domain(joint_dir, records):
    before = {p: p.stat().st_mtime_ns for p in joint_dir.rglob("*.jpg")}
    albedo = {r.id: encode_file("albedo", _pixels(r.image)) for r in records}
    updated = [LabeledRecord(**{**r.__dict__, "labels": {**r.labels, "albedo": albedo[r.id]}}) for r in iter_joint(joint_dir)]
    stats = write_joint(updated, joint_dir)
    written = {p.relative_to(joint_dir).parts[0] for p in stats.files}
    assert written == {"annotation_albedo", "metadata.jsonl"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert [r.labels["albedo"] for r in iter_joint(joint_dir)] == [albedo[r.id] for r in records]


# ----- validate -------------------------------------------------------------------------------------
def test_validate_official_samples_pass(joint_example, capsys):
    assert jodi(["validate", str(joint_example)]) == 0
    out = capsys.readouterr().out
    assert "records: 3" in out and "openpose=1" in out and "OK" in out


def _break(root: Path, records: list[LabeledRecord]) -> dict[str, str]:
    """Apply one defect per check to a Joint copy; returns check -> a string its report line must contain."""
    r0, r1, r2 = (r.id for r in records[:3])
    (root / f"annotation_normal/{r0}.jpg").unlink()
    (root / f"annotation_edge/{r1}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    depth = Image.open(root / f"annotation_depth/{r2}.jpg").resize((20, 20))
    depth.save(root / f"annotation_depth/{r2}.jpg")
    seg = np.asarray(Image.open(root / f"annotation_seg_12colors/{r0}.jpg.png")).copy()
    seg[0, 0] = (1, 2, 3)
    Image.fromarray(seg).save(root / f"annotation_seg_12colors/{r0}.jpg.png")
    inverted = 255 - np.asarray(Image.open(root / f"annotation_lineart/{r1}.jpg"))
    Image.fromarray(inverted).save(root / f"annotation_lineart/{r1}.jpg", quality=95)
    lines = (root / "metadata.jsonl").read_text().splitlines()
    escape = {**json.loads(lines[0]), "image": "../../outside.jpg"}
    lines += [lines[2], json.dumps(escape), "{not json", json.dumps({"image": "image/z.jpg", "caption": {}})]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "missing_file": f"annotation_normal/{r0}.jpg does not exist",
        "decode": f"annotation_edge/{r1}.jpg",
        "size": "20x20 != image",
        "palette": "outside the 12-colour palette",
        "value_range": "lineart mean",
        "duplicate_id": r2,
        "unsafe_path": "escapes the dataset root",
        "schema": "not valid JSON",
    }


def test_validate_reports_every_defect(tmp_path, joint_dir, records, capsys):
    expected = _break(joint_dir, records)
    report = validate(joint_dir)
    assert not report.ok
    for check, needle in expected.items():
        assert any(p.check == check and needle in str(p) for p in report.problems), (check, report.format())
    assert any(p.check == "schema" and "'info'" in p.detail for p in report.problems)
    assert jodi(["validate", str(joint_dir)]) == 1
    assert "PROBLEMS" in capsys.readouterr().out


def test_validate_broken_copy_of_official_samples(tmp_path, joint_example):
    root = tmp_path / "broken"
    shutil.copytree(joint_example, root)
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    expected = _break(root, list(iter_joint(joint_example)))
    found = {p.check for p in validate(root).problems}
    assert set(expected) <= found


def test_validate_parquet_defects(tmp_path, records):
    bad = LabeledRecord(**{**records[0].__dict__, "labels": {**records[0].labels, "depth": b"not an image"}})
    write_parquet([records[0], records[1], bad], tmp_path / "data")
    report = validate(tmp_path)
    assert report.layouts == ["parquet"] and report.records == 3
    assert {p.check for p in report.problems} == {"duplicate_id", "decode"}
    assert validate(tmp_path / "nothing-here").problems[0].check == "schema"


# ----- preview --------------------------------------------------------------------------------------
def test_contact_sheet_rows_columns_and_captions(records):
    sheet = contact_sheet(iter(records), n=2, tile=40)
    columns = 1 + 6  # image + edge lineart depth normal seg openpose present among the first two
    assert sheet.width == 4 + columns * 44
    no_captions = contact_sheet([LabeledRecord(**{**r.__dict__, "captions": {}}) for r in records], n=2, tile=40)
    assert sheet.height > no_captions.height  # captions take lines under each row
    assert (np.asarray(sheet)[:10] < 100).any()  # domain names are drawn in the header
    # One row, no captions: height = header + tile + 3 pads, so the row's position is known.
    one = np.asarray(contact_sheet([no_captions_record(records[1])], n=1, tile=40))
    top = one.shape[0] - 40 - 3 * 4
    seg_col = 1 + ["edge", "lineart", "depth", "normal", "seg_12colors", "openpose"].index("seg_12colors")
    tile = one[top : top + 40, 4 + seg_col * 44 : 4 + seg_col * 44 + 40].reshape(-1, 3)
    colours = {tuple(int(v) for v in c) for c in tile} - {(235, 235, 235)}
    assert colours and colours <= {tuple(int(v) for v in c) for c in PALETTE}  # nearest resampling: exact colours
    pose_col = 1 + 5
    assert one[top + 20, 4 + pose_col * 44 + 5].tolist() == [0, 0, 0]  # openpose tile: black background


def no_captions_record(record: LabeledRecord) -> LabeledRecord:
    return LabeledRecord(**{**record.__dict__, "captions": {}})


def test_preview_command(tmp_path, joint_dir):
    assert jodi(["preview", str(joint_dir), "-o", str(tmp_path / "p.png"), "-n", "3", "--tile", "32"]) == 0
    assert Image.open(tmp_path / "p.png").size[0] == 4 + 7 * 36


# ----- publish --------------------------------------------------------------------------------------
def _label_job_output(tmp_path: Path, records: list[LabeledRecord]) -> Path:
    """The label job's output layout: both layouts, errors/ and stats.json."""
    out = tmp_path / "out"
    write_joint(records, out)
    write_parquet(records, out / "data")
    (out / "errors").mkdir()
    rows = [{"id": "", "source": "a.png", "stage": "decode", "error": "too_small", "detail": f"token={TOKEN}"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=ERROR_SCHEMA), out / "errors" / "shard-00000.parquet")
    return out


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network used during a dry run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_publish_dry_run_card_no_network_no_token(tmp_path, records, monkeypatch, capsys):
    out = _label_job_output(tmp_path, records)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _no_network(monkeypatch)
    staging = tmp_path / "hub"
    argv = ["publish", str(out), "--repo-id", "user/labels", "--staging", str(staging), "--dry-run", "--json"]
    assert jodi(argv) == 0
    printed = capsys.readouterr()
    # The token is in no written file and no output line.
    for p in staging.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p
    assert TOKEN not in printed.out + printed.err
    assert sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()) == [
        "README.md",
        "data/train-00000-of-00001.parquet",
        "preview.png",
    ]
    assert json.loads(printed.out.splitlines()[-1])["records"] == 3
    # The label job's shards already follow the Hub conventions: linked, not rewritten.
    linked = staging / "data/train-00000-of-00001.parquet"
    assert linked.stat().st_ino == (out / "data/shard-00000.parquet").stat().st_ino
    text = (staging / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    assert front["size_categories"] == ["n<1K"] and front["license"] == "other"
    assert {"depth-estimation", "image-segmentation"} <= set(front["task_categories"])
    assert {f["name"]: f.get("dtype") for f in front["dataset_info"]["features"]}["annotation_depth"] == "image"
    assert front["dataset_info"]["splits"][0]["num_examples"] == 3
    assert "depth-anything/Depth-Anything-V2-Small-hf | abc123" in text  # provenance: model id + revision
    assert "| decode | too_small | 1 |" in text and "![preview](preview.png)" in text
    assert check_hub_layout(staging) == 3
    with pytest.raises(HubLayoutError, match="more than 2 files"):
        check_hub_layout(staging, per_folder=2)


def test_publish_rewrites_joint_folders_and_nonconforming_shards(tmp_path, records, joint_dir):
    import datasets

    prepared = prepare_folder(PublishConfig(str(joint_dir), "u/n", str(tmp_path / "hub1"), dry_run=True))
    assert prepared.records == 3 and prepared.domains["openpose"] == 1 and not prepared.provenance
    assert "no per-record provenance" in (prepared.path / "README.md").read_text()
    write_parquet(records * 3, tmp_path / "big" / "data")  # one shard, larger than the limit below
    small = ShardConfig(max_shard_bytes=40_000)
    cfg = PublishConfig(str(tmp_path / "big"), "u/n", str(tmp_path / "hub2"), dry_run=True, shards=small)
    prepared = prepare_folder(cfg)
    assert len(prepared.splits["train"].files) > 1  # re-cut, not linked
    assert prepared.provenance[("edge", "canny", None, None, '{"low_threshold": 100}')] == 9
    ds = datasets.load_dataset(str(prepared.path), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds["id"] == [r.id for r in records * 3]


def test_publish_refuses_broken_data_and_foreign_staging(tmp_path, records, monkeypatch, capsys):
    bad = LabeledRecord(**{**records[0].__dict__, "labels": {"seg_12colors": records[0].labels["depth"]}})
    write_parquet([bad, records[1]], tmp_path / "src" / "data")
    _no_network(monkeypatch)  # not a dry run: validation must stop it before any upload
    assert jodi(["publish", str(tmp_path / "src"), "--repo-id", "u/n", "--staging", str(tmp_path / "hub")]) == 1
    assert "validation failed: nothing uploaded" in capsys.readouterr().out
    foreign = tmp_path / "home"
    (foreign / "notes.txt").parent.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert jodi(["publish", str(tmp_path / "src"), "--repo-id", "u/n", "--staging", str(foreign), "--dry-run"]) == 1
    assert "refusing to clear" in capsys.readouterr().err and (foreign / "notes.txt").exists()


class _EchoAuthHub(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the Hub that refuses every request and echoes the Authorization header."""

    seen: list[str] = []

    def _refuse(self):
        auth = self.headers.get("Authorization", "")
        self.seen.append(auth)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": f"Invalid credentials: {auth}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


def test_publish_upload_path_uses_env_token_and_never_prints_it(tmp_path, records):
    out = _label_job_output(tmp_path, records)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuthHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "HF_TOKEN": TOKEN,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    cmd = [sys.executable, "-m", "jobs.cli", "publish", str(out), "--repo-id", "user/labels", "--staging", str(tmp_path / "hub")]
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert f"Bearer {TOKEN}" in _EchoAuthHub.seen  # the client took the token from the environment
    assert "upload to user/labels failed" in done.stderr and "***" in done.stderr  # the echoed token is redacted
    assert TOKEN not in done.stdout + done.stderr
    for p in [*(tmp_path / "hub").rglob("*"), *(tmp_path / "hf_home").rglob("*")]:
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p


@pytest.mark.slow
def test_label_job_output_validates_publishes_and_loads(tmp_path, ray_local, sample_images):
    """End to end with the real label job: what it wrote is what `datasets` decodes from the published folder."""
    import datasets

    from pipeline.job import LabelJobConfig, run_label_job

    (tmp_path / "in").mkdir()
    for i, img in enumerate(sample_images[:2]):
        Image.fromarray(img).resize((80, 64)).save(tmp_path / "in" / f"{i}.png")
    out = tmp_path / "out"
    cfg = LabelJobConfig(str(tmp_path / "in"), str(out), ("canny", "lineart_standard"), min_short_side=64, target_short_side=64)
    run_label_job(cfg, progress=False)
    assert validate(out).ok
    prepared = prepare_folder(PublishConfig(str(out), "user/labels", str(tmp_path / "hub"), dry_run=True))
    # The job's shards follow the Hub conventions, so they are linked rather than rewritten.
    assert prepared.splits["train"].files[0].stat().st_ino == (out / "data/shard-00000.parquet").stat().st_ino
    ds = datasets.load_dataset(str(prepared.path), split="train", cache_dir=str(tmp_path / "cache"))
    written = {r.id: r for r in iter_records(out, layout="joint")}
    assert len(ds) == len(written) == 2
    for row in ds:
        rec = written[row["id"]]
        assert np.array_equal(np.asarray(row["image"]), _pixels(rec.image))
        assert np.array_equal(np.asarray(row["annotation_edge"]), _pixels(rec.labels["edge"]))
        assert row["provenance"][0]["annotator"] in ("canny", "lineart_standard")
