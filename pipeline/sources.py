"""Listing the inputs of a label job: a folder tree (local or any fsspec file system), a text file
of paths, or a Hugging Face dataset. The listing is sorted, so shards are deterministic."""

from __future__ import annotations

import os
from dataclasses import dataclass

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
HF_PREFIX = "hf://datasets/"


class InputError(ValueError):
    """The job's input cannot be listed at all (raised before any work starts)."""


@dataclass(frozen=True)
class InputItem:
    source: str  # URI written to records; for HF datasets "hf://datasets/<name>/<split>/<row>"
    shard: int
    row: int = -1  # row index for HF datasets; -1 for files


def list_sources(uri: str, hf_split: str = "train") -> list[str]:
    """All input URIs, sorted. Raises InputError with a clear message when the input does not exist."""
    if uri.startswith(HF_PREFIX) or _is_saved_hf_dataset(uri):
        return [f"{_hf_base(uri, hf_split)}/{i}" for i in range(len(open_hf_dataset(uri, hf_split)))]
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise InputError(f"input {uri!r} does not exist")
    if fs.isfile(path):
        if path.endswith(".txt"):
            return _read_path_list(fs, path, uri)
        return [_unstrip(fs, path, uri)]
    found = [p for p in fs.find(path) if p.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise InputError(f"input folder {uri!r} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(_unstrip(fs, p, uri) for p in found)


def shard_items(sources: list[str], shard_size: int) -> list[InputItem]:
    """Assign each source its shard: contiguous chunks of the sorted listing."""
    items = []
    for i, src in enumerate(sources):
        row = int(src.rsplit("/", 1)[1]) if src.startswith(HF_PREFIX) else -1
        items.append(InputItem(source=src, shard=i // shard_size, row=row))
    return items


def _read_path_list(fs, path: str, uri: str) -> list[str]:
    with fs.open(path, "r") as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    base = os.path.dirname(uri)
    return sorted(ln if ("://" in ln or os.path.isabs(ln)) else os.path.join(base, ln) for ln in lines)


def _unstrip(fs, path: str, uri: str) -> str:
    """fsspec strips the protocol; put it back for non-local file systems so workers can reopen the file."""
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    if protocol in ("file", "local"):
        return os.path.abspath(path)
    return f"{protocol}://{path}"


# ----- Hugging Face datasets ----------------------------------------------------------------------
def _is_saved_hf_dataset(uri: str) -> bool:
    return os.path.isdir(uri) and (
        os.path.exists(os.path.join(uri, "dataset_info.json")) or os.path.exists(os.path.join(uri, "dataset_dict.json"))
    )


def _hf_base(uri: str, split: str) -> str:
    name = uri[len(HF_PREFIX) :] if uri.startswith(HF_PREFIX) else os.path.abspath(uri)
    return f"{HF_PREFIX}{name.strip('/')}/{split}"


def open_hf_dataset(uri: str, split: str):
    """The dataset behind an hf:// URI (hub name, cached) or a `save_to_disk` folder; memory-mapped, cheap to reopen."""
    import datasets

    if uri.startswith(HF_PREFIX):
        name = uri[len(HF_PREFIX) :].strip("/")
        if os.path.isdir("/" + name) and _is_saved_hf_dataset("/" + name):
            return _load_saved("/" + name, split)
        try:
            return datasets.load_dataset(name, split=split)
        except Exception as exc:  # noqa: BLE001 - datasets raises many classes for "not available"
            raise InputError(f"Hugging Face dataset {name!r} (split {split!r}) is not available: {exc}") from exc
    return _load_saved(uri, split)


def _load_saved(path: str, split: str):
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputError(f"dataset at {path!r} has no split {split!r}; splits: {', '.join(ds)}")
        ds = ds[split]
    return ds
