"""Finished shards of a label-job output whose files are damaged or missing, and re-opening them.

`damaged_shards` checks what `validate` cannot see from the records alone: a finished shard's Parquet
file must read to the end, every Joint file its records name must exist, and no staging part may be
left inside it. `reopen` deletes the marker (and metadata piece) of such shards, so the next
`jodi label` with the same arguments labels their inputs again and rewrites every file.
"""

from __future__ import annotations

import json

from pipeline.writer import OutputLayout, shard_name
from schemas.domains import STORED_DOMAINS, annotation_key


def damaged_shards(uri: str) -> dict[int, str]:
    """shard -> what is wrong with it, for every finished shard of the output at `uri` that needs rebuilding."""
    layout = OutputLayout(uri)
    storage = layout.storage
    joint = True
    if storage.exists("job.json"):
        joint = json.loads(storage.get_text("job.json")).get("config", {}).get("write_joint", True)
    found: dict[int, str] = {}
    files: set[str] | None = None  # every Joint file, listed once
    for s, marker in sorted(layout.done_shards().items()):
        if marker.get("records") and not storage.exists(layout.data(s)):
            found[s] = f"{layout.data(s)} is missing"
            continue
        try:
            # One shard at a time (a few hundred records), so memory stays bounded.
            table = layout.read_data(s, ["id", *[annotation_key(d) for d in STORED_DOMAINS]])
        except Exception as exc:  # noqa: BLE001 - truncated footer or page: any failure means rebuild
            found[s] = f"{layout.data(s)} is unreadable ({type(exc).__name__})"
            continue
        if table.num_rows != marker.get("records", table.num_rows):
            found[s] = f"{layout.data(s)} has {table.num_rows} records, its marker {marker['records']}"
            continue
        if layout.all_parts(s):
            found[s] = f"{len(layout.all_parts(s))} staging parts left inside a finished shard"
            continue
        if joint:
            files = _all_files(layout) if files is None else files
            missing = _missing_files(table, files)
            if missing:
                found[s] = f"{len(missing)} Joint files missing, e.g. {missing[0]}"
    return found


def _all_files(layout: OutputLayout) -> set[str]:
    names = set(layout.storage.list("image", recursive=True))
    for d in STORED_DOMAINS:
        names |= set(layout.storage.list(annotation_key(d), recursive=True))
    return names


def _missing_files(table, files: set[str]) -> list[str]:
    wanted = [f"image/{rid}.jpg" for rid in table.column("id").to_pylist()]
    for d in STORED_DOMAINS:
        wanted += [v["path"] for v in table.column(annotation_key(d)).to_pylist() if v is not None]
    return [p for p in wanted if p not in files]


def reopen(uri: str, shards: list[int]) -> None:
    """Remove the markers of `shards`: the next run with the same arguments rebuilds them."""
    layout = OutputLayout(uri)
    for s in shards:
        layout.storage.delete(layout.marker(s))  # first: a shard without a marker is unfinished
        layout.storage.delete(layout.shard_metadata(s))
        for rel in layout.all_parts(s):
            layout.storage.delete(rel)


__all__ = ["damaged_shards", "reopen", "shard_name"]
