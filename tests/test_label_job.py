"""The label job end to end on a real local Ray: outputs, errors, resume, incremental labeling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import LabelJobConfig
from pipeline.job import JobConfigError, run_label_job
from pipeline.sources import InputError
from schemas.domains import annotation_key
from schemas.encoding import palette_only
from tests.bad_inputs import photo, write_corpus

ROOT = Path(__file__).resolve().parents[1]


def small_job(input_, output, annotators=("canny", "lineart_standard"), **kw) -> LabelJobConfig:
    return LabelJobConfig(
        input=str(input_),
        output=str(output),
        annotators=tuple(annotators),
        min_short_side=32,
        target_short_side=64,
        shard_size=4,
        **kw,
    )


def all_records(out: Path) -> list[dict]:
    return [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def all_errors(out: Path) -> list[dict]:
    return [r for p in sorted((out / "errors").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, ray_local):
    src = tmp_path_factory.mktemp("bad_corpus")
    expected = write_corpus(src)
    (src / "zz_copy_of_good.jpg").write_bytes((src / "good.jpg").read_bytes())  # exact duplicate
    expected["zz_copy_of_good.jpg"] = "duplicate"
    out = tmp_path_factory.mktemp("out") / "ds"
    stats = run_label_job(small_job(src, out), progress=False)
    return src, out, expected, stats


def test_every_input_is_labeled_or_in_the_errors_table(labeled):
    src, out, expected, stats = labeled
    records, errors = all_records(out), all_errors(out)
    by_name = {Path(r["source"]).name: r for r in records}
    err_by_name = {Path(e["source"]).name: e for e in errors}
    assert set(by_name) | set(err_by_name) == set(expected)
    assert not set(by_name) & set(err_by_name)
    for name, reason in expected.items():
        if reason is None:
            assert name in by_name, f"{name} should be labeled, got {err_by_name.get(name)}"
        else:
            assert err_by_name[name]["error"] == reason, (name, err_by_name.get(name))
            assert err_by_name[name]["stage"] in ("decode", "dedup")
    assert stats["records_in"] == len(expected)
    assert stats["records_out"] == sum(r is None for r in expected.values())
    assert stats["errors_by_reason"]["duplicate"] == 1


def test_joint_layout_matches_the_official_format(labeled):
    _, out, _, stats = labeled
    lines = [json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == stats["records_out"] == stats["metadata_lines"]
    for line in lines:
        assert set(line) == {"image", "info", "caption", "annotation_edge", "annotation_lineart"}
        img = Image.open(out / line["image"])
        assert img.mode == "RGB" and img.format == "JPEG"
        assert (img.height, img.width) == (line["info"]["height"], line["info"]["width"])
        assert min(img.size) == 64
        for key in ("annotation_edge", "annotation_lineart"):
            label = Image.open(out / line[key])
            assert label.size == img.size and label.mode == "RGB"
        rid = Path(line["image"]).stem
        assert line["annotation_edge"] == f"annotation_edge/{rid}.jpg"
    assert len({ln["image"] for ln in lines}) == len(lines)


def test_parquet_shards_match_the_joint_files_and_load_with_datasets(labeled):
    import datasets

    _, out, _, _ = labeled
    records = all_records(out)
    for r in records:
        assert (out / r["image"]["path"]).read_bytes() == r["image"]["bytes"]
        assert (out / r[annotation_key("edge")]["path"]).read_bytes() == r[annotation_key("edge")]["bytes"]
        assert r[annotation_key("depth")] is None
        assert {p["domain"] for p in r["provenance"]} == {"edge", "lineart"}
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["annotation_edge"], datasets.Image)
    row = ds[0]
    assert row["image"].size == (row["info"]["width"], row["info"]["height"])
    assert np.asarray(row["annotation_edge"]).shape[:2] == (row["info"]["height"], row["info"]["width"])


def test_stats_and_preview_are_written(labeled):
    _, out, _, stats = labeled
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["per_domain"] == {"edge": stats["records_out"], "lineart": stats["records_out"]}
    assert set(on_disk["this_run"]["stage_seconds"]) >= {"decode", "canny", "lineart_standard", "encode", "write"}
    assert on_disk["this_run"]["images_per_second"] > 0
    preview = Image.open(out / "preview.png")
    assert preview.width > 3 * 64 and preview.height > 64


def test_rerun_with_same_arguments_does_nothing_and_changes_nothing(labeled):
    src, out, _, _ = labeled
    before = {p: p.read_bytes() for p in (out / "data").glob("*.parquet")}
    meta = (out / "metadata.jsonl").read_text()
    stats = run_label_job(small_job(src, out), progress=False)
    assert stats["this_run"]["processed"] == 0
    assert {p: p.read_bytes() for p in (out / "data").glob("*.parquet")} == before
    assert (out / "metadata.jsonl").read_text() == meta


def test_changed_settings_are_refused(labeled):
    src, out, _, _ = labeled
    with pytest.raises(JobConfigError, match="target_short_side"):
        run_label_job(
            LabelJobConfig(
                input=str(src),
                output=str(out),
                annotators=("canny",),
                min_short_side=32,
                target_short_side=128,
                shard_size=4,
            ),
            progress=False,
        )


def test_missing_input_fails_before_any_work(tmp_path, ray_local):
    with pytest.raises(InputError, match="does not exist"):
        run_label_job(small_job(tmp_path / "nope", tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(KeyError, match="known annotators"):
        run_label_job(small_job(tmp_path, tmp_path / "out", annotators=("not_a_model",)), progress=False)


def test_incremental_labeling_adds_only_the_missing_domain(tmp_path, ray_local):
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate([(70, 90), (64, 64), (90, 70), (80, 120), (66, 99)]):
        Image.fromarray(photo(size)).save(src / f"img{i}.png")
    out = tmp_path / "out"
    first = run_label_job(small_job(src, out, annotators=("canny",)), progress=False)
    edge_before = {p.name: p.read_bytes() for p in (out / "annotation_edge").iterdir()}
    second = run_label_job(small_job(src, out, annotators=("canny", "lineart_standard")), progress=False)
    assert first["records_out"] == second["records_out"] == 5
    assert second["this_run"]["processed"] == 5  # only the lineart pass ran over the 5 records
    assert "canny" not in second["this_run"]["stage_seconds"]
    assert second["per_domain"] == {"edge": 5, "lineart": 5}
    assert {p.name: p.read_bytes() for p in (out / "annotation_edge").iterdir()} == edge_before
    lines = [json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()]
    assert all("annotation_lineart" in ln and "annotation_edge" in ln for ln in lines)
    assert {p["domain"] for r in all_records(out) for p in r["provenance"]} == {"edge", "lineart"}


def test_hugging_face_dataset_input_keeps_ids_and_alt_text(tmp_path, ray_local):
    import hashlib

    import datasets

    files = []
    for i, size in enumerate([(70, 90), (90, 70), (64, 80)]):
        p = tmp_path / f"h{i}.jpg"
        Image.fromarray(photo(size)).save(p, quality=90)
        files.append(p)
    ds = datasets.Dataset.from_dict(
        {"image": [str(p) for p in files], "text": ["alt one", "alt two", "alt three"]}
    ).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hfds"))
    out = tmp_path / "out"
    cfg = small_job(tmp_path / "hfds", out, annotators=("canny",), hf_caption_column="text", caption_key="Pexels")
    stats = run_label_job(cfg, progress=False)
    assert stats["records_out"] == 3
    ids = {r["id"]: r for r in all_records(out)}
    for p in files:
        rid = hashlib.md5(p.read_bytes()).hexdigest()
        assert rid in ids
    captions = sorted(c["text"] for r in ids.values() for c in r["caption"] if c["model"] == "Pexels")
    assert captions == ["alt one", "alt three", "alt two"]


def test_killed_job_resumes_without_loss_or_duplicates(tmp_path):
    """SIGKILL a real `python -m jobs.label` mid-run, rerun it, and check every input ends exactly once."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    n = 40
    for i in range(n):
        a = np.clip(photo((64, 80)).astype(int) + rng.integers(-20, 20, (64, 80, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(src / f"img{i:03d}.png")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "jobs.label",
        str(src),
        str(out),
        "-a",
        "canny,lineart_standard",
        "--min-short-side",
        "32",
        "--target-short-side",
        "64",
        "--shard-size",
        "4",
        "--batch-size",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # Mid-run: some shards finished (finalised as soon as they are staged), the job not yet done.
        if len(list(out.glob("_shards/*.done"))) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: driver and its Ray workers
    proc.wait()
    assert not (out / "stats.json").exists(), "the job finished before it could be killed"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    records, errors = all_records(out), all_errors(out)
    sources = [r["source"] for r in records] + [e["source"] for e in errors]
    assert len(sources) == len(set(sources)) == n  # nothing lost, nothing duplicated
    assert not errors
    assert stats["this_run"]["processed"] < n  # the rerun skipped work the killed run had finished
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == n
    assert not (out / "_staging").exists()


def test_model_backed_annotators_end_to_end(tmp_path, ray_local):
    """Depth (Depth Anything V2), segmentation (OneFormer) and a BLIP-2 caption, tiny random weights of the
    real architectures loaded through their real from_pretrained paths inside Ray actors."""
    from tests.builders import RANDOM_CHECKPOINTS

    names = ("depth_anything_v2_small", "oneformer_ade20k", "blip2_opt_2_7b")
    overrides = {n: RANDOM_CHECKPOINTS[n](tmp_path / n) for n in names}
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate([(64, 80), (80, 64), (64, 64)]):
        Image.fromarray(photo(size)).save(src / f"m{i}.png")
    out = tmp_path / "out"
    stats = run_label_job(small_job(src, out, annotators=names, overrides=overrides), progress=False)
    assert stats["records_out"] == 3, stats
    assert stats["per_domain"] == {"depth": 3, "seg_12colors": 3}
    assert stats["captions"] == {"BLIP2-OPT-2.7b": 3}
    assert stats["caption_stats"]["BLIP2-OPT-2.7b"]["count"] == 3
    for line in (json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()):
        depth = Image.open(out / line["annotation_depth"])
        assert depth.mode == "L" and (depth.height, depth.width) == (line["info"]["height"], line["info"]["width"])
        d = np.asarray(depth)
        assert d.min() <= 3 and d.max() >= 252  # per-image min-max, as Joint
        seg = Image.open(out / line["annotation_seg_12colors"])
        assert seg.format == "PNG" and palette_only(np.asarray(seg.convert("RGB")))
        assert line["annotation_seg_12colors"].endswith(".jpg.png")
        assert line["caption"]["BLIP2-OPT-2.7b"].strip()
    prov = {p["annotator"]: p for r in all_records(out) for p in r["provenance"]}
    assert set(prov) == set(names)
    assert prov["depth_anything_v2_small"]["model_id"] == overrides["depth_anything_v2_small"]["model_id"]


def test_jodi_label_command_with_domain_names_and_local_weights(tmp_path, ray_local, capsys):
    """`jodi label IN OUT -a depth,edge --model depth=FOLDER --config job.yaml`: the user-facing path."""
    from tests.builders import RANDOM_CHECKPOINTS
    from jobs.cli import main

    folder = tmp_path / "da2"
    overrides = RANDOM_CHECKPOINTS["depth_anything_v2_large"](folder)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo((64, 96))).save(src / "one.jpg")
    (tmp_path / "job.yaml").write_text(
        "min_short_side: 32\ntarget_short_side: 64\n"
        f"overrides:\n  depth: {json.dumps({k: v for k, v in overrides.items() if k != 'model_id'})}\n"
        "resources:\n  canny: {batch_size: 2}\n"
    )
    # edge = PiDiNet, whose weights are not here: one clear line, exit code 2.
    assert main(["label", str(src), str(tmp_path / "o1"), "-a", "edge", "--quiet", "--min-short-side", "32"]) == 2
    err = capsys.readouterr().err
    assert "pidinet: model 'lllyasviel/Annotators" in err and "--model pidinet=" in err
    assert err.strip().splitlines()[-1].startswith("jodi label: pidinet: model 'lllyasviel/Annotators")
    out = tmp_path / "out"
    code = main(
        [
            "label",
            str(src),
            str(out),
            "-a",
            "depth,canny",
            "--model",
            f"depth={folder}",
            "--config",
            str(tmp_path / "job.yaml"),
            "--quiet",
            "--colocate",
            "depth+canny",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "labeled 1 of 1 inputs" in printed and "preview" in printed
    line = json.loads((out / "metadata.jsonl").read_text())
    assert {"annotation_depth", "annotation_edge"} <= set(line)
    prov = {p["annotator"]: p for r in all_records(out) for p in r["provenance"]}
    assert prov["depth_anything_v2_large"]["model_id"] == str(folder)
    assert main(["label", str(src), str(tmp_path / "o2"), "-a", "no_such_model", "--quiet"]) == 2
    assert "known annotators" in capsys.readouterr().err
