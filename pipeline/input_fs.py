"""One file-system abstraction for reading a job's inputs: `pyarrow.fs`.

Local disks and object stores (`s3://`, `gs://`, `hdfs://`) use pyarrow's own file systems, which take
credentials and endpoints from each store's standard environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`
for S3-compatible stores, `GOOGLE_APPLICATION_CREDENTIALS`, ...). Any other scheme fsspec knows
(`hf://` through huggingface_hub's HfFileSystem, `memory://`) is wrapped as a pyarrow file system, so
listing and reading are one code path for every store.
"""

from __future__ import annotations

import functools
import os

# Schemes pyarrow.fs.FileSystem.from_uri handles natively (pyarrow docs, "Filesystem Interface").
NATIVE = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def split_uri(uri: str) -> tuple[str, str]:
    """Scheme and rest of a URI: s3://b/k -> ("s3", "b/k"); a plain or file:// path -> ("", absolute path)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        return "", os.path.abspath(rest if sep else uri)
    return scheme, rest


def resolve(uri: str):
    """(pyarrow FileSystem, path inside it) for a URI. File systems are cached per store, so a worker
    that reads thousands of objects builds its S3 client once."""
    scheme, rest = split_uri(uri)
    if scheme in NATIVE:
        authority = rest.split("/", 1)[0]
        return _filesystem(scheme, authority), rest.rstrip("/") or authority
    fs = _filesystem(scheme, "")
    if not scheme:
        return fs, rest
    return fs, _fsspec(scheme)._strip_protocol(uri)


def to_uri(scheme: str, path: str) -> str:
    """Inverse of `resolve`: the URI a worker can reopen (local paths stay plain absolute paths)."""
    return path if not scheme else f"{scheme}://{path}"


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, authority: str):
    from pyarrow import fs as pafs

    if not scheme:
        return pafs.LocalFileSystem()
    if scheme in NATIVE:
        return pafs.FileSystem.from_uri(f"{scheme}://{authority}")[0]
    return pafs.PyFileSystem(pafs.FSSpecHandler(_fsspec(scheme)))


def _fsspec(scheme: str):
    import fsspec

    return fsspec.filesystem(scheme)
