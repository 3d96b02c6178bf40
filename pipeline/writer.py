"""The output of a label job, on any storage: its layout, the Joint files, staging parts and metadata.jsonl.

Crash safety without rename (object stores have none): every file is one atomic PUT
(`schemas.storage.Storage`). During the run, writer actors put each record's Joint files
(named by the md5 id, so rewriting is idempotent) and one staging Parquet part per batch and
shard under `_staging/<shard>/`, named from the hash of the sources it holds (a retried batch
rewrites the same object). A shard is finalised (`pipeline.finalize`) once all its inputs are
staged: `data/`, `errors/`, `_shards/<shard>.jsonl`, then the marker `_shards/<shard>.done`
last, then its staging parts are deleted. A rerun skips marked shards, deletes their leftover
parts, and inside unfinished shards skips every input already in a readable part.
"""

from __future__ import annotations

import hashlib
import json
import logging

import pyarrow as pa

from schemas.domains import EXTRA_DOMAINS, STORED_DOMAINS, relative_path
from schemas.record import ERROR_SCHEMA, RECORD_SCHEMA, with_record_columns
from schemas.storage import Storage

log = logging.getLogger(__name__)

# Staging parts of a first labeling pass are `part-*`; those of an incremental pass (adding annotators to
# finished shards) are `add-<annotators hash>-*`, so a rerun can tell leftovers of one from the other.
PART_PREFIX = "part-"
ADD_PREFIX = "add-"

STAGING_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("shard", pa.int64()),
        ("id", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("captions", pa.string()),  # JSON {key: text}
        ("image", pa.binary()),
        *[(f"file_{d}", pa.binary()) for d in STORED_DOMAINS],
        ("error", pa.string()),
        ("error_stage", pa.string()),
        ("detail", pa.string()),
    ]
)


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def add_prefix(annotators: list[str]) -> str:
    digest = hashlib.sha1(",".join(sorted(annotators)).encode()).hexdigest()[:8]
    return f"{ADD_PREFIX}{digest}-"


class OutputLayout:
    """Relative paths of one output and the small reads the job needs; `storage` does the I/O."""

    def __init__(self, root: str | Storage) -> None:
        self.storage = root if isinstance(root, Storage) else Storage(root)
        self.uri = self.storage.uri

    def staging(self, shard: int) -> str:
        return f"_staging/{shard_name(shard)}"

    def marker(self, shard: int) -> str:
        return f"_shards/{shard_name(shard)}.done"

    def shard_metadata(self, shard: int) -> str:
        return f"_shards/{shard_name(shard)}.jsonl"

    def data(self, shard: int) -> str:
        return f"data/{shard_name(shard)}.parquet"

    def errors(self, shard: int) -> str:
        return f"errors/{shard_name(shard)}.parquet"

    def read_data(self, shard: int, columns: list[str] | None = None) -> pa.Table:
        """A finished shard's records (an empty table when every input of the shard failed)."""
        if not self.storage.exists(self.data(shard)):
            schema = RECORD_SCHEMA if columns is None else pa.schema([RECORD_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        if columns is None:
            return with_record_columns(self.storage.read_table(self.data(shard))).select(RECORD_SCHEMA.names)
        try:
            return self.storage.read_table(self.data(shard), columns=columns)
        except pa.ArrowInvalid:
            # A shard of schema 1.0 lacks the columns of domains added since: read what it has, add them null.
            old = [c for c in columns if c in RECORD_SCHEMA.names and not c.startswith("annotation_")]
            old += [c for c in columns if c.startswith("annotation_") and c[len("annotation_") :] not in EXTRA_DOMAINS]
            table = with_record_columns(self.storage.read_table(self.data(shard), columns=old))
            return table.select(columns)

    def read_errors(self, shard: int) -> pa.Table:
        if not self.storage.exists(self.errors(shard)):
            return ERROR_SCHEMA.empty_table()
        return self.storage.read_table(self.errors(shard)).select(ERROR_SCHEMA.names).cast(ERROR_SCHEMA)

    def done_shards(self) -> dict[int, dict]:
        out = {}
        for rel in self.storage.list("_shards", suffix=".done"):
            name = rel.rsplit("/", 1)[-1]
            out[int(name[6:11])] = json.loads(self.storage.get_text(rel))
        return out

    def parts(self, shard: int, prefix: str = PART_PREFIX) -> list[str]:
        parts = self.storage.list(self.staging(shard), ".parquet")
        return [p for p in parts if p.rsplit("/", 1)[-1].startswith(prefix)]

    def all_parts(self, shard: int) -> list[str]:
        return self.storage.list(self.staging(shard), ".parquet")

    def read_staged(self, shard: int, prefix: str = PART_PREFIX, columns: list[str] | None = None) -> pa.Table:
        """The shard's staged rows, with each row's part name (`_part`). A part that cannot be read
        (truncated by a crash of a local disk, damaged) is deleted: its inputs are simply labeled again."""
        tables = []
        for rel in self.parts(shard, prefix):
            try:
                t = self.storage.read_table(rel, columns=columns).cast(
                    STAGING_SCHEMA if columns is None else pa.schema([STAGING_SCHEMA.field(c) for c in columns])
                )
            except (pa.ArrowInvalid, OSError) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and "Parquet" not in str(exc):
                    raise  # storage unreachable: not the part's fault
                log.warning("discarding unreadable staging part %s (%s)", self.storage.url(rel), type(exc).__name__)
                self.storage.delete(rel)
                continue
            tables.append(t.append_column("_part", pa.array([rel] * t.num_rows, pa.string())))
        if not tables:
            schema = STAGING_SCHEMA if columns is None else pa.schema([STAGING_SCHEMA.field(c) for c in columns])
            return schema.append(pa.field("_part", pa.string())).empty_table()
        return pa.concat_tables(tables)

    def write_staging_part(self, shard: int, rows: dict[str, list], prefix: str = PART_PREFIX) -> str:
        """One batch's rows of one shard; the name is the hash of its sources, so a retry overwrites it."""
        n = len(rows["source"])
        table = pa.table({f.name: pa.array(rows.get(f.name, [None] * n), f.type) for f in STAGING_SCHEMA})
        digest = hashlib.sha1("\n".join(sorted(rows["source"])).encode()).hexdigest()[:20]
        rel = f"{self.staging(shard)}/{prefix}{digest}.parquet"
        self.storage.write_table(rel, table)
        return rel

    def write_joint_files(self, records: list[tuple[str, dict[str, bytes]]]) -> None:
        """Records' Joint files, (id, {domain: bytes}) each; names come from the md5 id, so rewriting one is
        idempotent. One `put_many`, so an object store receives a whole batch's files concurrently."""
        self.storage.put_many(
            [(relative_path(domain, rid), data) for rid, files in records for domain, data in files.items() if data]
        )

    def write_metadata(self, shards: list[int]) -> int:
        """metadata.jsonl = the shards' pieces in shard order, streamed (constant memory); returns lines."""
        lines = 0
        with self.storage.streaming("metadata.jsonl") as out:
            for s in sorted(shards):
                if self.storage.exists(self.shard_metadata(s)):
                    piece = self.storage.get(self.shard_metadata(s))
                    out.write(piece)
                    lines += piece.count(b"\n")
        return lines
