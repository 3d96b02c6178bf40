"""The CPU side of the cache job: a labeled dataset -> rows with file bytes -> bucket pixels.

Inputs are a label job output (its Parquet shards, local or in a bucket) or a Joint folder
(metadata.jsonl). A row carries the image and every label domain the dataset has: Joint's seven
and the domains beyond them that the label job wrote (`schemas.domains.EXTRA_DOMAINS`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa

from jodi.buckets import bucket_sizes, fit_to_bucket, nearest_bucket_key
from jodi.latents.schema import SAFE_ID, CacheConfig
from schemas.domains import ALL_DOMAINS, CAPTION, EXTRA_DOMAINS, LABEL_DOMAINS, annotation_key
from schemas.storage import Storage, is_remote


def dataset_domains(cfg: CacheConfig) -> tuple[str, ...]:
    """The domains beyond Joint that at least one record of the input has (EXTRA_DOMAINS order). Reads
    only the label paths (Parquet) or metadata.jsonl keys, never the file bytes."""
    import pyarrow.parquet as pq

    root = Path(cfg.input)
    if is_remote(str(cfg.input)):
        storage = Storage(str(cfg.input))
        files, read = storage.list("data", ".parquet"), storage.read_table
    elif (root / "data").is_dir() or str(cfg.input).endswith(".parquet"):
        files = sorted(str(f) for f in (root / "data").glob("*.parquet")) if (root / "data").is_dir() else [cfg.input]
        read = pq.read_table
    else:
        from schemas.joint import iter_joint_entries

        found = {d for entry in iter_joint_entries(root) for d in entry.files} if root.is_dir() else set()
        return tuple(d for d in EXTRA_DOMAINS if d in found)
    found = set()
    for f in files:
        for d in EXTRA_DOMAINS:
            try:
                paths = read(f, columns=[f"{annotation_key(d)}.path"]).column(0)
            except pa.ArrowInvalid:  # a schema 1.0 shard: written before this domain existed
                continue
            if paths.null_count < len(paths):
                found.add(d)
    return tuple(d for d in EXTRA_DOMAINS if d in found)


def read_input(cfg: CacheConfig, stored: tuple[str, ...] = ()):
    """(Ray Dataset of rows {id, source, height, width, captions, image, annotation_*} with file bytes,
    the input's ids). `stored` = the dataset's domains beyond Joint (`dataset_domains`). The ids are read
    on the driver from the id column / metadata only."""
    import pyarrow.parquet as pq
    import ray

    keys = [annotation_key(d) for d in (*LABEL_DOMAINS, *stored)]
    cols = ["id", "source", "info", CAPTION, "image", *keys]
    if is_remote(str(cfg.input)):  # a dataset in a bucket: its Parquet shards, read by Ray Data from there
        storage = Storage(str(cfg.input))
        files = storage.list("data", ".parquet")
        if not files:
            raise FileNotFoundError(f"{cfg.input}: no Parquet shards under data/")
        ids = storage.read_table(files, columns=["id"]).column("id").to_pylist()
        ds = ray.data.read_parquet([storage.url(f) for f in files], columns=cols)
        return ds.map_batches(flatten_parquet, fn_kwargs={"keys": keys}, batch_format="pyarrow",
                              zero_copy_batch=True), ids
    root = Path(cfg.input)
    if (root / "data").is_dir() or str(cfg.input).endswith(".parquet"):
        src = str(root / "data") if (root / "data").is_dir() else cfg.input
        ids = pq.read_table(src, columns=["id"]).column("id").to_pylist()
        ds = ray.data.read_parquet(src, columns=cols)
        return ds.map_batches(flatten_parquet, fn_kwargs={"keys": keys}, batch_format="pyarrow",
                              zero_copy_batch=True), ids
    if (root / "metadata.jsonl").exists():
        items = joint_items(root, stored)
        return ray.data.from_items(items).map(read_joint_files), [it["id"] for it in items]
    raise FileNotFoundError(f"{cfg.input}: neither a label job output (data/*.parquet) nor a Joint folder")


def flatten_parquet(table: pa.Table, keys: list[str] | None = None) -> pa.Table:
    """Record rows -> flat rows: `info` split into height/width, each `{bytes, path}` file to its bytes."""
    info = table.column("info").combine_chunks()
    cols = {
        "id": table.column("id"),
        "source": table.column("source"),
        "height": info.field("height"),
        "width": info.field("width"),
        CAPTION: table.column(CAPTION),
        "image": table.column("image").combine_chunks().field("bytes"),
    }
    for key in keys or [annotation_key(d) for d in LABEL_DOMAINS]:
        cols[key] = table.column(key).combine_chunks().field("bytes")
    return pa.table(cols)


def joint_items(root: Path, stored: tuple[str, ...] = ()) -> list[dict]:
    """Index a Joint folder (every metadata split) through schemas.joint: paths only, no file read yet."""
    from schemas.joint import iter_joint_entries

    items = []
    for entry in iter_joint_entries(root):
        item = {
            "id": entry.id,
            "source": str(entry.files["image"]),
            "height": entry.height,
            "width": entry.width,
            CAPTION: [{"model": k, "text": v} for k, v in sorted(entry.captions.items())],
            "image": str(entry.path("image")),
        }
        for d in (*LABEL_DOMAINS, *stored):
            item[annotation_key(d)] = str(entry.path(d)) if d in entry.files else None
        items.append(item)
    return items


def read_joint_files(item: dict) -> dict:
    out = dict(item)
    for key in [k for k in out if k == "image" or k.startswith("annotation_")]:
        if out[key] is not None:
            out[key] = Path(out[key]).read_bytes()
    return out


def prepare_row(row: dict, resolution: int, empty_openpose: bool, classes_from_folders: bool = False,
                extra_domains: tuple[tuple[str, str], ...] = (), stored: tuple[str, ...] = ()) -> dict:
    """CPU stage: file bytes -> uint8 pixels (D, H, W, 3) at the record's bucket, plus the presence mask.
    D = the Joint domains, the dataset's domains beyond Joint (`stored`, read from the row), then
    `extra_domains` ((name, folder of `<id>.png|.jpg` labels), in order): `cache_domains`' order."""
    from PIL import Image

    key = nearest_bucket_key(int(row["height"]), int(row["width"]))
    size = bucket_sizes(resolution)[key]
    domains = (*ALL_DOMAINS, *stored, *(name for name, _ in extra_domains))
    pixels = np.zeros((len(domains), size[0], size[1], 3), dtype=np.uint8)
    present = np.zeros(len(domains), dtype=np.uint8)
    extra = {name: extra_label(folder, str(row["id"])) for name, folder in extra_domains}
    for i, domain in enumerate(domains):
        data = row["image"] if domain == "image" else extra[domain] if domain in extra else row[annotation_key(domain)]
        if data is not None:
            with Image.open(io.BytesIO(data)) as img:
                pixels[i] = fit_to_bucket(img, size)  # a grey (L) label becomes three equal channels
            present[i] = 1
        elif domain == "openpose" and empty_openpose:
            present[i] = 1  # black image = "no person", a real label (reference default)
    captions = row.get(CAPTION) or []
    return {
        "id": row["id"],
        "source": row.get("source") or "",
        "bucket": key,
        "pixels": pixels.tobytes(),
        "shape": np.array(pixels.shape, dtype=np.int64),
        "present": present.tobytes(),
        "caption_models": [c["model"] for c in captions],
        "caption_texts": [c["text"] for c in captions],
        "class_name": class_of(row.get("source") or "") if classes_from_folders else None,
    }


def extra_label(folder: str, record_id: str) -> bytes | None:
    """The bytes of `<folder>/<id>.png` (or .jpg), None when the record has no such label. Ids are Joint's
    md5 hex names; anything else is refused, so a path from metadata never leaves `folder`."""
    if not SAFE_ID.fullmatch(record_id):
        raise ValueError(f"record id {record_id!r} cannot name a label file (expected letters, digits, _ or -)")
    for ext in (".png", ".jpg", ".jpeg"):
        path = Path(folder) / f"{record_id}{ext}"
        if path.is_file():
            return path.read_bytes()
    return None


def class_of(source: str) -> str:
    """ImageNet-style layout `<root>/<class>/<file>`: the class is the folder holding the file."""
    parts = source.replace("\\", "/").rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2]:
        raise ValueError(f"{source!r} is not inside a class folder (expected <root>/<class>/<file>)")
    return parts[-2]
