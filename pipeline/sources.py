"""Listing the inputs of a label job, before any work starts.

An input is a folder or bucket prefix of images (with optional sidecar captions), a `.txt` list of image
paths, WebDataset `.tar` shards as img2dataset writes them, Parquet files (a Hugging Face dataset:
`hf://datasets/<name>[@rev]`, a local copy, or `Dataset.to_parquet` output), or a `datasets.save_to_disk`
folder. Each input item has a stable `source` URI: the image's own URI, `<shard.tar>#<key>` for a tar
member, `<file.parquet|.arrow>#<row>` for a dataset row. The listing holds keys only, is sorted, and so
gives deterministic shards; anything wrong with the input is an `InputError` here, before Ray starts.
"""

from __future__ import annotations

import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from schemas.storage import describe_failure, is_remote, resolve, split_uri, to_uri

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CAPTION_EXTENSIONS = (".txt", ".json")  # sidecars: photo.txt, or photo.json with a `caption` field
CONTAINERS = (".tar", ".parquet", ".arrow")
HF_PREFIX = "hf://datasets/"
_SHOW = 3  # how many offending entries an error message names


class InputError(ValueError):
    """The job's input cannot be listed at all (raised before any work starts)."""


@dataclass(frozen=True)
class InputItem:
    source: str  # URI written to records: image URI, "<tar>#<key>" or "<parquet|arrow>#<row>"
    shard: int
    row: int = -1  # row in its Parquet/Arrow file; -1 otherwise
    caption_uri: str = ""  # sidecar caption file of an image, "" when none


class Sources(list):
    """Sorted source URIs (a plain list of keys) plus the sidecar caption URI of each image that has one."""

    def __init__(self, uris, sidecars: dict[str, str] | None = None) -> None:
        super().__init__(uris)
        self.sidecars = sidecars or {}


def list_sources(uri: str, hf_split: str = "train") -> Sources:
    """All input items of `uri`, sorted. Raises InputError with one clear line when the input is unusable."""
    try:
        fs, path = resolve(uri)
        scheme = split_uri(uri)[0]
        info = fs.get_file_info(path)
        if info.type.name == "NotFound":
            raise InputError(f"input {uri!r} does not exist")
        if info.type.name == "File":
            return _single_file(fs, scheme, path, uri, hf_split)
        if _is_saved_hf_dataset(uri):
            return _saved_dataset(fs, scheme, path, uri, hf_split)
        return _folder(fs, scheme, path, uri, hf_split)
    except (OSError, ImportError) as exc:  # unreachable store, missing credentials, no fsspec driver
        if is_remote(uri) and isinstance(exc, OSError):  # the store's own words name what to set
            raise InputError(f"cannot list input {describe_failure(uri, exc)}") from None
        raise InputError(f"cannot list input {uri!r}: {type(exc).__name__}: {exc}") from None


def shard_items(sources: list[str], shard_size: int) -> list[InputItem]:
    """Assign each source its shard: contiguous chunks of the sorted listing."""
    sidecars = getattr(sources, "sidecars", {})
    items = []
    for i, src in enumerate(sources):
        member = split_member(src)
        row = int(member[1]) if member and not member[0].lower().endswith(".tar") else -1
        items.append(InputItem(source=src, shard=i // shard_size, row=row, caption_uri=sidecars.get(src, "")))
    return items


def split_member(source: str) -> tuple[str, str] | None:
    """Split <container>#<member> into (container URI, member) for tar members and dataset rows, else None.
    Tar keys have no extension (WebDataset keys stop at the first dot), so an image named `a#b.jpg` is not one."""
    base, sep, member = source.rpartition("#")
    if sep and member and base.lower().endswith(CONTAINERS) and not member.lower().endswith(IMAGE_EXTENSIONS):
        return base, member
    return None


# ----- files, folders and lists ------------------------------------------------------------------------
def _single_file(fs, scheme: str, path: str, uri: str, split: str) -> Sources:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".txt":
        return _path_list(fs, path, uri)
    if ext in IMAGE_EXTENSIONS:
        return Sources([to_uri(scheme, path)])
    if ext == ".tar":
        return _tar_sources(fs, scheme, [path])
    if ext == ".parquet":
        return _row_sources(fs, scheme, [path], _parquet_rows)
    raise InputError(
        f"input {uri!r} is a {ext or 'extension-less'} file; give an image folder or bucket prefix, a .txt list of "
        "image paths (one per line), WebDataset .tar shards, Parquet files, or hf://datasets/NAME"
    )


def _walk(fs, root: str):
    """Every file under `root`, one directory listing at a time: only the keys of the current page are held."""
    from pyarrow import fs as pafs

    stack = [root]
    while stack:
        for info in fs.get_file_info(pafs.FileSelector(stack.pop(), recursive=False)):
            if info.type.name == "Directory":
                stack.append(info.path)
            elif info.type.name == "File":
                yield info.path


def _folder(fs, scheme: str, path: str, uri: str, split: str) -> Sources:
    images, captions, tars, tables = [], {}, [], []
    for p in _walk(fs, path):
        stem, ext = os.path.splitext(p)
        ext = ext.lower()
        if ext in IMAGE_EXTENSIONS:
            images.append(p)
        elif ext in CAPTION_EXTENSIONS:
            captions[stem] = p if ext == ".txt" or stem not in captions else captions[stem]  # .txt wins over .json
        elif ext == ".tar":
            tars.append(p)
        elif ext == ".parquet":
            tables.append(p)
    if uri.startswith(HF_PREFIX) and tables:
        images = []  # a hub dataset repo's own preview images are not its rows
    if images and (tars or tables):
        raise InputError(
            f"input {uri!r} holds {len(images)} images and {len(tars)} .tar / {len(tables)} .parquet files; "
            "point the job at one kind"
        )
    if images:
        images.sort()
        sidecars = {}
        for p in images:  # one stem at a time: a million-image listing holds no second list of names
            side = captions.get(os.path.splitext(p)[0])
            if side is not None:
                sidecars[to_uri(scheme, p)] = to_uri(scheme, side)
        return Sources([to_uri(scheme, p) for p in images], sidecars)
    if tars:
        return _tar_sources(fs, scheme, sorted(tars))
    if tables:
        return _row_sources(fs, scheme, _split_files(sorted(tables), path, split, uri), _parquet_rows)
    raise InputError(
        f"input folder {uri!r} contains no images ({', '.join(IMAGE_EXTENSIONS)}), .tar shards or Parquet files"
    )


def _path_list(fs, path: str, uri: str) -> Sources:
    """A .txt file naming one image per line (relative to the list's folder, absolute, or a URI)."""
    with fs.open_input_stream(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.startswith("#")]
    bad = [(n, ln) for n, ln in lines if not ln.lower().endswith(IMAGE_EXTENSIONS)]
    if bad or not lines:
        n, ln = bad[0] if bad else (0, "")
        raise InputError(
            f"input list {uri!r} must name one image per line ({', '.join(IMAGE_EXTENSIONS)}): "
            + (f"{len(bad)} of {len(lines)} lines are not image paths, first line {n}: {ln[:60]!r}" if bad else "empty")
        )
    base = os.path.dirname(uri)
    uris = sorted({ln if ("://" in ln or os.path.isabs(ln)) else os.path.join(base, ln) for _, ln in lines})
    found = _existing(uris + [os.path.splitext(u)[0] + e for u in uris for e in CAPTION_EXTENSIONS])
    missing = [u for u in uris if u not in found]
    if missing:
        raise InputError(
            f"input list {uri!r}: {len(missing)} of {len(uris)} listed paths do not exist, e.g. "
            + ", ".join(missing[:_SHOW])
        )
    sidecars = {}
    for u in uris:
        stem = os.path.splitext(u)[0]
        side = next((stem + e for e in CAPTION_EXTENSIONS if stem + e in found), None)
        if side:
            sidecars[u] = side
    return Sources(uris, sidecars)


def _existing(uris: list[str]) -> set[str]:
    """The URIs that exist, one batched stat call per store."""
    groups: dict[tuple, list[str]] = {}
    for u in uris:
        scheme, rest = split_uri(u)
        groups.setdefault((scheme, rest.split("/", 1)[0] if scheme else ""), []).append(u)
    found = set()
    for members in groups.values():
        fs, _ = resolve(members[0])
        infos = fs.get_file_info([resolve(u)[1] for u in members])
        found.update(u for u, info in zip(members, infos, strict=True) if info.type.name == "File")
    return found


# ----- WebDataset tars -----------------------------------------------------------------------------------
def tar_key(name: str) -> tuple[str, str]:
    """WebDataset's grouping rule: "dir/0001.jpg" -> ("dir/0001", "jpg"); the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _tar_keys(fs, path: str) -> list[str]:
    """Keys of a tar's image samples, from its headers. Local tars are seeked; remote ones read as a stream."""
    keys = set()
    local = type(fs).__name__ == "LocalFileSystem"
    opener = fs.open_input_file if local else fs.open_input_stream
    with opener(path) as f, tarfile.open(fileobj=f, mode="r:*" if local else "r|*") as tar:
        for member in tar:
            key, ext = tar_key(member.name)
            if member.isfile() and f".{ext}" in IMAGE_EXTENSIONS:
                keys.add(key)
    return sorted(keys)


def _tar_sources(fs, scheme: str, tars: list[str]) -> Sources:
    def keys(p):
        try:
            return _tar_keys(fs, p)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"cannot read WebDataset shard {to_uri(scheme, p)}: {exc}; fix or remove it") from None

    with ThreadPoolExecutor(8) as pool:  # I/O bound: list several shards at once
        listed = list(pool.map(keys, tars))
    return Sources([f"{to_uri(scheme, t)}#{k}" for t, ks in zip(tars, listed, strict=True) for k in ks])


# ----- Parquet / Arrow datasets (Hugging Face) ---------------------------------------------------------
def _split_files(files: list[str], root: str, split: str, uri: str) -> list[str]:
    """The files of one split, named as `datasets` names them (data/train-00000-of-00002.parquet,
    train/*.parquet, ...): its own default patterns, matched against our listing."""
    import re

    from datasets.data_files import _get_data_files_patterns
    from fsspec.utils import glob_translate

    rel = {os.path.relpath(f, root): f for f in files}

    def resolver(pattern: str) -> list[str]:
        rx = re.compile(glob_translate(pattern))
        return [r for r in rel if rx.match(r)]

    try:
        patterns = _get_data_files_patterns(resolver)
    except FileNotFoundError:
        patterns = {"train": ["**"]}
    if split not in patterns:
        raise InputError(f"dataset {uri!r} has no split {split!r}; splits: {', '.join(patterns)}")
    chosen = sorted({rel[r] for p in patterns[split] for r in resolver(p)})
    if not chosen:
        raise InputError(f"dataset {uri!r} has no Parquet files for split {split!r}")
    return chosen


def _parquet_rows(fs, path: str) -> int:
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).metadata.num_rows  # the footer only


def _arrow_rows(fs, path: str) -> int:
    import pyarrow as pa

    with fs.open_input_stream(path) as f:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(f))


def _row_sources(fs, scheme: str, files: list[str], count) -> Sources:
    def rows(p):
        try:
            return count(fs, p)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read dataset file {to_uri(scheme, p)}: {exc}") from None

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(rows, files))
    return Sources([f"{to_uri(scheme, f)}#{i}" for f, n in zip(files, counts, strict=True) for i in range(n)])


def _is_saved_hf_dataset(uri: str) -> bool:
    """A `datasets.save_to_disk` folder: state.json (one split) or dataset_dict.json (several)."""
    fs, path = resolve(uri)
    marks = fs.get_file_info([f"{path}/state.json", f"{path}/dataset_dict.json"])
    return any(m.type.name == "File" for m in marks)


def _saved_dataset(fs, scheme: str, path: str, uri: str, split: str) -> Sources:
    def read_json(p):
        with fs.open_input_stream(p) as f:
            return json.loads(f.read())

    if fs.get_file_info(f"{path}/dataset_dict.json").type.name == "File":
        splits = read_json(f"{path}/dataset_dict.json").get("splits", [])
        if split not in splits:
            raise InputError(f"dataset at {uri!r} has no split {split!r}; splits: {', '.join(splits)}")
        path = f"{path}/{split}"
    files = [f"{path}/{d['filename']}" for d in read_json(f"{path}/state.json").get("_data_files", [])]
    if not files:
        raise InputError(f"dataset at {uri!r} lists no data files in state.json")
    return _row_sources(fs, scheme, files, _arrow_rows)
