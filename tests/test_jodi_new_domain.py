"""A domain beyond Joint's seven, end to end on CPU: `jodi label` with a Joint annotator (canny, edge) and the
new-domain one (zoedepth_metric, metric_depth; a tiny random ZoeDepth of the real architecture) -> the files,
Parquet column and metadata key of the new domain, `jodi validate` clean -> `jodi cache-latents` stores it ->
a tiny released model grown by it (embedder and head copied from depth) trains a few steps -> `jodi generate`
draws it and `jodi eval` scores it (metric depth: AbsRel / delta1 in metres)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from schemas.domains import ALL_DOMAINS
from schemas.encoding import decode_log_depth, encode_label, encode_log_depth, label_ndim
from tests.builders import RANDOM_CHECKPOINTS


def test_log_depth_round_trip_and_dispatch():
    depth = np.array([[0.1, 1.0], [10.0, 100.0]])
    stored = encode_log_depth(depth)
    assert stored.dtype == np.uint8 and stored.tolist() == [[255, 170], [85, 0]]  # near = bright, log scale
    back = decode_log_depth(stored)
    assert np.allclose(back, depth, rtol=0.014)  # half a step: 1000 ** (1 / 510) - 1
    assert encode_log_depth(np.array([[np.nan, -1.0], [1e6, 0.01]])).tolist() == [[0, 0], [0, 255]]
    assert np.array_equal(encode_label("metric_depth", depth), stored) and label_ndim("metric_depth") == 2
    with pytest.raises(ValueError, match="EXTRA_FORMATS"):
        encode_label("curvature", depth)


def test_every_registered_domain_has_a_format():
    from annotators.registry import REGISTRY
    from schemas.domains import FORMATS

    assert {e.domain for e in REGISTRY.values()} - {"caption"} <= set(FORMATS)


def test_schema_1_0_shards_read_as_records_without_the_new_domain(tmp_path, sample_images):
    """A label job output written before metric_depth existed (no such column) still reads, merges, validates
    and caches: the column is added, all null."""
    import io

    from jodi.latents import CacheConfig, dataset_domains
    from pipeline.validate import validate
    from pipeline.writer import OutputLayout
    from schemas.record import RECORD_SCHEMA, LabeledRecord, merge_records

    buf = io.BytesIO()
    Image.fromarray(sample_images[1][:64, :64]).save(buf, format="JPEG")
    rec = LabeledRecord(id="a" * 32, source="x.jpg", image=buf.getvalue(), height=64, width=64)
    old = pa.Table.from_pylist([rec.to_row()], schema=RECORD_SCHEMA).drop_columns(["annotation_metric_depth"])
    (tmp_path / "data").mkdir()
    pq.write_table(old, tmp_path / "data" / "shard-00000.parquet")
    layout = OutputLayout(str(tmp_path))
    assert layout.read_data(0, ["id", "annotation_metric_depth"]).column(1).null_count == 1
    assert layout.read_data(0).schema.names == RECORD_SCHEMA.names
    assert merge_records(old, old).column("annotation_metric_depth").null_count == 1
    assert not [p for p in validate(tmp_path).problems if p.check == "schema"]
    assert dataset_domains(CacheConfig(input=str(tmp_path), output="")) == ()


@pytest.mark.slow  # two Ray Data jobs (label, cache) dominate: ~2 min on 2 shared cores, train/generate/eval ~25 s
def test_new_domain_from_label_job_to_eval(ray_local, sample_images, tmp_path):
    from jobs.cli import main
    from jodi.latents import CacheConfig, run_cache_job
    from jodi.model import build_model
    from jodi.train import DataSource, NewDomain, TrainConfig, train_local
    from pipeline.config import LabelJobConfig
    from pipeline.job import run_label_job
    from pipeline.validate import validate

    (tmp_path / "in").mkdir()
    for i, img in enumerate(sample_images[:2]):
        for k in range(2):  # distinct files, two aspect ratios
            Image.fromarray(np.roll(img, 5 * k + 1, axis=1)).save(tmp_path / "in" / f"img{i}_{k}.png")
    zoe = RANDOM_CHECKPOINTS["zoedepth_metric"](tmp_path / "zoe")
    labels = tmp_path / "labels"
    job = LabelJobConfig(input=str(tmp_path / "in"), output=str(labels), annotators=("canny", "zoedepth_metric"),
                         overrides={"zoedepth_metric": zoe}, min_short_side=32, target_short_side=64)
    run_label_job(job, progress=False)

    # The label job writes the new domain as it writes a Joint one: files, Parquet column, metadata key.
    table = pq.read_table(labels / "data")
    assert table.num_rows == 4 and table.column("annotation_metric_depth").null_count == 0
    lines = [json.loads(x) for x in (labels / "metadata.jsonl").read_text().splitlines()]
    for line in lines:
        rel = line["annotation_metric_depth"]
        rid = Path(line["image"]).stem
        assert rel == f"annotation_metric_depth/{rid}.png" and "annotation_edge" in line
        with Image.open(labels / rel) as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (line["info"]["width"], line["info"]["height"])
    provenance = {p["domain"]: p["annotator"] for p in table.column("provenance").to_pylist()[0]}
    assert provenance == {"edge": "canny", "metric_depth": "zoedepth_metric"}
    report = validate(labels)
    assert report.problems == [] and report.domains["metric_depth"] == 4

    # The cache stores every domain the dataset has: Joint's, then metric_depth.
    cache = tmp_path / "cache"
    run_cache_job(CacheConfig(input=str(labels), output=str(cache), vae="tiny", text_encoder="tiny", resolution=128,
                              batch_size=4))
    assert json.loads((cache / "cache.json").read_text())["domains"] == [*ALL_DOMAINS, "metric_depth"]
    row = pq.read_table(cache / "latents").to_pylist()[0]
    assert np.frombuffer(row["present"], np.uint8).tolist() == [1, 0, 1, 0, 0, 0, 0, 1, 1]  # image, edge, pose, new

    # A released 8-domain model grown by metric_depth (copied from depth) trains on it.
    torch.manual_seed(3)
    released = tmp_path / "Jodi.safetensors"
    save_file(build_model("tiny").state_dict(), str(released))
    cfg = TrainConfig(data=(DataSource(str(cache)),), output=str(tmp_path / "runs"), init="jodi",
                      init_weights=str(released), new_domains=(NewDomain("metric_depth", copy_from="depth"),),
                      batch_size=2, max_steps=2, checkpoint_every=2, log_every=1, shuffle_buffer=2,
                      gradient_checkpointing=False, seed=1)
    train_local(cfg, tmp_path / "ckpt")
    ckpt = tmp_path / "ckpt" / "checkpoint_2"
    trained = load_file(str(ckpt / "model.safetensors"))
    assert trained["x_embedders.8.proj.weight"].shape == load_file(str(released))["x_embedders.3.proj.weight"].shape

    # `jodi generate` draws the new domain (grey, as stored); `jodi eval` scores it in metres.
    out = tmp_path / "gen"
    assert main(["generate", "--weights", str(ckpt / "model.safetensors"), "--preset", "tiny", "--vae", "tiny",
                 "--text-encoder", "tiny", "--prompt", "a cat", "--labels", "image,metric_depth", "--steps", "2",
                 "--height", "64", "--width", "64", "--device", "cpu", "--out", str(out)]) == 0
    with Image.open(out / "metric_depth.png") as im:
        assert im.mode == "L" and im.size == (64, 64)
    assert main(["eval", "--tiny", "--checkpoint", str(ckpt), "--dataset", str(labels), "--split", "all",
                 "--domains", "edge,metric_depth", "--steps", "2", "--short-side", "64", "--lpips-backbone", "none",
                 "--output", str(tmp_path / "eval")]) == 0
    scored = json.loads((tmp_path / "eval" / "eval.json").read_text())["perception"]
    assert scored["metric_depth"]["family"] == "depth" and scored["metric_depth"]["images"] == 4
    assert 0 <= scored["metric_depth"]["delta1"] <= 1 and scored["metric_depth"]["abs_rel"] >= 0
