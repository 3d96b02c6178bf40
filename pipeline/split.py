"""A deterministic train/test split of a Joint folder, for training on a label job's output and evaluating
on records it never saw (`jodi e2e`). Metadata is read with the schemas/joint.py reader, so every path a
line names is resolved inside the dataset root before a file is copied."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from schemas.joint import JointFormatError, iter_metadata, metadata_files, parse_entry


def hash01(record_id: str) -> float:
    """A number in [0, 1] from the id alone, so the held-out split is stable across reruns and machines."""
    return int(hashlib.md5(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_joint(labeled: str | Path, out: str | Path, fraction: float) -> dict[str, int]:
    """Copy the Joint folder `labeled` into `out`/train and `out`/test Joint folders (each line's metadata
    as written, and the files it names). Records whose id hashes below `fraction` are held out; each side
    gets at least one record."""
    labeled, out = Path(labeled).resolve(), Path(out)
    found = metadata_files(labeled)
    if "" not in found:
        raise JointFormatError(f"{labeled}: no metadata.jsonl to split")
    rows = [(obj, parse_entry(obj, labeled, line=n, source=found[""])) for n, obj in iter_metadata(found[""])]
    if len(rows) < 2:
        raise ValueError(f"{labeled}: {len(rows)} labeled record(s); a train and a test split need at least 2")
    ranked = sorted(rows, key=lambda row: hash01(row[1].id))
    n_test = min(len(rows) - 1, max(1, sum(hash01(entry.id) < fraction for _, entry in rows)))
    shutil.rmtree(out, ignore_errors=True)
    for k, (obj, entry) in enumerate(ranked):
        split = out / ("test" if k < n_test else "train")
        for domain, rel in entry.files.items():
            (split / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry.path(domain), split / rel)  # path() refuses a line that escapes the root
        with open(split / "metadata.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return {"train": len(rows) - n_test, "test": n_test}
