"""Joint folder <-> Parquet shards, and the two writers they share with `publish`.

Parquet shards follow the Hub's conventions (huggingface.co/docs/hub/datasets-adding,
"file naming"): `data/<split>-00000-of-00004.parquet`, rows grouped ~100 per row group
so the dataset viewer and streaming readers fetch small pieces, shards closed at
~500 MB. An unsplit dataset (plain `metadata.jsonl`) keeps the label job's
`shard-*` prefix so a round trip gives back `metadata.jsonl`, not a `train` split.
The Joint writer can add `*_file_name` keys next to Joint's own keys: JodiDataset
ignores them and they make the folder loadable with `datasets`' ImageFolder.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.domains import IMAGE, STORED_DOMAINS, annotation_key, relative_path
from schemas.joint import UNSPLIT_SHARD_PREFIX, iter_joint, iter_parquet, metadata_files, parquet_files
from schemas.paths import resolve_inside
from schemas.record import LabeledRecord, record_schema_with_hf_metadata
from schemas.storage import Storage

ROWS_PER_GROUP = 100
MAX_SHARD_BYTES = 500 * 1000**2


@dataclass(frozen=True)
class ShardConfig:
    """How Parquet shards are cut. Sizes are counted on the encoded file bytes, which dominate a row."""

    rows_per_group: int = ROWS_PER_GROUP
    max_shard_bytes: int = MAX_SHARD_BYTES
    compression: str = "zstd"  # images are already compressed; zstd is cheap on the small columns


@dataclass
class WriteStats:
    """What a writer produced: record count, per-domain label counts, written files."""

    records: int = 0
    domains: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)

    def add(self, record: LabeledRecord) -> None:
        self.records += 1
        self.domains.update(record.labels.keys())


def _row_bytes(record: LabeledRecord) -> int:
    return len(record.image) + sum(len(b) for b in record.labels.values())


def write_parquet(
    records: Iterable[LabeledRecord], folder: str | Path, split: str = "", config: ShardConfig = ShardConfig()
) -> WriteStats:
    """Write records as `folder/<split>-NNNNN-of-MMMMM.parquet` (split "" -> `shard-NNNNN.parquet`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    schema = record_schema_with_hf_metadata()
    prefix = split or UNSPLIT_SHARD_PREFIX
    stats = WriteStats()
    tmp_paths: list[Path] = []
    writer: pq.ParquetWriter | None = None
    group: list[dict] = []
    shard_bytes = 0

    def flush() -> None:
        if group:
            writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=config.rows_per_group)
            group.clear()

    try:
        for record in records:
            if writer is None:
                tmp_paths.append(folder / f".{prefix}-{len(tmp_paths):05d}.parquet.tmp")
                writer = pq.ParquetWriter(tmp_paths[-1], schema, compression=config.compression)
            group.append(record.to_row())
            stats.add(record)
            shard_bytes += _row_bytes(record)
            if len(group) >= config.rows_per_group:
                flush()
            if shard_bytes >= config.max_shard_bytes:
                flush()
                writer.close()
                writer, shard_bytes = None, 0
        if writer is not None:
            flush()
            writer.close()
    except BaseException:  # a record that cannot be read: leave no temp shard behind, then report it
        if writer is not None:
            writer.close()
        for tmp in tmp_paths:
            tmp.unlink(missing_ok=True)
        raise
    # Names carry the final shard count, known only now; the temp names keep a crash from leaving
    # a half-written shard under a name readers would pick up.
    for i, tmp in enumerate(tmp_paths):
        name = f"{prefix}-{i:05d}.parquet" if not split else f"{prefix}-{i:05d}-of-{len(tmp_paths):05d}.parquet"
        os.replace(tmp, folder / name)
        stats.files.append(folder / name)
    return stats


def imagefolder_keys(meta: dict) -> dict:
    """`datasets` ImageFolder keys (`image_file_name`, `annotation_depth_file_name`, ...) for a metadata line."""
    keys = {f"{IMAGE}_file_name": meta[IMAGE]}
    for domain in STORED_DOMAINS:
        if annotation_key(domain) in meta:
            keys[f"{annotation_key(domain)}_file_name"] = meta[annotation_key(domain)]
    return keys


def write_joint(
    records: Iterable[LabeledRecord], root: str | Path, split: str = "", imagefolder: bool = False
) -> WriteStats:
    """Write records as a Joint folder: files under `image/`, `annotation_<domain>/` and one metadata file.

    Files that already hold the same bytes are left alone, so writing records read from `root`
    back into `root` with one more domain (incremental labeling) only writes the new labels.
    The metadata file is replaced atomically at the end.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    storage = Storage(str(root))  # the one atomic writer (temporary name + rename on disks)
    stats = WriteStats()
    lines: list[str] = []
    for record in records:
        files = {IMAGE: record.image, **record.labels}
        for domain, data in files.items():
            rel = relative_path(domain, record.id)
            path = resolve_inside(root, rel)
            if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
                storage.put(path.relative_to(root.resolve()).as_posix(), data)
                stats.files.append(path)
        meta = record.joint_metadata()
        if imagefolder:
            meta.update(imagefolder_keys(meta))
        lines.append(json.dumps(meta, ensure_ascii=False))
        stats.add(record)
    name = f"metadata.{split}.jsonl" if split else "metadata.jsonl"
    storage.put(name, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    stats.files.append(root / name)
    return stats


def joint_to_parquet(src: str | Path, dst: str | Path, config: ShardConfig = ShardConfig()) -> dict[str, WriteStats]:
    """Every split of a Joint folder -> Parquet shards under `dst/data/`."""
    return {
        split: write_parquet(iter_joint(src, split), Path(dst) / "data", split, config) for split in metadata_files(src)
    }


def parquet_to_joint(src: str | Path, dst: str | Path, imagefolder: bool = False) -> dict[str, WriteStats]:
    """Every split of Parquet shards -> a Joint folder at `dst` (one metadata file per split)."""
    return {split: write_joint(iter_parquet(src, split), dst, split, imagefolder) for split in parquet_files(src)}


def convert(src: str | Path, dst: str | Path, to: str, imagefolder: bool = False) -> dict[str, WriteStats]:
    """`to="parquet"` reads a Joint folder; `to="joint"` reads Parquet shards."""
    if to == "parquet":
        return joint_to_parquet(src, dst)
    if to == "joint":
        return parquet_to_joint(src, dst, imagefolder)
    raise ValueError(f"unknown target layout {to!r}; known: joint, parquet")
