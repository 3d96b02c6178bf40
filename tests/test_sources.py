"""Listing inputs: folders (local, fsspec, S3) with sidecar captions, path lists, WebDataset tars, Parquet and
saved datasets; deterministic shards; one clear error for every unusable input (no Ray involved)."""

from __future__ import annotations

import io
import tarfile

import fsspec
import pytest

from pipeline.sources import InputError, list_sources, shard_items, split_member, tar_key


def write_tar(path, samples: dict[str, dict[str, bytes]]) -> None:
    """img2dataset's layout: per sample key, members key.jpg / key.txt / key.json, contiguous."""
    with tarfile.open(path, "w") as tar:
        for key, parts in samples.items():
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_folder_listing_is_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "b/c.webp", "notes.txt", "d.tiff", "e.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    found = list_sources(str(tmp_path))
    assert [p[len(str(tmp_path)) + 1 :] for p in found] == ["a.jpg", "b/c.webp", "b/z.PNG", "d.tiff", "e.jpeg"]


def test_sidecar_captions_are_paired_with_their_images(tmp_path):
    for name in ("a.jpg", "a.txt", "b.png", "b.json", "c.jpg", "d.jpg", "d.txt", "d.json"):
        (tmp_path / name).write_bytes(b"x")
    found = list_sources(str(tmp_path))
    assert found.sidecars == {
        str(tmp_path / "a.jpg"): str(tmp_path / "a.txt"),
        str(tmp_path / "b.png"): str(tmp_path / "b.json"),
        str(tmp_path / "d.jpg"): str(tmp_path / "d.txt"),  # .txt wins over .json
    }
    items = shard_items(found, 2)
    assert [it.caption_uri.rsplit("/", 1)[-1] for it in items] == ["a.txt", "b.json", "", "d.txt"]


def test_text_file_of_paths_resolves_relative_entries(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("x.jpg", "x.txt", "sub/y.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text(f"# comment\nx.jpg\n\n{tmp_path / 'sub/y.png'}\n")
    found = list_sources(str(tmp_path / "list.txt"))
    assert found == [str(tmp_path / "sub/y.png"), str(tmp_path / "x.jpg")]
    assert found.sidecars == {str(tmp_path / "x.jpg"): str(tmp_path / "x.txt")}


def test_bad_path_lists_fail_up_front_with_a_count_and_the_first_few(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    (tmp_path / "missing.txt").write_text("ok.jpg\nno1.jpg\nno2.jpg\nno3.jpg\nno4.jpg\n")
    with pytest.raises(
        InputError, match=r"4 of 5 listed paths do not exist, e\.g\. .*no1\.jpg, .*no2\.jpg, .*no3\.jpg$"
    ):
        list_sources(str(tmp_path / "missing.txt"))
    (tmp_path / "prose.txt").write_text("Dear diary,\ntoday I labeled photos.\nok.jpg\n")
    with pytest.raises(InputError, match=r"2 of 3 lines are not image paths, first line 1: 'Dear diary,'"):
        list_sources(str(tmp_path / "prose.txt"))
    (tmp_path / "table.csv").write_text("path,caption\nok.jpg,a photo\n")
    with pytest.raises(InputError, match=r"is a \.csv file; give an image folder"):
        list_sources(str(tmp_path / "table.csv"))


def test_fsspec_filesystems_keep_their_protocol():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/raw/one.jpg", b"1")
    fs.pipe("/bucket/raw/two.png", b"2")
    fs.pipe("/bucket/raw/two.txt", b"a caption")
    found = list_sources("memory://bucket/raw")
    assert found == ["memory:///bucket/raw/one.jpg", "memory:///bucket/raw/two.png"]
    assert found.sidecars == {"memory:///bucket/raw/two.png": "memory:///bucket/raw/two.txt"}


def test_missing_empty_or_mixed_inputs_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_sources(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no images"):
        list_sources(str(tmp_path / "empty"))
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.jpg").write_bytes(b"x")
    write_tar(tmp_path / "mixed" / "00000.tar", {"k": {"jpg": b"x"}})
    with pytest.raises(InputError, match="holds 1 images and 1 .tar"):
        list_sources(str(tmp_path / "mixed"))


def test_webdataset_tars_list_their_image_samples_in_order(tmp_path):
    write_tar(tmp_path / "00001.tar", {"000010001": {"jpg": b"a", "txt": b"c", "json": b"{}"}})
    write_tar(
        tmp_path / "00000.tar",
        {"000000002": {"jpg": b"b"}, "000000001": {"png": b"a", "txt": b"c"}, "000000003": {"json": b"{}"}},
    )
    (tmp_path / "00000_stats.json").write_text("{}")  # img2dataset's companions are not inputs
    found = list_sources(str(tmp_path))
    t0, t1 = tmp_path / "00000.tar", tmp_path / "00001.tar"
    assert found == [f"{t0}#000000001", f"{t0}#000000002", f"{t1}#000010001"]  # a json-only sample is no image
    assert split_member(found[0]) == (str(t0), "000000001")
    assert split_member(str(tmp_path / "odd#name.jpg")) is None
    assert tar_key("dir/sub/0001.seg.png") == ("dir/sub/0001", "seg.png")
    (tmp_path / "bad.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(InputError, match="cannot read WebDataset shard .*bad.tar"):
        list_sources(str(tmp_path / "bad.tar"))


def test_parquet_dataset_splits_rows_and_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    for split, n in (("train", 5), ("test", 2)):
        table = pa.table({"image": [{"bytes": b"x", "path": None}] * n, "text": ["t"] * n})
        pq.write_table(table, tmp_path / "data" / f"{split}-00000-of-00001.parquet", row_group_size=2)
    train = list_sources(str(tmp_path))  # the default split, named as `datasets` names it
    f = tmp_path / "data" / "train-00000-of-00001.parquet"
    assert train == [f"{f}#{i}" for i in range(5)]
    items = shard_items(train, 2)
    assert [(it.shard, it.row) for it in items] == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4)]
    assert len(list_sources(str(tmp_path), "test")) == 2
    with pytest.raises(InputError, match="has no split 'validation'; splits: train, test"):
        list_sources(str(tmp_path), "validation")


def test_saved_to_disk_dataset_lists_its_rows(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b", "c"]}).save_to_disk(str(tmp_path / "ds"))
    found = list_sources(str(tmp_path / "ds"))
    assert [s.rsplit("#", 1)[1] for s in found] == ["0", "1", "2"] and found[0].split("#")[0].endswith(".arrow")
    with pytest.raises(InputError, match="has no split"):
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"a": [1]})}).save_to_disk(str(tmp_path / "dd"))
        list_sources(str(tmp_path / "dd"), "test")


def test_bucket_listing_with_sidecars_on_a_real_s3_server(s3):
    fs = s3.filesystem()
    bucket = s3.new_bucket()
    for key in ("raw/b/2.jpg", "raw/a/1.png", "raw/a/1.json", "raw/readme.md", "raw/3.webp", "raw/3.txt"):
        with fs.open_output_stream(f"{bucket}/{key}") as f:
            f.write(b"x")
    found = list_sources(f"s3://{bucket}/raw")
    assert found == [f"s3://{bucket}/raw/{k}" for k in ("3.webp", "a/1.png", "b/2.jpg")]
    assert found.sidecars == {
        f"s3://{bucket}/raw/3.webp": f"s3://{bucket}/raw/3.txt",
        f"s3://{bucket}/raw/a/1.png": f"s3://{bucket}/raw/a/1.json",
    }
    with pytest.raises(InputError, match="does not exist"):
        list_sources(f"s3://{bucket}/nothing-here")


def test_shards_are_contiguous_and_deterministic():
    sources = [f"/d/{i:03d}.jpg" for i in range(10)]
    items = shard_items(sources, 4)
    assert [it.shard for it in items] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert shard_items(list(sources), 4) == items
