"""The writer and finaliser on hand-made Arrow staging parts (no Ray): sort, dedup, errors, marker, merge."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.finalize import ShardIncompleteError, ShardPlan, finalize_shard
from pipeline.writer import OutputLayout, add_prefix
from schemas.domains import annotation_key
from schemas.record import Provenance, metadata_lines

PROV = (Provenance("edge", "canny"), Provenance("lineart", "lineart_standard"))


def row(src: str, rid: str, error: str = "", edge: bytes | None = b"E", lineart: bytes | None = None) -> dict:
    return {
        "source": src,
        "shard": 0,
        "id": rid,
        "height": 4,
        "width": 6,
        "captions": json.dumps({"source": f"cap {src}"}) if not error else "{}",
        "image": None if error else b"I" + rid.encode(),
        "file_edge": None if error else edge,
        "file_lineart": None if error else lineart,
        "error": error,
        "error_stage": "decode" if error else "",
        "detail": "broken" if error else "",
    }


def stage(layout: OutputLayout, rows: list[dict], prefix: str = "part-") -> str:
    return layout.write_staging_part(0, {k: [r[k] for r in rows] for k in rows[0]}, prefix)


def test_finalize_sorts_dedups_files_errors_and_marks_last(tmp_path):
    layout = OutputLayout(str(tmp_path / "out"))
    stage(layout, [row("d.jpg", "id_d"), row("b.jpg", "id_b")])
    stage(layout, [row("a.jpg", "id_a"), row("c.jpg", "", error="truncated"), row("b.jpg", "id_b")])
    plan = ShardPlan(0, ("a.jpg", "b.jpg", "c.jpg", "d.jpg"), ("canny",), PROV[:1], duplicates={"d.jpg": "a.jpg"})
    counts = finalize_shard(layout, plan)

    data = layout.read_data(0)
    assert data.column("source").to_pylist() == ["a.jpg", "b.jpg"]  # sorted; b staged twice, kept once
    assert data.column("image").to_pylist()[0] == {"bytes": b"Iid_a", "path": "image/id_a.jpg"}
    assert data.column(annotation_key("edge")).to_pylist()[1]["path"] == "annotation_edge/id_b.jpg"
    assert data.column(annotation_key("lineart")).null_count == 2
    assert data.column("provenance").to_pylist()[0][0]["annotator"] == "canny"
    errors = layout.read_errors(0).to_pylist()
    assert [(e["source"], e["error"], e["stage"]) for e in errors] == [
        ("c.jpg", "truncated", "decode"),
        ("d.jpg", "duplicate", "dedup"),
    ]
    assert errors[1]["detail"] == "same bytes as a.jpg"
    assert counts == {
        "records": 2,
        "errors": 2,
        "domains": {"edge": 2},
        "captions": {"source": 2},
        "error_reasons": {"truncated": 1, "duplicate": 1},
        "annotators": ["canny"],
    }
    assert json.loads(layout.storage.get_text(layout.marker(0))) == counts
    lines = layout.storage.get_text(layout.shard_metadata(0)).splitlines()
    assert [json.loads(ln) for ln in lines] == [
        {"image": "image/id_a.jpg", "info": {"height": 4, "width": 6}, "caption": {"source": "cap a.jpg"},
         "annotation_edge": "annotation_edge/id_a.jpg"},
        {"image": "image/id_b.jpg", "info": {"height": 4, "width": 6}, "caption": {"source": "cap b.jpg"},
         "annotation_edge": "annotation_edge/id_b.jpg"},
    ]  # fmt: skip
    assert "".join(metadata_lines(data)) == "".join(ln + "\n" for ln in lines)
    assert layout.all_parts(0) == []  # parts go after the marker
    assert not (tmp_path / "out" / "_staging" / "shard-00000").exists()


def test_an_incomplete_shard_is_never_marked(tmp_path):
    layout = OutputLayout(str(tmp_path / "out"))
    stage(layout, [row("a.jpg", "id_a")])
    with pytest.raises(ShardIncompleteError, match="1 inputs not staged"):
        finalize_shard(layout, ShardPlan(0, ("a.jpg", "b.jpg"), ("canny",), PROV[:1]))
    assert not layout.storage.exists(layout.marker(0))
    assert len(layout.all_parts(0)) == 1  # the staged work is kept for the rerun


def test_incremental_merge_adds_a_domain_to_existing_records(tmp_path):
    layout = OutputLayout(str(tmp_path / "out"))
    stage(layout, [row("a.jpg", "id_a"), row("b.jpg", "id_b")])
    finalize_shard(layout, ShardPlan(0, ("a.jpg", "b.jpg"), ("canny",), PROV[:1]))
    before = layout.read_data(0)
    prefix = add_prefix(["lineart_standard"])
    added = [row("a.jpg", "id_a", edge=None, lineart=b"L1"), row("b.jpg", "id_b", edge=None, lineart=b"L2")]
    stage(layout, added, prefix)
    counts = finalize_shard(
        layout,
        ShardPlan(0, ("a.jpg", "b.jpg"), ("canny", "lineart_standard"), PROV[1:], added=("lineart_standard",)),
    )
    after = layout.read_data(0)
    assert after.column(annotation_key("edge")).to_pylist() == before.column(annotation_key("edge")).to_pylist()
    assert [v["bytes"] for v in after.column(annotation_key("lineart")).to_pylist()] == [b"L1", b"L2"]
    domains = [sorted(p["domain"] for p in ps) for ps in after.column("provenance").to_pylist()]
    assert domains == [["edge", "lineart"]] * 2
    assert counts["domains"] == {"edge": 2, "lineart": 2} and counts["annotators"] == ["canny", "lineart_standard"]


def test_unreadable_staging_parts_are_discarded_and_relabeled(tmp_path):
    layout = OutputLayout(str(tmp_path / "out"))
    good = stage(layout, [row("a.jpg", "id_a")])
    layout.storage.put(f"{layout.staging(0)}/part-truncated.parquet", b"PAR1\x00\x01garbage")
    staged = layout.read_staged(0, columns=["source", "id", "error"])
    assert staged.column("source").to_pylist() == ["a.jpg"]
    assert layout.all_parts(0) == [good]  # the damaged part is gone; its inputs will be labeled again


def test_staging_part_names_are_deterministic(tmp_path):
    layout = OutputLayout(str(tmp_path / "out"))
    rows = [row("b.jpg", "id_b"), row("a.jpg", "id_a")]
    assert stage(layout, rows) == stage(layout, rows[::-1])  # a retried batch overwrites its own part
    assert len(layout.all_parts(0)) == 1


def test_record_table_has_the_hugging_face_features(tmp_path):
    import datasets

    layout = OutputLayout(str(tmp_path / "out"))
    stage(layout, [row("a.jpg", "id_a")])
    finalize_shard(layout, ShardPlan(0, ("a.jpg",), ("canny",), PROV[:1]))
    features = datasets.Features.from_arrow_schema(
        pa.parquet.read_schema(tmp_path / "out" / "data" / "shard-00000.parquet")
    )
    assert isinstance(features["image"], datasets.Image)
    assert isinstance(features["annotation_edge"], datasets.Image)


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 256 KiB file system (tmpfs); needs the right to mount, so it is skipped where that is missing."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_path_and_nothing_half_written(tiny_disk):
    from schemas.storage import Storage, StorageError

    storage = Storage(str(tiny_disk / "out"))
    storage.put("small.bin", b"x" * 1000)
    with pytest.raises(StorageError) as err:
        storage.put("data/shard-00000.parquet", b"y" * 1_000_000)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"no space left writing {tiny_disk}/out/data/shard-00000.parquet")
    assert "1.0 MB needed" in line and "rerun the same command" in line
    assert storage.list(recursive=True) == ["small.bin"]  # no partial file, no temporary left behind
    assert not [p for p in (tiny_disk / "out" / "data").iterdir()]
