"""Cheap checks a dataset tool runs before it writes anything, so a bad dataset fails in one line that
names the metadata line or shard row, and leaves no half-written output behind.

Joint folder: every metadata line parses and every path it names stays inside the root and exists
(no file is read). Parquet shards: every record id becomes a file name inside the destination
(`jodi convert --to joint` writes `image/<id>.jpg`). Decoding and value checks are `jodi validate`'s.
"""

from __future__ import annotations

from pathlib import Path

from schemas.domains import IMAGE, relative_path
from schemas.joint import JointFormatError, iter_joint_entries, parquet_files
from schemas.paths import UnsafePathError, resolve_inside


def check_joint_folder(root: str | Path) -> int:
    """Number of records; raises JointFormatError / UnsafePathError naming the first bad line."""
    n = 0
    for entry in iter_joint_entries(root):
        for domain, rel in entry.files.items():
            try:
                path = entry.path(domain)
            except UnsafePathError as exc:
                raise UnsafePathError(f"{entry.where}: {exc}") from None
            if not path.is_file():
                raise JointFormatError(f"{entry.where}: {domain} file {rel!r} does not exist")
        n += 1
    return n


def check_parquet_ids(src: str | Path, dst: str | Path) -> int:
    """Number of rows; raises JointFormatError / UnsafePathError naming the first bad shard row."""
    import pyarrow.parquet as pq

    n = 0
    for shards in parquet_files(src).values():
        for shard in shards:
            ids = pq.read_table(shard, columns=["id"]).column("id").to_pylist()
            for row, rid in enumerate(ids):
                where = f"{shard.name}:row {row}"
                if not isinstance(rid, str) or not rid:
                    raise JointFormatError(f"{where}: record without an id")
                try:
                    resolve_inside(dst, relative_path(IMAGE, rid))
                except UnsafePathError as exc:
                    raise UnsafePathError(f"{where}: id {rid!r} is not a safe file name ({exc})") from None
            n += len(ids)
    return n
