"""Evaluation items: an image, its reference labels, and real ground truth where the dataset provides it.

References come from a Joint folder or Parquet shards through `schemas.joint` (the dataset's labels, which
for Joint-1.6M are pseudo ground truth made by annotators). A Joint folder may also provide real ground
truth per record with a metadata key `ground_truth_<domain>` naming a file inside the dataset: `.npy`
(float HxW, e.g. metric depth or disparity, non-finite = invalid) or an image file (decoded like the label).
Where both exist, the ground truth is the reference.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.domains import LABEL_DOMAINS
from schemas.joint import detect_layout, iter_joint_entries, iter_metadata, iter_records, metadata_files
from schemas.joint import parquet_files
from schemas.record import LabeledRecord
from schemas.paths import resolve_inside

GT_PREFIX = "ground_truth_"


@dataclass(frozen=True)
class EvalItem:
    """`labels`: domain -> uint8 Joint picture; `ground_truth`: domain -> decoded array (npy) or uint8 picture."""

    id: str
    image: np.ndarray
    caption: str = ""
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)

    def reference(self, domain: str) -> tuple[np.ndarray, bool, str] | None:
        """(array, already decoded?, "ground truth" or "labels") for `domain`, ground truth first."""
        if domain in self.ground_truth:
            gt = self.ground_truth[domain]
            return gt, gt.dtype != np.uint8, "ground truth"
        if domain in self.labels:
            return self.labels[domain], False, "labels"
        return None


def decode_picture(data: bytes) -> np.ndarray:
    """Encoded file bytes -> uint8 HxWx3 (RGB) or HxW (mode L, as Joint stores depth)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L" if img.mode in ("L", "I;16", "I") else "RGB"))


def _ground_truth_files(root: Path, split: str | None) -> dict[str, dict[str, str]]:
    """image path -> {domain: relative gt path} from the `ground_truth_<domain>` metadata keys."""
    found = metadata_files(root)
    names = list(found) if split is None else [split] if split in found else []
    out: dict[str, dict[str, str]] = {}
    for name in names:
        for _, obj in iter_metadata(found[name]):
            if isinstance(obj, dict):
                gt = {k[len(GT_PREFIX):]: v for k, v in obj.items() if k.startswith(GT_PREFIX) and isinstance(v, str)}
                if gt:
                    out[str(obj.get("image"))] = gt
    return out


def _read_gt(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    return decode_picture(path.read_bytes())


def to_item(rec: LabeledRecord, domains: tuple[str, ...], root: Path | None = None,
            gt_files: dict[str, str] | None = None) -> EvalItem:
    """A record (files as bytes) -> decoded `EvalItem`; `gt_files` are ground-truth paths relative to `root`."""
    labels = {d: decode_picture(rec.labels[d]) for d in domains if d in rec.labels}
    gt = {d: _read_gt(resolve_inside(root, rel)) for d, rel in (gt_files or {}).items() if d in domains}
    caption = next(iter(rec.captions.values()), "")
    return EvalItem(rec.id, decode_picture(rec.image), caption, labels, gt)


def read_split(dataset: str | Path, split: str | None = None, limit: int | None = None,
               domains: tuple[str, ...] = LABEL_DOMAINS) -> Iterator[EvalItem]:
    """Items of one split (None = every split) of a Joint folder or Parquet dataset, `limit` at most."""
    root = Path(dataset)
    gt_files = _ground_truth_files(root, split) if detect_layout(root) == "joint" else {}
    for n, rec in enumerate(iter_records(root, split)):
        if limit is not None and n >= limit:
            return
        yield to_item(rec, domains, root, gt_files.get(rec.source))


def split_rows(dataset: str | Path, split: str | None = None, limit: int | None = None,
               domains: tuple[str, ...] = LABEL_DOMAINS):
    """The same items as a Ray Dataset whose files are read by the workers, not the driver: Parquet shards
    through `ray.data.read_parquet`, a Joint folder as its parsed metadata lines. Rows: {"item": pickled
    EvalItem}, made lazily by a `map` stage."""
    import pickle

    import ray

    root = Path(dataset)
    if detect_layout(root) == "parquet":
        found = parquet_files(root)
        files = [str(f) for s in (found if split is None else [split]) for f in found.get(s, [])]
        if not files:
            raise ValueError(f"{dataset}: no Parquet shards for split {split!r} (found: {', '.join(map(repr, found))})")
        ds = ray.data.read_parquet(files)
        ds = ds.limit(limit) if limit is not None else ds
        return ds.map(lambda row: {"item": pickle.dumps(to_item(LabeledRecord.from_row(row), domains))})
    gt_files = _ground_truth_files(root, split)
    entries = list(iter_joint_entries(root, split))[:limit]
    rows = [{"entry": pickle.dumps((e, gt_files.get(e.files["image"])))} for e in entries]

    def load(row: dict) -> dict:
        entry, gt = pickle.loads(row["entry"])
        return {"item": pickle.dumps(to_item(entry.to_record(), domains, entry.root, gt))}

    return ray.data.from_items(rows).map(load)
