"""The versioned record schema of a labeled sample, and of an error record.

A record is what one input image becomes. It is written twice by the label job:
as a line of the Joint layout's `metadata.jsonl` (paths relative to the dataset
root) and as a row of a Parquet shard (file bytes inline). Images and labels are
Parquet structs `{bytes, path}`, the layout the Hugging Face `datasets` `Image()`
feature reads, so shards load with `datasets` without conversion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from schemas.domains import CAPTION, EXTRA_DOMAINS, FORMATS, STORED_DOMAINS, annotation_key, relative_path

# Bump on any change of the Parquet schema or of an encoding. Readers check the major part.
# 1.1: a column per domain beyond Joint (schemas.domains.EXTRA_FORMATS); 1.0 shards read as 1.1 with
# those columns null (`with_record_columns`).
SCHEMA_VERSION = "1.1"


@dataclass(frozen=True)
class Provenance:
    """Which annotator produced one domain of a record, and how."""

    domain: str
    annotator: str
    model_id: str | None = None
    revision: str | None = None
    parameters: str = "{}"  # JSON of the annotator config, so any config shape fits one column
    licence: str | None = None  # the weights' licence as their model card states it (annotators/licences.py)


@dataclass(frozen=True)
class LabeledRecord:
    """One labeled sample. `labels` maps a domain to its encoded file bytes (JPEG, or PNG for segmentation)."""

    id: str  # md5 hex of the original file bytes, as Joint names its files
    source: str  # original URI
    image: bytes  # encoded RGB JPEG at the final size
    height: int
    width: int
    captions: dict[str, str] = field(default_factory=dict)
    labels: dict[str, bytes] = field(default_factory=dict)
    provenance: tuple[Provenance, ...] = ()
    schema_version: str = SCHEMA_VERSION

    def joint_metadata(self) -> dict:
        """The metadata.jsonl object of this record: keys absent for labels not produced, as in Joint."""
        return joint_line(self.id, self.height, self.width, self.captions, self.labels)

    def to_row(self) -> dict:
        """A row matching RECORD_SCHEMA."""
        row = {
            "id": self.id,
            "source": self.source,
            "image": {"bytes": self.image, "path": relative_path("image", self.id)},
            "info": {"height": int(self.height), "width": int(self.width)},
            CAPTION: [{"model": k, "text": v} for k, v in sorted(self.captions.items())],
            "provenance": [p.__dict__ for p in self.provenance],
            "schema_version": self.schema_version,
        }
        for domain in STORED_DOMAINS:
            data = self.labels.get(domain)
            row[annotation_key(domain)] = (
                None if data is None else {"bytes": data, "path": relative_path(domain, self.id)}
            )
        return row

    @classmethod
    def from_row(cls, row: dict) -> LabeledRecord:
        labels = {d: row[annotation_key(d)]["bytes"] for d in STORED_DOMAINS if row.get(annotation_key(d)) is not None}
        return cls(
            id=row["id"],
            source=row["source"],
            image=row["image"]["bytes"],
            height=row["info"]["height"],
            width=row["info"]["width"],
            captions={c["model"]: c["text"] for c in row.get(CAPTION) or []},
            labels=labels,
            provenance=tuple(Provenance(**p) for p in row.get("provenance") or []),
            schema_version=row.get("schema_version", SCHEMA_VERSION),
        )


def joint_line(rid: str, height: int, width: int, captions: dict[str, str], domains) -> dict:
    """The one definition of a metadata.jsonl object: paths relative to the root, a label key only
    for the domains present (Joint omits absent labels)."""
    meta: dict = {
        "image": relative_path("image", rid),
        "info": {"height": int(height), "width": int(width)},
        "caption": dict(captions),
    }
    for domain in STORED_DOMAINS:
        if domain in domains:
            meta[annotation_key(domain)] = relative_path(domain, rid)
    return meta


@dataclass(frozen=True)
class ErrorRecord:
    """An input that did not become a record, and why. Nothing is dropped silently."""

    id: str  # md5 of the file bytes when they could be read, else ""
    source: str
    stage: str  # "list", "read", "decode", "filter", "dedup", "annotate:<name>", "encode", "write"
    error: str  # short reason class, e.g. "truncated", "too_small", "decompression_bomb"
    detail: str = ""

    def to_row(self) -> dict:
        return dict(self.__dict__)


_FILE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        # Nullable like `datasets`' Image() field: its feature metadata applies only to identical fields.
        pa.field("image", _FILE),
        pa.field("info", pa.struct([("height", pa.int32()), ("width", pa.int32())]), nullable=False),
        pa.field(CAPTION, pa.list_(pa.struct([("model", pa.string()), ("text", pa.string())]))),
        *[pa.field(annotation_key(d), _FILE, nullable=True) for d in STORED_DOMAINS],
        pa.field(
            "provenance",
            pa.list_(
                pa.struct(
                    [
                        ("domain", pa.string()),
                        ("annotator", pa.string()),
                        ("model_id", pa.string()),
                        ("revision", pa.string()),
                        ("parameters", pa.string()),
                        ("licence", pa.string()),
                    ]
                )
            ),
        ),
        pa.field("schema_version", pa.string(), nullable=False),
    ],
    metadata={"jodi_schema_version": SCHEMA_VERSION},
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("error", pa.string()),
        pa.field("detail", pa.string()),
    ]
)


def huggingface_features() -> dict:
    """The `datasets` feature description of RECORD_SCHEMA (stored in Parquet metadata so
    `datasets.load_dataset("parquet", ...)` decodes images and labels as `Image()`)."""
    image = {"_type": "Image"}
    feats: dict = {
        "id": {"dtype": "string", "_type": "Value"},
        "source": {"dtype": "string", "_type": "Value"},
        "image": image,
        "info": {
            "height": {"dtype": "int32", "_type": "Value"},
            "width": {"dtype": "int32", "_type": "Value"},
        },
        CAPTION: [{"model": {"dtype": "string", "_type": "Value"}, "text": {"dtype": "string", "_type": "Value"}}],
    }
    for d in STORED_DOMAINS:
        feats[annotation_key(d)] = image
    feats["provenance"] = [
        {
            k: {"dtype": "string", "_type": "Value"}
            for k in ("domain", "annotator", "model_id", "revision", "parameters", "licence")
        }
    ]
    feats["schema_version"] = {"dtype": "string", "_type": "Value"}
    return feats


def record_schema_with_hf_metadata() -> pa.Schema:
    """RECORD_SCHEMA plus the `huggingface` metadata key that `datasets` reads for feature types."""
    meta = dict(RECORD_SCHEMA.metadata or {})
    meta[b"huggingface"] = json.dumps({"info": {"features": huggingface_features()}}).encode()
    return RECORD_SCHEMA.with_metadata(meta)


# ----- records as Arrow columns (the label job's path: no per-row Python objects holding file bytes) -----
_CAPTIONS = RECORD_SCHEMA.field(CAPTION).type
_PROVENANCE = RECORD_SCHEMA.field("provenance").type


def caption_array(captions: list[dict[str, str]]) -> pa.Array:
    """Per-row {caption key: text} -> the `caption` column (list of {model, text}, sorted by key)."""
    return pa.array([[{"model": k, "text": v} for k, v in sorted(c.items())] for c in captions], _CAPTIONS)


def _file_column(domain: str, ids: pa.Array, data: pa.Array) -> pa.Array:
    """binary bytes (null or empty = absent) -> the `{bytes, path}` struct column, path from the id."""
    data = data.cast(pa.binary())
    absent = pc.invert(pc.fill_null(pc.greater(pc.binary_length(data), 0), False))
    folder = "image" if domain == "image" else annotation_key(domain)
    paths = pc.binary_join_element_wise(folder + "/", ids, FORMATS[domain].file_suffix, "")
    return pa.StructArray.from_arrays([data, paths], fields=list(_FILE), mask=absent)


def record_table(
    ids: pa.Array,
    sources: pa.Array,
    heights: pa.Array,
    widths: pa.Array,
    captions: list[dict[str, str]],
    image: pa.Array,
    labels: dict[str, pa.Array],
    provenance: list[Provenance],
) -> pa.Table:
    """Columns of staged rows -> a RECORD_SCHEMA table. Each row's provenance lists the annotators
    of the domains it has (and the captioners when it has captions)."""
    n = len(ids)
    present = {d: pc.is_valid(_file_column(d, ids, labels[d])).to_numpy(zero_copy_only=False) for d in labels}
    by_domain = {p.domain: p.__dict__ for p in provenance}
    prov = [
        [by_domain[d] for d in by_domain if (d in present and present[d][i]) or (d == CAPTION and captions[i])]
        for i in range(n)
    ]
    columns = {
        "id": ids,
        "source": sources,
        "image": _file_column("image", ids, image),
        "info": pa.StructArray.from_arrays(
            [heights.cast(pa.int32()), widths.cast(pa.int32())], fields=list(RECORD_SCHEMA.field("info").type)
        ),
        CAPTION: caption_array(captions),
    }
    for d in STORED_DOMAINS:
        columns[annotation_key(d)] = _file_column(d, ids, labels[d]) if d in labels else pa.nulls(n, _FILE)
    columns["provenance"] = pa.array(prov, _PROVENANCE)
    columns["schema_version"] = pa.array([SCHEMA_VERSION] * n, pa.string())
    return pa.table(columns, schema=RECORD_SCHEMA)


def captions_of(table: pa.Table) -> list[dict[str, str]]:
    return [{c["model"]: c["text"] for c in caps or []} for caps in table.column(CAPTION).to_pylist()]


def metadata_lines(table: pa.Table) -> list[str]:
    """A record table -> its metadata.jsonl lines, read from the small columns only (never the file bytes)."""
    present = {
        d: table.column(annotation_key(d)).is_valid().to_numpy(zero_copy_only=False) for d in STORED_DOMAINS
    }
    info = table.column("info").combine_chunks()
    heights = info.field("height").to_pylist()
    widths = info.field("width").to_pylist()
    lines = []
    for i, (rid, caps) in enumerate(zip(table.column("id").to_pylist(), captions_of(table), strict=True)):
        domains = [d for d in STORED_DOMAINS if present[d][i]]
        lines.append(json.dumps(joint_line(rid, heights[i], widths[i], caps, domains), ensure_ascii=False) + "\n")
    return lines


def merge_records(base: pa.Table, new: pa.Table) -> pa.Table:
    """Incremental labeling: the labels, captions and provenance of `new` added onto the records of `base`
    with the same id (base's row order kept). Label columns are merged as Arrow columns; captions and
    provenance (short text) per row."""
    base = with_record_columns(base).select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
    new = with_record_columns(new).select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
    index = pc.index_in(base.column("id"), value_set=new.column("id").combine_chunks())
    aligned = new.take(index)  # a null index gives a null row: records without new labels keep theirs
    columns = {name: base.column(name) for name in RECORD_SCHEMA.names}
    for d in STORED_DOMAINS:
        key = annotation_key(d)
        columns[key] = pc.coalesce(aligned.column(key), base.column(key))
    caps = [{**old, **add} for old, add in zip(captions_of(base), captions_of(aligned), strict=True)]
    columns[CAPTION] = caption_array(caps)
    prov = []
    for old, add in zip(base.column("provenance").to_pylist(), aligned.column("provenance").to_pylist(), strict=True):
        merged = {p["domain"]: p for p in old or []}
        merged.update({p["domain"]: p for p in add or []})
        prov.append(list(merged.values()))
    columns["provenance"] = pa.array(prov, _PROVENANCE)
    return pa.table(columns, schema=RECORD_SCHEMA)


def with_record_columns(table: pa.Table) -> pa.Table:
    """A record table written before a domain beyond Joint existed (schema 1.0) with that domain's
    column added, all null: a record without the label, which is what it is."""
    for d in EXTRA_DOMAINS:
        if annotation_key(d) not in table.column_names:
            table = table.append_column(pa.field(annotation_key(d), _FILE), pa.nulls(table.num_rows, _FILE))
    return table
