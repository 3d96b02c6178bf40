"""Reading input items that live inside containers: WebDataset tars, Parquet and Arrow dataset files.

A read unit is one container plus the members this run needs. `read_units` streams each container once
and yields rows of the original encoded image bytes (never re-encoded, so the md5 id is the file's), the
item's caption and, when a member cannot be read, its reason: every requested member comes out exactly
once. `ContainerDecodeStage` reads and decodes in the same actor, so reading needs no CPU slot of its own
(on a small machine a separate read task would wait forever for one).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

import numpy as np

from pipeline.decode import DecodeError, parse_caption
from pipeline.sources import IMAGE_EXTENSIONS, tar_key
from pipeline.stages import DecodeSpec, DecodeStage
from schemas.storage import resolve

ROWS_PER_BATCH = 16
COLUMNS = ("source", "shard", "row", "data", "caption", "read_error", "read_detail")


class ContainerDecodeStage(DecodeStage):
    """DecodeStage over read units: a generator UDF yielding one decoded batch per `ROWS_PER_BATCH` members."""

    def __init__(self, spec: DecodeSpec, image_column: str = "image", caption_column: str | None = None) -> None:
        super().__init__(spec)
        self.image_column, self.caption_column = image_column, caption_column

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for rows in read_units(batch, self.image_column, self.caption_column):
            yield super().__call__(rows)


def read_units(batch: dict[str, np.ndarray], image_column: str, caption_column: str | None) -> Iterator[dict]:
    for container, members, sources, shards in zip(
        batch["container"], batch["members"], batch["sources"], batch["shards"], strict=True
    ):
        wanted = {str(m): (str(s), int(h)) for m, s, h in zip(members, sources, shards, strict=True)}
        if str(container).lower().endswith(".tar"):
            rows = _tar_rows(str(container), wanted)
        else:
            rows = _table_rows(str(container), wanted, image_column, caption_column)
        out: list[dict] = []
        for row in rows:
            out.append(row)
            if len(out) == ROWS_PER_BATCH:
                yield _batch(out)
                out = []
        if out:
            yield _batch(out)


def _batch(rows: list[dict]) -> dict[str, np.ndarray]:
    out = {}
    for k in COLUMNS:
        values = [r[k] for r in rows]
        col = np.empty(len(values), dtype=object) if k == "data" else None
        if col is not None:
            for i, v in enumerate(values):
                col[i] = v
        out[k] = col if col is not None else np.asarray(values)
    return out


def _row(source: str, shard: int, row: int, data: bytes = b"", caption: str = "", error: str = "", detail: str = ""):
    return {"source": source, "shard": shard, "row": row, "data": data, "caption": caption,
            "read_error": error, "read_detail": detail[:500]}  # fmt: skip


# ----- WebDataset tars ------------------------------------------------------------------------------------
def _tar_rows(container: str, wanted: dict[str, tuple[str, int]]) -> Iterator[dict]:
    """Stream the tar once; a sample is the contiguous run of members sharing a key (key.jpg, key.txt, key.json)."""
    pending = dict(wanted)
    key, parts = None, {}
    try:
        fs, path = resolve(container)
        with fs.open_input_stream(path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                k, ext = tar_key(member.name)
                if not member.isfile() or k not in pending:
                    continue
                if k != key:
                    if key is not None:
                        yield _sample(key, parts, pending)
                    key, parts = k, {}
                parts[ext] = tar.extractfile(member).read()
        if key is not None:
            yield _sample(key, parts, pending)
        reason, detail = "missing_member", f"not in {container}"
    except (tarfile.TarError, OSError, EOFError) as exc:
        reason, detail = "read_failed", f"{container}: {type(exc).__name__}: {exc}"
    for _, (source, shard) in sorted(pending.items()):
        yield _row(source, shard, -1, error=reason, detail=detail)


def _sample(key: str, parts: dict[str, bytes], pending: dict) -> dict:
    source, shard = pending.pop(key)
    image = next((parts[e[1:]] for e in IMAGE_EXTENSIONS if e[1:] in parts), None)
    if image is None:
        return _row(source, shard, -1, error="missing_member", detail=f"sample {key!r} has no image member")
    try:
        caption = ""
        if "txt" in parts:
            caption = parse_caption(parts["txt"], "txt")
        elif "json" in parts:
            caption = parse_caption(parts["json"], "json")
    except DecodeError as exc:
        return _row(source, shard, -1, image, error=exc.reason, detail=str(exc))
    return _row(source, shard, -1, image, caption)


# ----- Parquet / Arrow rows (Hugging Face datasets) ------------------------------------------------------
def _table_rows(container: str, wanted: dict[str, tuple[str, int]], image_column: str, caption_column):
    """Read only the row groups (Parquet) or record batches (Arrow stream) holding wanted rows, and only the
    image and caption columns."""
    rows = {int(m): v for m, v in wanted.items()}
    done: set[int] = set()
    try:
        for offset, table in _tables(container, sorted(rows), [image_column, caption_column]):
            names = table.column_names
            if image_column not in names:
                raise DecodeError("missing_column", f"no column {image_column!r}; columns: {names}")
            images = table.column(image_column)
            captions = table.column(caption_column) if caption_column in names else None
            for r in [r for r in rows if offset <= r < offset + table.num_rows and r not in done]:
                done.add(r)
                source, shard = rows[r]
                caption = "" if captions is None else str(captions[r - offset].as_py() or "")
                data, error = _image_bytes(images[r - offset].as_py())
                yield _row(source, shard, r, data, caption, *error)
        reason, detail = "missing_row", f"not in {container}"
    except DecodeError as exc:
        reason, detail = exc.reason, str(exc)
    except (OSError, ValueError) as exc:
        reason, detail = "read_failed", f"{container}: {type(exc).__name__}: {exc}"
    for r in sorted(set(rows) - done):
        source, shard = rows[r]
        yield _row(source, shard, r, error=reason, detail=detail)


def _image_bytes(value) -> tuple[bytes, tuple[str, str] | tuple]:
    """A `datasets` Image() cell ({bytes, path}) or a plain binary cell -> the stored bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value), ()
    if isinstance(value, dict) and value.get("bytes"):
        return bytes(value["bytes"]), ()
    where = f" (only the path {value.get('path')!r})" if isinstance(value, dict) and value.get("path") else ""
    # A path inside a dataset file points outside it (often at the machine that built it): never followed.
    return b"", ("missing_image", f"row holds no image bytes{where}; save the dataset with its images embedded")


def _tables(container: str, rows: list[int], columns: list[str | None]):
    """(first row index, pyarrow Table) for each row group / record batch that holds any of `rows` (sorted)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = resolve(container)
    if container.lower().endswith(".parquet"):
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            have = [c for c in columns if c and c in pf.schema_arrow.names]
            offset = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if any(offset <= r < offset + n for r in rows):
                    yield offset, pf.read_row_group(g, columns=have or None)
                offset += n
        return
    with fs.open_input_stream(path) as f:
        offset = 0
        for batch in pa.ipc.open_stream(f):
            n = batch.num_rows
            if any(offset <= r < offset + n for r in rows):
                have = [c for c in columns if c and c in batch.schema.names]
                yield offset, pa.Table.from_batches([batch]).select(have)
            offset += n
            if offset > rows[-1]:
                return
