"""`jodi e2e`: label -> cache latents -> train -> eval -> report on real sample photographs, offline."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.split import split_joint


def test_e2e_labels_trains_and_evaluates(tmp_path, ray_local):
    from jobs.cli import main
    from jobs.demo import write_corpus

    photos = tmp_path / "photos"
    for p in write_corpus(tmp_path / "all")[:7]:  # a smaller corpus than the default 12 keeps the test short
        photos.mkdir(exist_ok=True)
        shutil.copy(p, photos / p.name)
    out = tmp_path / "e2e"
    rc = main(["e2e", "--input", str(photos), "--output", str(out), "--annotators", "canny,lineart_standard",
               "--steps", "8", "--eval-steps", "1", "--short-side", "64"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["train"] + report["splits"]["test"] == 7 and report["splits"]["test"] >= 1
    assert report["cache"]["cached"] == report["splits"]["train"]
    train = report["train"]
    assert train["steps"] == 8 and train["loss_last"] < train["loss_first"]  # a tiny model from scratch learns
    assert (out / "loss_curve.png").stat().st_size > 0 and (out / "eval" / "grid.png").exists()
    perception = report["eval"]["perception"]
    assert set(perception) == {"edge", "lineart"} and 0 <= perception["edge"]["ods"] <= 1
    md = (out / "report.md").read_text()
    assert "| edge | labels | ods" in md and "![loss curve](loss_curve.png)" in md
    assert set(report["seconds"]) == {"label", "cache_latents", "train", "eval"}


def test_split_is_deterministic_and_never_empty(tmp_path):
    src = tmp_path / "joint"
    (src / "image").mkdir(parents=True)
    lines = []
    for n in range(3):
        (src / "image" / f"r{n}.jpg").write_bytes(b"x")
        lines.append(json.dumps({"image": f"image/r{n}.jpg", "info": {"height": 1, "width": 1}}))
    (src / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    first = split_joint(src, tmp_path / "a", fraction=0.0)  # nothing hashes below 0: one record still held out
    again = split_joint(src, tmp_path / "b", fraction=0.0)
    assert first == again == {"train": 2, "test": 1}
    held_out = [(tmp_path / x / "test" / "metadata.jsonl").read_text() for x in ("a", "b")]
    assert held_out[0] == held_out[1]
    assert split_joint(src, tmp_path / "c", fraction=1.0) == {"train": 1, "test": 2}
    with pytest.raises(ValueError, match="at least 2"):
        (src / "metadata.jsonl").write_text(lines[0] + "\n")
        split_joint(src, tmp_path / "d", fraction=0.5)
