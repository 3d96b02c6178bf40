"""Inputs as corpora really come, end to end through `run_label_job` on a real local Ray: Hugging Face Parquet,
WebDataset tars (local and on a real S3 server), and folders with sidecar captions (the demo's corpus)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import LabelJobConfig
from pipeline.job import run_label_job
from tests.bad_inputs import jpeg_bytes, photo
from tests.test_sources import write_tar

md5 = hashlib.md5
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """Six distinct small JPEGs (distinct bytes, so distinct ids)."""
    rng = np.random.default_rng(0)
    base = photo((48, 64))
    return [jpeg_bytes(np.clip(base.astype(int) + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8))
            for _ in range(6)]  # fmt: skip


def job(input_: str, out: Path, **kw) -> LabelJobConfig:
    return LabelJobConfig(input=input_, output=str(out), annotators=("canny",), min_short_side=32,
                          target_short_side=32, shard_size=2, **kw)  # fmt: skip


def records(out: Path) -> dict[str, dict]:
    """source -> record (from the Parquet shards)."""
    rows = [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["source"]: r for r in rows}


def errors(out: Path) -> dict[str, dict]:
    rows = [r for p in sorted((out / "errors").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["source"]: r for r in rows}


def captions(record: dict) -> dict[str, str]:
    return {c["model"]: c["text"] for c in record["caption"]}


def test_hugging_face_parquet_dataset(tmp_path, jpegs, ray_local):
    import datasets

    images = [{"bytes": b, "path": None} for b in jpegs[:4]] + [{"bytes": b"not an image", "path": None}]
    texts = ["one", "two", "three", "four", "five"]
    ds = datasets.Dataset.from_dict({"image": images, "text": texts}).cast_column("image", datasets.Image())
    f = tmp_path / "hf" / "data" / "train-00000-of-00001.parquet"
    ds.to_parquet(str(f))
    out = tmp_path / "out"
    stats = run_label_job(job(str(tmp_path / "hf"), out, hf_caption_column="text", caption_key="Pexels"),
                          progress=False)  # fmt: skip
    assert stats["records_in"] == 5 and stats["records_out"] == 4
    got = records(out)
    assert sorted(got) == [f"{f}#{i}" for i in range(4)]
    for i in range(4):
        r = got[f"{f}#{i}"]
        assert r["id"] == md5(jpegs[i]).hexdigest()  # the id is the original encoded bytes' md5
        assert captions(r) == {"Pexels": texts[i]}
    assert errors(out)[f"{f}#4"]["error"] == "not_an_image"


def img2dataset_tars(folder: Path, jpegs: list[bytes]) -> dict[str, tuple[bytes, str]]:
    """Two shards as img2dataset writes them; returns key -> (image bytes, expected caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"url": "http://example.com/x.jpg", "width": 64, "height": 48}
    write_tar(folder / "00000.tar", {
        "000000000": {"jpg": jpegs[0], "txt": b"a photo of an astronaut", "json": json.dumps(meta).encode()},
        "000000001": {"jpg": jpegs[1], "json": json.dumps({**meta, "caption": "caption from json"}).encode()},
        "000000002": {"jpg": jpegs[2][: len(jpegs[2]) // 2], "txt": b"truncated image"},
    })  # fmt: skip
    write_tar(folder / "00001.tar", {"000010000": {"jpg": jpegs[3], "txt": b"from shard one", "json": b"{}"}})
    (folder / "00000.parquet").write_bytes(b"")  # img2dataset's companions sit beside the tars; not inputs
    return {"00000.tar#000000000": (jpegs[0], "a photo of an astronaut"),
            "00000.tar#000000001": (jpegs[1], "caption from json"),
            "00001.tar#000010000": (jpegs[3], "from shard one")}  # fmt: skip


def check_tar_output(out: Path, prefix: str, expected: dict[str, tuple[bytes, str]]) -> None:
    got = records(out)
    assert sorted(got) == sorted(f"{prefix}/{k}" for k in expected)
    for k, (data, caption) in expected.items():
        r = got[f"{prefix}/{k}"]
        assert r["id"] == md5(data).hexdigest()
        assert captions(r) == {"source": caption}
    assert errors(out)[f"{prefix}/00000.tar#000000002"]["error"] == "truncated"


def test_webdataset_tars_on_local_disk(tmp_path, jpegs, ray_local):
    expected = img2dataset_tars(tmp_path / "shards", jpegs)
    stats = run_label_job(job(str(tmp_path / "shards"), tmp_path / "out"), progress=False)
    assert stats["records_in"] == 4 and stats["records_out"] == 3
    check_tar_output(tmp_path / "out", str(tmp_path / "shards"), expected)


def test_webdataset_tars_in_a_bucket(tmp_path, jpegs, s3):
    """`python -m jobs.label s3://...` as a user runs it: its own Ray, whose workers read the bucket with the
    standard AWS_* variables of the environment (the session's Ray may predate the S3 server's variables)."""
    expected = img2dataset_tars(tmp_path / "shards", jpegs)
    fs, bucket = s3.filesystem(), s3.new_bucket()
    for p in (tmp_path / "shards").iterdir():
        with fs.open_output_stream(f"{bucket}/laion/{p.name}") as f:
            f.write(p.read_bytes())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.label", f"s3://{bucket}/laion", str(out), "-a", "canny",
           "--min-short-side", "32", "--target-short-side", "32", "--shard-size", "2", "--quiet"]  # fmt: skip
    env = {**os.environ, **s3.env(), "PYTHONPATH": str(ROOT), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "labeled 3 of 4 inputs" in done.stdout
    check_tar_output(out, f"s3://{bucket}/laion", expected)


def test_sidecar_captions_make_the_demo_output_trainable(tmp_path, ray_local):
    """The demo's corpus (each photo with a human caption beside it) labeled, then read by Jodi's readers:
    every record has a caption, so a loader that draws one caption per record never meets an empty one."""
    from jobs.demo import write_corpus
    from jodi.latents import joint_items
    from jodi.roles import choose_caption
    from pipeline.samples import CAPTIONS
    from schemas.joint import iter_joint_entries

    corpus = tmp_path / "demo_input"
    paths = write_corpus(corpus)
    (corpus / "coffee.txt").unlink()
    (corpus / "coffee.json").write_text(json.dumps({"caption": CAPTIONS["coffee"], "url": "x"}))
    out = tmp_path / "out"
    cfg = LabelJobConfig(input=str(corpus), output=str(out), annotators=("lineart_standard",),
                         min_short_side=32, target_short_side=32, shard_size=8)  # fmt: skip
    stats = run_label_job(cfg, progress=False)
    assert stats["records_out"] == len(paths) == len(CAPTIONS)
    by_id = {md5(p.read_bytes()).hexdigest(): p.stem for p in paths}
    entries = list(iter_joint_entries(out))
    assert {e.id: e.captions for e in entries} == {i: {"source": CAPTIONS[name]} for i, name in by_id.items()}
    rng = np.random.default_rng(0)
    for item in joint_items(out):  # the latent-cache/training reader's index of a Joint folder
        models = [c["model"] for c in item["caption"]]
        assert choose_caption(models, {}, rng) == 0 and item["caption"][0]["text"]


def test_decode_stage_reads_sidecars_only_when_asked(tmp_path, jpegs):
    """The stage on a hand-built batch (no Ray): the caption comes from the sidecar, or not at all."""
    from pipeline.decode import DecodeRules
    from pipeline.stages import DecodeSpec, DecodeStage

    (tmp_path / "a.jpg").write_bytes(jpegs[0])
    (tmp_path / "a.json").write_text('{"caption": "a caption"}')
    batch = {"source": np.array([str(tmp_path / "a.jpg")]), "shard": np.array([0]), "row": np.array([-1]),
             "caption_uri": np.array([str(tmp_path / "a.json")])}  # fmt: skip
    rules = DecodeRules(min_short_side=32, target_short_side=32)
    on = DecodeStage(DecodeSpec(rules))(batch)
    off = DecodeStage(DecodeSpec(rules, sidecar_captions=False))(batch)
    assert list(on["source_caption"]) == ["a caption"] and list(off["source_caption"]) == [""]
    assert "caption_uri" not in on and on["id"][0] == md5(jpegs[0]).hexdigest() and not on["error"][0]


def test_bad_input_lists_fail_in_one_line_before_any_work(tmp_path, capsys):
    from jobs.cli import main

    (tmp_path / "list.txt").write_text("a.jpg\nb.jpg\nc.jpg\n")  # none of them exists
    (tmp_path / "table.csv").write_text("path\na.jpg\n")
    for input_, message in (("list.txt", "3 of 3 listed paths do not exist"), ("table.csv", "is a .csv file")):
        rc = main(["label", str(tmp_path / input_), str(tmp_path / "out"), "-a", "canny", "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "out").exists()


def test_plain_files_go_in_blocks_of_64_unless_the_cluster_needs_more():
    from pipeline.inputs import file_blocks

    assert file_blocks(10_000, cpus=2) == 157  # 64 rows a block, not 1,250 blocks of 8
    assert file_blocks(1_600_000, cpus=512) == 25_000
    assert file_blocks(64, cpus=2) == 8  # a small job: 4 blocks per CPU, of 8 rows at least
    assert file_blocks(100, cpus=64) == 13  # many CPUs: as many 8-row blocks as there are
    assert file_blocks(3, cpus=2) == 1 and file_blocks(0, cpus=2) == 1
