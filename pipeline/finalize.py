"""Finalising one shard: staging parts -> sorted records, errors, metadata lines, marker (in that order).

Runs as a Ray task as soon as the driver has seen every input of the shard staged, while the rest of
the corpus is still being labeled; it is a plain function, so tests call it on hand-made parts.
Everything is an Arrow operation on the shard's columns (concatenate, sort, dedup, filter, merge);
the only per-row Python is on short text (captions, provenance, metadata lines), never on file bytes.
Records are built by `schemas.record.record_table`, the one record path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.writer import ADD_PREFIX, PART_PREFIX, OutputLayout, add_prefix, shard_name
from schemas.domains import STORED_DOMAINS, annotation_key
from schemas.record import ERROR_SCHEMA, Provenance, merge_records, metadata_lines, record_table


class ShardIncompleteError(RuntimeError):
    """A shard was finalised before all of its inputs were staged (a bug or a concurrent writer)."""


@dataclass(frozen=True)
class ShardPlan:
    """What the driver tells a finaliser: the shard's inputs, which of them are exact duplicates of an
    earlier input (source -> that source), and the annotators its marker will claim."""

    shard: int
    sources: tuple[str, ...]
    annotators: tuple[str, ...]
    provenance: tuple[Provenance, ...] = ()
    duplicates: dict[str, str] = field(default_factory=dict)
    added: tuple[str, ...] = ()  # incremental pass: the annotators being added to a finished shard
    lease_owner: str | None = None  # checked before the marker: a job that lost its lease writes none


def finalize_shard(layout: OutputLayout, plan: ShardPlan) -> dict:
    """Write the shard's final files and marker from its staging parts; returns the marker's counts."""
    prefix = add_prefix(list(plan.added)) if plan.added else PART_PREFIX
    staged = _one_row_per_source(layout.read_staged(plan.shard, prefix))
    expected = pa.array(sorted(plan.sources), pa.string())
    missing = pc.invert(pc.is_in(expected, value_set=staged.column("source")))
    if pc.any(missing).as_py():
        lost = expected.filter(missing).to_pylist()
        raise ShardIncompleteError(f"{shard_name(plan.shard)}: {len(lost)} inputs not staged, e.g. {lost[:3]}")
    staged = staged.filter(pc.is_in(staged.column("source"), value_set=expected))

    failed = pc.not_equal(staged.column("error"), "")
    dup_sources = pa.array(list(plan.duplicates), pa.string())
    duplicate = pc.and_(pc.invert(failed), pc.is_in(staged.column("source"), value_set=dup_sources))
    errors = _error_rows(staged.filter(failed), staged.filter(duplicate), plan.duplicates)
    table = _records(staged.filter(pc.invert(pc.or_(failed, duplicate))), plan.provenance)
    if plan.added:
        table = merge_records(layout.read_data(plan.shard), table)
        errors = pa.concat_tables([layout.read_errors(plan.shard), errors])

    storage = layout.storage
    # A shard with no rows gets no file: `datasets` cannot read a zero-row Parquet file.
    for rel, t in ((layout.data(plan.shard), table), (layout.errors(plan.shard), errors)):
        if t.num_rows:
            storage.write_table(rel, t.cast(_schema_for(rel)))
        else:
            storage.delete(rel)
    storage.put(layout.shard_metadata(plan.shard), "".join(metadata_lines(table)).encode("utf-8"))
    counts = {**shard_counts(table, errors), "annotators": list(plan.annotators)}
    if plan.lease_owner is not None:
        from pipeline.lease import check_owner

        check_owner(storage, plan.lease_owner)  # a job that lost its output to another writes no marker
    storage.put_text(layout.marker(plan.shard), json.dumps(counts, sort_keys=True))  # the marker, last
    for rel in layout.all_parts(plan.shard):
        storage.delete(rel)
    storage.remove_empty_dir(layout.staging(plan.shard))
    return counts


def _schema_for(rel: str) -> pa.Schema:
    from schemas.record import record_schema_with_hf_metadata

    return record_schema_with_hf_metadata() if rel.startswith("data/") else ERROR_SCHEMA


def _one_row_per_source(staged: pa.Table) -> pa.Table:
    """Sorted by source; a source staged twice (a retried batch in another grouping) keeps its first part's row."""
    staged = staged.sort_by([("source", "ascending"), ("_part", "ascending")])
    src = staged.column("source").combine_chunks()
    if len(src) < 2:
        return staged
    first = np.ones(len(src), bool)
    first[1:] = pc.not_equal(src[1:], src[:-1]).to_numpy(zero_copy_only=False)
    return staged.filter(pa.array(first))


def _records(rows: pa.Table, provenance: tuple[Provenance, ...]) -> pa.Table:
    rows = rows.combine_chunks()
    labels = {d: rows.column(f"file_{d}").combine_chunks() for d in STORED_DOMAINS}
    captions = [json.loads(c or "{}") for c in rows.column("captions").to_pylist()]
    return record_table(
        ids=rows.column("id").combine_chunks(),
        sources=rows.column("source").combine_chunks(),
        heights=rows.column("height").combine_chunks(),
        widths=rows.column("width").combine_chunks(),
        captions=captions,
        image=rows.column("image").combine_chunks(),
        labels=labels,
        provenance=provenance,
    )


def _error_rows(failed: pa.Table, dups: pa.Table, first: dict[str, str]) -> pa.Table:
    dup_sources = dups.column("source").to_pylist()
    dup = pa.table(
        {
            "id": dups.column("id"),
            "source": dups.column("source"),
            "stage": pa.array(["dedup"] * dups.num_rows, pa.string()),
            "error": pa.array(["duplicate"] * dups.num_rows, pa.string()),
            "detail": pa.array([f"same bytes as {first[s]}" for s in dup_sources], pa.string()),
        }
    )
    bad = pa.table(
        {
            "id": failed.column("id"),
            "source": failed.column("source"),
            "stage": failed.column("error_stage"),
            "error": failed.column("error"),
            "detail": failed.column("detail"),
        }
    )
    return pa.concat_tables([bad.cast(ERROR_SCHEMA), dup.cast(ERROR_SCHEMA)]).sort_by("source")


def shard_counts(table: pa.Table, errors: pa.Table) -> dict:
    """The marker's counts: records, errors, labels per domain, captions per key, errors per reason."""
    counts = {"records": table.num_rows, "errors": errors.num_rows, "domains": {}, "captions": {}, "error_reasons": {}}
    for d in STORED_DOMAINS:
        n = table.num_rows - table.column(annotation_key(d)).null_count
        if n:
            counts["domains"][d] = n
    models = pc.list_flatten(table.column("caption")).combine_chunks() if table.num_rows else None
    if models is not None and len(models):
        for item in pc.value_counts(models.field("model")).to_pylist():
            counts["captions"][item["values"]] = item["counts"]
    if errors.num_rows:
        for item in pc.value_counts(errors.column("error").combine_chunks()).to_pylist():
            counts["error_reasons"][item["values"]] = item["counts"]
    return counts


__all__ = ["ADD_PREFIX", "ShardIncompleteError", "ShardPlan", "finalize_shard", "shard_counts"]
