"""Listing inputs: folders (local and fsspec), path lists, deterministic shards, clear errors."""

from __future__ import annotations

import fsspec
import pytest

from pipeline.sources import InputError, list_sources, shard_items


def test_folder_listing_is_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "b/c.webp", "notes.txt", "d.tiff", "e.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    found = list_sources(str(tmp_path))
    assert [p[len(str(tmp_path)) + 1 :] for p in found] == ["a.jpg", "b/c.webp", "b/z.PNG", "d.tiff", "e.jpeg"]


def test_text_file_of_paths_resolves_relative_entries(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# comment\nx.jpg\n\n/abs/y.png\ns3://bucket/z.jpg\n")
    assert list_sources(str(tmp_path / "list.txt")) == sorted(
        [str(tmp_path / "x.jpg"), "/abs/y.png", "s3://bucket/z.jpg"]
    )


def test_fsspec_filesystems_keep_their_protocol():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/raw/one.jpg", b"1")
    fs.pipe("/bucket/raw/two.png", b"2")
    assert list_sources("memory://bucket/raw") == ["memory:///bucket/raw/one.jpg", "memory:///bucket/raw/two.png"]


def test_missing_or_empty_inputs_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_sources(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no images"):
        list_sources(str(tmp_path / "empty"))


def test_shards_are_contiguous_and_deterministic():
    sources = [f"/d/{i:03d}.jpg" for i in range(10)]
    items = shard_items(sources, 4)
    assert [it.shard for it in items] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert shard_items(list(sources), 4) == items
