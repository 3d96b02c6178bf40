"""The loopback S3 server the storage tests rely on: a real round trip through pyarrow."""

from __future__ import annotations

from pyarrow import fs as pafs


def test_s3_round_trip_through_pyarrow(s3):
    bucket = s3.new_bucket()
    fs = s3.filesystem()
    with fs.open_output_stream(f"{bucket}/a/b.txt") as f:
        f.write(b"hello")
    with fs.open_input_stream(f"{bucket}/a/b.txt") as f:
        assert f.read() == b"hello"
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector(bucket, recursive=True)) if i.is_file]
    assert listed == [f"{bucket}/a/b.txt"]
