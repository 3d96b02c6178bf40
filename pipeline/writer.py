"""Writing a label job's output: atomic files, per-batch staging parts, and per-shard finalisation.

Crash safety: every file is written to a temporary name and renamed into place,
so a file either exists whole or not at all. During the run the writer stage
drops one staging Parquet part per batch and shard under `_staging/`; a shard is
finalised once every one of its inputs is in a part (labeled or error): its rows
are sorted and written to `data/` and `errors/`, its metadata lines to
`_shards/`, then the completion marker `_shards/<shard>.done`, and only then are
its staging parts removed. A rerun skips shards with markers and, inside
unfinished shards, every input already in a staging part.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.domains import LABEL_DOMAINS, annotation_key, relative_path
from schemas.record import ERROR_SCHEMA, RECORD_SCHEMA, record_schema_with_hf_metadata

ROW_GROUP_SIZE = 100  # rows per Parquet row group: ~100 images keeps random access cheap (Hub convention)


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    os.replace(tmp, path)


class OutputLayout:
    """Paths of one output folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def staging(self, shard: int) -> Path:
        return self.root / "_staging" / shard_name(shard)

    def marker(self, shard: int) -> Path:
        return self.root / "_shards" / f"{shard_name(shard)}.done"

    def shard_metadata(self, shard: int) -> Path:
        return self.root / "_shards" / f"{shard_name(shard)}.jsonl"

    def data(self, shard: int) -> Path:
        return self.root / "data" / f"{shard_name(shard)}.parquet"

    def errors(self, shard: int) -> Path:
        return self.root / "errors" / f"{shard_name(shard)}.parquet"

    def read_data(self, shard: int, columns: list[str] | None = None) -> pa.Table:
        """A finished shard's records (an empty table when every input of the shard failed)."""
        path = self.data(shard)
        if not path.exists():
            schema = RECORD_SCHEMA if columns is None else pa.schema([RECORD_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pq.read_table(path, columns=columns)

    def read_errors(self, shard: int) -> list[dict]:
        path = self.errors(shard)
        return pq.read_table(path).to_pylist() if path.exists() else []

    def done_shards(self) -> dict[int, dict]:
        out = {}
        for p in sorted((self.root / "_shards").glob("shard-*.done")):
            out[int(p.name[6:11])] = json.loads(p.read_text())
        return out


# ----- staging parts ------------------------------------------------------------------------------
STAGING_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("shard", pa.int64()),
        ("id", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("captions", pa.string()),  # JSON {key: text}
        ("image", pa.binary()),
        *[(f"file_{d}", pa.binary()) for d in LABEL_DOMAINS],
        ("error", pa.string()),
        ("error_stage", pa.string()),
        ("detail", pa.string()),
    ]
)


def write_staging_part(layout: OutputLayout, shard: int, rows: dict[str, list]) -> None:
    table = pa.table({f.name: pa.array(rows.get(f.name, [None] * len(rows["source"])), f.type) for f in STAGING_SCHEMA})
    atomic_write_table(layout.staging(shard) / f"part-{uuid.uuid4().hex}.parquet", table)


def staged_sources(layout: OutputLayout, shard: int) -> set[str]:
    parts = sorted(layout.staging(shard).glob("part-*.parquet"))
    if not parts:
        return set()
    return set(pq.read_table(parts, columns=["source"]).column("source").to_pylist())


def write_joint_files(root: Path, rid: str, files: dict[str, bytes]) -> None:
    """The Joint layout's per-record files; names come from the md5 id, so rewriting is idempotent."""
    for domain, data in files.items():
        if data:
            target = root / relative_path(domain, rid)
            if not target.exists():
                atomic_write_bytes(target, data)


# ----- finalisation -------------------------------------------------------------------------------
def finalize_shard(
    layout: OutputLayout,
    shard: int,
    expected_sources: list[str],
    provenance: list[dict],
    seen_ids: dict[str, str],
    annotators: list[str],
    base_table: pa.Table | None = None,
    old_errors: list[dict] | None = None,
) -> dict:
    """Turn a shard's staging parts into its final files and marker; returns the marker's counts.

    `seen_ids` maps record ids already in earlier shards to their source: a later
    input with the same bytes is filed as a `duplicate` error (exact dedup by content hash).
    `base_table` is the shard's existing records when labels are being added (incremental);
    `old_errors` its existing error rows, kept. `annotators` (every annotator the shard has been through)
    goes into the marker itself, so a crash can never leave a marker that misstates it.
    """
    parts = sorted(layout.staging(shard).glob("part-*.parquet"))
    staged = pq.read_table(parts, schema=STAGING_SCHEMA) if parts else STAGING_SCHEMA.empty_table()
    rows = sorted(staged.to_pylist(), key=lambda r: r["source"])
    missing = set(expected_sources) - {r["source"] for r in rows}
    if missing:
        raise RuntimeError(f"{shard_name(shard)}: {len(missing)} inputs not processed, e.g. {sorted(missing)[:3]}")
    records, errors = [], list(old_errors or [])
    for r in _dedup_sources(rows):
        if r["error"]:
            errors.append(
                {
                    "id": r["id"],
                    "source": r["source"],
                    "stage": r["error_stage"],
                    "error": r["error"],
                    "detail": r["detail"],
                }
            )
        elif r["id"] in seen_ids:
            errors.append(
                {
                    "id": r["id"],
                    "source": r["source"],
                    "stage": "dedup",
                    "error": "duplicate",
                    "detail": f"same bytes as {seen_ids[r['id']]}",
                }
            )
        else:
            seen_ids[r["id"]] = r["source"]
            records.append(r)
    table = _record_table(records, provenance)
    if base_table is not None:
        table = merge_records(base_table, table)
    # A shard with no rows gets no file: `datasets` cannot read a zero-row Parquet file.
    _write_or_remove(layout.data(shard), table.cast(record_schema_with_hf_metadata()))
    _write_or_remove(layout.errors(shard), pa.Table.from_pylist(errors, schema=ERROR_SCHEMA))
    metadata = "".join(json.dumps(joint_line(r), ensure_ascii=False) + "\n" for r in table.to_pylist())
    atomic_write_text(layout.shard_metadata(shard), metadata)
    counts = {**shard_counts(table, errors), "annotators": list(annotators)}
    atomic_write_text(layout.marker(shard), json.dumps(counts, sort_keys=True))
    for p in parts:
        p.unlink(missing_ok=True)
    if layout.staging(shard).exists() and not any(layout.staging(shard).iterdir()):
        layout.staging(shard).rmdir()
    return counts


def _write_or_remove(path: Path, table: pa.Table) -> None:
    if table.num_rows:
        atomic_write_table(path, table)
    else:
        path.unlink(missing_ok=True)


def _dedup_sources(rows: list[dict]) -> list[dict]:
    """One row per source (a source can only be staged twice if two runs overlapped); keep the first."""
    seen, out = set(), []
    for r in rows:
        if r["source"] not in seen:
            seen.add(r["source"])
            out.append(r)
    return out


def _record_table(rows: list[dict], provenance: list[dict]) -> pa.Table:
    out = []
    for r in rows:
        domains = [d for d in LABEL_DOMAINS if r.get(f"file_{d}")]
        captions = json.loads(r["captions"] or "{}")
        row = {
            "id": r["id"],
            "source": r["source"],
            "image": {"bytes": r["image"], "path": relative_path("image", r["id"])},
            "info": {"height": r["height"], "width": r["width"]},
            "caption": [{"model": k, "text": v} for k, v in sorted(captions.items())],
            "provenance": [p for p in provenance if p["domain"] in domains or (p["domain"] == "caption" and captions)],
            "schema_version": RECORD_SCHEMA.metadata[b"jodi_schema_version"].decode(),
        }
        for d in LABEL_DOMAINS:
            data = r.get(f"file_{d}")
            row[annotation_key(d)] = {"bytes": data, "path": relative_path(d, r["id"])} if data else None
        out.append(row)
    return pa.Table.from_pylist(out, schema=RECORD_SCHEMA)


def merge_records(base: pa.Table, new: pa.Table) -> pa.Table:
    """Add the labels/captions/provenance of `new` onto the records of `base` with the same id."""
    by_id = {r["id"]: r for r in new.to_pylist()}
    merged = []
    for r in base.to_pylist():
        extra = by_id.get(r["id"])
        if extra is not None:
            for d in LABEL_DOMAINS:
                if extra[annotation_key(d)] is not None:
                    r[annotation_key(d)] = extra[annotation_key(d)]
            caps = {c["model"]: c["text"] for c in r["caption"] or []}
            caps.update({c["model"]: c["text"] for c in extra["caption"] or []})
            r["caption"] = [{"model": k, "text": v} for k, v in sorted(caps.items())]
            prov = {p["domain"]: p for p in r["provenance"] or []}
            prov.update({p["domain"]: p for p in extra["provenance"] or []})
            r["provenance"] = list(prov.values())
        merged.append(r)
    return pa.Table.from_pylist(merged, schema=RECORD_SCHEMA)


def joint_line(row: dict) -> dict:
    """A Parquet record row -> its metadata.jsonl object (keys absent for labels not produced)."""
    line = {
        "image": relative_path("image", row["id"]),
        "info": {"height": row["info"]["height"], "width": row["info"]["width"]},
        "caption": {c["model"]: c["text"] for c in row["caption"] or []},
    }
    for d in LABEL_DOMAINS:
        if row.get(annotation_key(d)) is not None:
            line[annotation_key(d)] = relative_path(d, row["id"])
    return line


def shard_counts(table: pa.Table, errors: list[dict]) -> dict:
    counts = {"records": table.num_rows, "errors": len(errors), "domains": {}, "captions": {}, "error_reasons": {}}
    for d in LABEL_DOMAINS:
        n = table.num_rows - table.column(annotation_key(d)).null_count
        if n:
            counts["domains"][d] = n
    for caps in table.column("caption").to_pylist():
        for c in caps or []:
            counts["captions"][c["model"]] = counts["captions"].get(c["model"], 0) + 1
    for e in errors:
        counts["error_reasons"][e["error"]] = counts["error_reasons"].get(e["error"], 0) + 1
    return counts


def write_metadata(layout: OutputLayout, shards: list[int]) -> int:
    """metadata.jsonl = the shards' metadata in shard order, written atomically; returns the line count."""
    lines = []
    for s in sorted(shards):
        p = layout.shard_metadata(s)
        if p.exists():
            lines.extend(ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip())
    atomic_write_text(layout.root / "metadata.jsonl", "".join(ln + "\n" for ln in lines))
    return len(lines)
