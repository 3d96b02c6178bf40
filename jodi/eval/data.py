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
from schemas.joint import detect_layout, iter_metadata, iter_records, metadata_files
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


def read_split(dataset: str | Path, split: str | None = None, limit: int | None = None,
               domains: tuple[str, ...] = LABEL_DOMAINS) -> Iterator[EvalItem]:
    """Items of one split (None = every split) of a Joint folder or Parquet dataset, `limit` at most."""
    root = Path(dataset)
    gt_files = _ground_truth_files(root, split) if detect_layout(root) == "joint" else {}
    for n, rec in enumerate(iter_records(root, split)):
        if limit is not None and n >= limit:
            return
        labels = {d: decode_picture(rec.labels[d]) for d in domains if d in rec.labels}
        gt = {d: _read_gt(resolve_inside(root, rel)) for d, rel in gt_files.get(rec.source, {}).items()
              if d in domains}
        caption = next(iter(rec.captions.values()), "")
        yield EvalItem(rec.id, decode_picture(rec.image), caption, labels, gt)
