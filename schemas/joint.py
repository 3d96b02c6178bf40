"""Reading Joint-style datasets as `LabeledRecord`s: the official folder layout and our Parquet shards.

Folder layout (Joint-1.6M download, Jodi `JodiDataset`; docs/joint-format.md#folder-layout-and-file-naming):

    root/metadata.jsonl  or  root/metadata.<split>.jsonl   one JSON object per line
    root/image/[<dir>/]<name>.jpg
    root/annotation_<domain>/[<dir>/]<name>.jpg            segmentation: <name>.jpg.png

A label key is simply absent when the label does not exist. Every relative path
from metadata is resolved with `resolve_inside`, so a line that points outside the
dataset root (`../`, absolute, a symlink out) raises `UnsafePathError` instead of
reading the file. Extra keys are ignored, including the `*_file_name` keys that
make a Joint folder loadable as a `datasets` ImageFolder.

Parquet layout: `data/<split>-*.parquet` (or `shard-*.parquet` for an unsplit job
output) with `RECORD_SCHEMA` rows; a split named "" means "no split".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.domains import CAPTION, FORMATS, IMAGE, STORED_DOMAINS, annotation_key
from schemas.paths import UnsafePathError, resolve_inside
from schemas.record import SCHEMA_VERSION, LabeledRecord
from schemas.storage import Storage, is_remote

METADATA = "metadata.jsonl"
_SPLIT_METADATA = re.compile(r"^metadata\.([A-Za-z0-9_]+)\.jsonl$")
# `train-00000-of-00004.parquet`, `test-00001.parquet`, `shard-00000.parquet` (unsplit label-job output).
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-\d{5}(-of-\d{5})?\.parquet$")
UNSPLIT_SHARD_PREFIX = "shard"


class JointFormatError(ValueError):
    """A metadata line or Parquet file that does not follow the Joint layout; names the file and line."""


@dataclass(frozen=True)
class JointEntry:
    """One metadata line, parsed but with no file read yet (the trainer indexes 1.6M of these cheaply).

    `files` maps "image" and each present label domain to its path relative to `root`.
    """

    id: str
    root: Path | str  # a local folder, or a URI (s3://, gs://, ...) read through `Storage`
    files: dict[str, str]
    height: int
    width: int
    captions: dict[str, str] = field(default_factory=dict)
    split: str = ""
    line: int = 0
    unknown_keys: tuple[str, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        """The label domains present, in checkpoint order."""
        return tuple(d for d in STORED_DOMAINS if d in self.files)

    def path(self, domain: str) -> Path:
        """Absolute path of one domain's file; raises `UnsafePathError` if it escapes the root."""
        return resolve_inside(self.root, self.files[domain])

    def read(self, domain: str) -> bytes:
        if is_remote(str(self.root)):
            # Object stores have no symlinks: the lexical checks of resolve_inside are the whole check.
            rel = self.files[domain].replace("\\", "/")
            resolve_inside("/", rel)
            if rel.startswith("/"):
                raise UnsafePathError(f"absolute path in metadata: {rel!r}")
            return Storage(str(self.root)).get(rel)
        return self.path(domain).read_bytes()

    @property
    def where(self) -> str:
        """`metadata.<split>.jsonl:<line>`: where a problem with this entry is reported."""
        return _where(Path(f"metadata.{self.split}.jsonl" if self.split else METADATA), self.line)

    def to_record(self) -> LabeledRecord:
        """Read every file of the entry into a `LabeledRecord` (source = the image path in the dataset).
        A path that escapes the root or a file that cannot be read raises naming the metadata line."""
        try:
            return self._read_record()
        except UnsafePathError as exc:
            raise UnsafePathError(f"{self.where}: {exc}") from None
        except OSError as exc:
            raise JointFormatError(f"{self.where}: cannot read {exc.filename or 'a file'}: {exc.strerror}") from None

    def _read_record(self) -> LabeledRecord:
        return LabeledRecord(
            id=self.id,
            source=self.files[IMAGE],
            image=self.read(IMAGE),
            height=self.height,
            width=self.width,
            captions=dict(self.captions),
            labels={d: self.read(d) for d in self.domains},
        )


def record_id(image_path: str) -> str:
    """`image/ab/cd.jpg` -> `ab/cd`: the path under `image/` without the suffix, so `relative_path` inverts it."""
    rel = image_path.replace("\\", "/")
    rel = rel[len(IMAGE) + 1 :] if rel.startswith(f"{IMAGE}/") else rel
    suffix = FORMATS[IMAGE].file_suffix
    return rel[: -len(suffix)] if rel.lower().endswith(suffix) else rel.rsplit(".", 1)[0]


def metadata_files(root: str | Path) -> dict[str, Path]:
    """split -> metadata file of a Joint folder (`""` for `metadata.jsonl`). Empty when there is none.
    For a URI root the values are URIs (str)."""
    if is_remote(str(root)):
        storage = Storage(str(root))
        names = [p for p in storage.list() if p == METADATA or _SPLIT_METADATA.match(p)]
        return {("" if p == METADATA else _SPLIT_METADATA.match(p).group(1)): storage.url(p) for p in names}
    root = Path(root)
    found: dict[str, Path] = {}
    if (root / METADATA).is_file():
        found[""] = root / METADATA
    for p in sorted(root.glob("metadata.*.jsonl")):
        m = _SPLIT_METADATA.match(p.name)
        if m and p.is_file():
            found[m.group(1)] = p
    return found


def _where(path: Path | str, line: int) -> str:
    return f"{str(path).rsplit('/', 1)[-1]}:{line}"


def parse_entry(obj: object, root: Path, split: str = "", line: int = 0, source: Path | None = None) -> JointEntry:
    """One decoded metadata.jsonl object -> `JointEntry`; raises `JointFormatError` naming the line."""
    where = _where(source or Path(METADATA), line)
    if not isinstance(obj, dict):
        raise JointFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    image = obj.get(IMAGE)
    if not isinstance(image, str) or not image:
        raise JointFormatError(f"{where}: missing or non-string 'image' path")
    info = obj.get("info")
    if not isinstance(info, dict):
        raise JointFormatError(f"{where}: missing 'info' {{height, width}}")
    height, width = info.get("height"), info.get("width")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise JointFormatError(f"{where}: 'info' height/width must be positive integers, got {info!r}")
    captions = obj.get(CAPTION, {})
    if not isinstance(captions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in captions.items()
    ):
        raise JointFormatError(f"{where}: 'caption' must map caption model -> text")
    files = {IMAGE: image}
    for domain in STORED_DOMAINS:
        value = obj.get(annotation_key(domain))
        if value is None:
            continue  # absent (or null) = label does not exist, as in Joint
        if not isinstance(value, str) or not value:
            raise JointFormatError(f"{where}: {annotation_key(domain)!r} must be a relative path")
        files[domain] = value
    known = {IMAGE, "info", CAPTION, *(annotation_key(d) for d in STORED_DOMAINS)}
    unknown = tuple(sorted(k for k in obj if k not in known and not k.endswith(("_file_name", "_file_names"))))
    return JointEntry(
        id=record_id(image),
        root=root,
        files=files,
        height=height,
        width=width,
        captions=dict(captions),
        split=split,
        line=line,
        unknown_keys=unknown,
    )


def open_text(path: Path | str):
    """A metadata file (local path or URI) as a text stream, read line by line in constant memory."""
    if is_remote(str(path)):
        import io

        parent, name = str(path).rsplit("/", 1)
        return io.TextIOWrapper(Storage(parent).fs.open_input_stream(Storage(parent).path(name)), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_metadata(path: Path | str) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON) for each non-blank line; a line that is not JSON raises `JointFormatError`."""
    with open_text(path) as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield n, json.loads(text)
            except json.JSONDecodeError as e:
                raise JointFormatError(f"{_where(path, n)}: not valid JSON ({e.msg})") from None


def _splits(found: dict[str, object], split: str | None, where: Path) -> list[str]:
    if split is None:
        return list(found)
    if split not in found:
        have = ", ".join(repr(s) for s in found) or "none"
        raise JointFormatError(f"{where}: no split {split!r} (found: {have})")
    return [split]


def iter_joint_entries(root: str | Path, split: str | None = None) -> Iterator[JointEntry]:
    """Parse every line of a Joint folder's metadata (all splits when `split` is None)."""
    root = root if is_remote(str(root)) else Path(root).resolve()
    found = metadata_files(root)
    if not found:
        raise JointFormatError(f"{root}: no metadata.jsonl or metadata.<split>.jsonl")
    for s in _splits(found, split, root):
        for n, obj in iter_metadata(found[s]):
            yield parse_entry(obj, root, split=s, line=n, source=found[s])


def iter_joint(root: str | Path, split: str | None = None) -> Iterator[LabeledRecord]:
    """Every record of a Joint folder, files read into memory."""
    for entry in iter_joint_entries(root, split):
        yield entry.to_record()


def parquet_files(path: str | Path) -> dict[str, list[Path]]:
    """split -> sorted shard files under `path` (a file, a folder of shards, or a dataset root with `data/`).
    For a URI the values are URIs (str)."""
    if is_remote(str(path)):
        return _remote_parquet_files(Storage(str(path)))
    path = Path(path)
    if path.is_file():
        m = _SHARD.match(path.name)
        split = m.group("split") if m else ""
        return {"" if split == UNSPLIT_SHARD_PREFIX else split: [path]}
    folder = path / "data" if (path / "data").is_dir() else path
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("*.parquet")):
        m = _SHARD.match(p.name)
        split = m.group("split") if m else ""
        found.setdefault("" if split == UNSPLIT_SHARD_PREFIX else split, []).append(p)
    return found


def _remote_parquet_files(storage: Storage) -> dict[str, list[str]]:
    if storage.uri.endswith(".parquet"):
        m = _SHARD.match(storage.uri.rsplit("/", 1)[-1])
        split = m.group("split") if m else ""
        return {"" if split == UNSPLIT_SHARD_PREFIX else split: [storage.uri]}
    folder = "data" if storage.list("data", ".parquet") else ""
    found: dict[str, list[str]] = {}
    for rel in storage.list(folder, ".parquet"):
        m = _SHARD.match(rel.rsplit("/", 1)[-1])
        split = m.group("split") if m else ""
        found.setdefault("" if split == UNSPLIT_SHARD_PREFIX else split, []).append(storage.url(rel))
    return found


def open_parquet(shard: Path | str):
    """A `pyarrow.parquet.ParquetFile` for a local path or a URI."""
    import pyarrow.parquet as pq

    if is_remote(str(shard)):
        parent, name = str(shard).rsplit("/", 1)
        return pq.ParquetFile(Storage(parent).open_input(name))
    return pq.ParquetFile(shard)


def iter_parquet(path: str | Path, split: str | None = None, batch_rows: int = 64) -> Iterator[LabeledRecord]:
    """Every record of Parquet shards written with `RECORD_SCHEMA`, read a few rows at a time."""
    found = parquet_files(path)
    if not found:
        raise JointFormatError(f"{path}: no Parquet shards")
    for s in _splits(found, split, Path(path)):
        for shard in found[s]:
            pf = open_parquet(shard)
            check_schema_version(pf.schema_arrow, shard)
            for batch in pf.iter_batches(batch_size=batch_rows):
                for row in batch.to_pylist():
                    yield LabeledRecord.from_row(row)


def check_schema_version(schema, where: Path) -> None:
    """Refuse shards from a different major schema version (readers check the major part, see record.py)."""
    meta = schema.metadata or {}
    version = meta.get(b"jodi_schema_version", SCHEMA_VERSION.encode()).decode()
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise JointFormatError(f"{where}: schema version {version}, this reader understands {SCHEMA_VERSION}")
    missing = [n for n in ("id", IMAGE, "info") if n not in schema.names]
    if missing:
        raise JointFormatError(f"{where}: not a Jodi record shard (missing columns {missing})")


def detect_layout(path: str | Path) -> str:
    """ "parquet" when the path holds record shards, else "joint" when it has metadata; a label-job
    output has both and reads as Parquet (it carries provenance and sources the folder does not)."""
    if is_remote(str(path)):
        if parquet_files(path):
            return "parquet"
        if metadata_files(path):
            return "joint"
        raise JointFormatError(f"{path}: neither Parquet shards nor metadata.jsonl found")
    path = Path(path)
    if path.exists() and parquet_files(path):
        return "parquet"
    if path.is_dir() and metadata_files(path):
        return "joint"
    raise JointFormatError(f"{path}: neither Parquet shards nor metadata.jsonl found")


def iter_records(path: str | Path, split: str | None = None, layout: str | None = None) -> Iterator[LabeledRecord]:
    """Records of a dataset in either layout (detected unless `layout` is "joint" or "parquet")."""
    layout = layout or detect_layout(path)
    if layout == "parquet":
        return iter_parquet(path, split)
    if layout == "joint":
        return iter_joint(path, split)
    raise ValueError(f"unknown layout {layout!r}; known: joint, parquet")
