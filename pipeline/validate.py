"""Check a dataset in either layout and report every problem found, not just the first.

Checks (conventions from docs/joint-format.md, observed on the official samples):
metadata/schema shape, paths that stay inside the root, every referenced file exists and
decodes, the image matches `info` and every label matches the image size, segmentation
is a lossless PNG of palette colours only, per-domain value conventions (depth single
channel and min-max normalised, edge white-on-black and lineart black-on-white greys,
unit normals, openpose on black), and duplicate ids. A label job output holds both
layouts; both are checked.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from schemas.domains import EXTRA_DOMAINS, EXTRA_FORMATS, IMAGE, STORED_DOMAINS, annotation_key, relative_path
from schemas.encoding import palette_only
from schemas.joint import (
    JointEntry,
    JointFormatError,
    check_schema_version,
    metadata_files,
    open_parquet,
    open_text,
    parquet_files,
    parse_entry,
)
from schemas.paths import UnsafePathError
from schemas.record import RECORD_SCHEMA
from schemas.storage import Storage, is_remote

# Tolerances for JPEG-stored labels. Official samples: grey labels have identical channels,
# lineart mean 232-250, edge mean 22-26, decoded normals mean norm 0.98-1.0, openpose mean ~2.
GREY_CHANNEL_TOLERANCE = 2.0  # mean |R-G| allowed for a grey label after JPEG
NORMAL_NORM_RANGE = (0.9, 1.1)
DEPTH_MINMAX_SLACK = 32  # min <= 32 and max >= 223: per-image min-max normalised, within JPEG drift
# Means and channel statistics are read on every 4th pixel in each direction (1/16 of the work);
# the palette check and depth's min/max, where one pixel matters, use every pixel.
STATS_STRIDE = 4
# Jodi reads at most 300 Gemma-2 tokens of a caption (jodi/codecs.py MAX_TOKENS, Sana's text length), about
# 1,500 characters of English; a caption 10x longer is not a caption (a pasted document, a corrupt field).
MAX_CAPTION_CHARS = 15_000


@dataclass(frozen=True)
class Problem:
    """One defect: where (file:line, shard:row or a path), which check failed, and details."""

    where: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.check}] {self.detail}"


@dataclass
class ValidationReport:
    """Everything `validate` found. `ok` is False when there is at least one problem."""

    path: str
    layouts: list[str] = field(default_factory=list)
    records: int = 0
    domains: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    licences: dict[str, str] = field(default_factory=dict)  # annotator -> weights licence, from provenance
    damaged_shards: set[str] = field(default_factory=set)  # Parquet files that cannot be read to the end

    @property
    def is_label_output(self) -> bool:
        from schemas.storage import Storage

        return Storage(self.path).exists("_shards")

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, check: str, detail: str) -> None:
        self.problems.append(Problem(where, check, detail))

    def format(self, max_problems: int = 50) -> str:
        lines = [
            f"dataset: {self.path} ({' + '.join(self.layouts) or 'unknown layout'})",
            f"records: {self.records}",
            "labels:  " + (", ".join(f"{d}={self.domains[d]}" for d in STORED_DOMAINS if self.domains[d]) or "none"),
            "weights: " + (", ".join(f"{a} ({lic})" for a, lic in sorted(self.licences.items())) or "no provenance"),
        ]
        if self.ok:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        counts = Counter(p.check for p in self.problems)
        lines.append(
            f"PROBLEMS: {len(self.problems)} (" + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + ")"
        )
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)


def _sample(a: np.ndarray) -> np.ndarray:
    """Every STATS_STRIDE-th pixel as int16 (room for channel differences)."""
    return a[::STATS_STRIDE, ::STATS_STRIDE].astype(np.int16)


def _grey_mismatch(a: np.ndarray) -> float:
    return float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean()) / 2


def check_domain(domain: str, img: Image.Image) -> list[tuple[str, str]]:
    """Value-convention checks of one decoded file -> [(check, detail)]. Pure: no I/O."""
    out: list[tuple[str, str]] = []
    if domain in EXTRA_FORMATS:  # a domain beyond Joint: its DomainFormat says the mode and codec
        fmt = EXTRA_FORMATS[domain]
        if img.mode != fmt.image_mode:
            out.append(("value_range", f"{domain} mode {img.mode}, expected {fmt.image_mode}"))
        if fmt.codec == "png" and img.format != "PNG":
            out.append(("codec", f"{domain} stored as {img.format}; must be lossless PNG"))
        return out
    if domain == "depth":
        if img.mode not in ("L", "RGB"):
            return [("value_range", f"depth mode {img.mode}, expected L (8-bit grey)")]
        a = np.asarray(img)
        if a.ndim == 3 and _grey_mismatch(_sample(a)) > GREY_CHANNEL_TOLERANCE:
            out.append(("value_range", "depth has colour; expected a single grey channel"))
        lo, hi = int(a.min()), int(a.max())
        if lo > DEPTH_MINMAX_SLACK or hi < 255 - DEPTH_MINMAX_SLACK:
            out.append(("value_range", f"depth spans {lo}..{hi}; expected per-image min-max 0..255"))
        return out
    if img.mode != "RGB":
        return [("value_range", f"{domain} mode {img.mode}, expected RGB")]
    a = _sample(np.asarray(img))
    if domain in ("edge", "lineart"):
        if _grey_mismatch(a) > GREY_CHANNEL_TOLERANCE:
            out.append(("value_range", f"{domain} has colour; expected three identical channels"))
        mean = float(a.mean())
        if domain == "edge" and mean > 127:
            out.append(("value_range", f"edge mean {mean:.0f}: expected white edges on black (inverted?)"))
        if domain == "lineart" and mean < 128:
            out.append(("value_range", f"lineart mean {mean:.0f}: expected black lines on white (inverted?)"))
    elif domain == "normal":
        norm = float(np.linalg.norm(a.astype(np.float32) / 255.0 * 2.0 - 1.0, axis=-1).mean())
        if not NORMAL_NORM_RANGE[0] <= norm <= NORMAL_NORM_RANGE[1]:
            out.append(("value_range", f"normal mean length {norm:.2f}; expected unit normals as (n+1)/2*255"))
    elif domain == "seg_12colors":
        if img.format != "PNG":
            out.append(("palette", f"segmentation stored as {img.format}; must be lossless PNG"))
        elif not palette_only(np.asarray(img)):
            out.append(("palette", "segmentation has colours outside the 12-colour palette"))
    elif domain == "openpose" and float(a.mean()) > 127:
        out.append(("value_range", "openpose mean is bright; expected a skeleton on black"))
    return out


def check_files(files: dict[str, bytes], height: int, width: int) -> list[tuple[str, str, str]]:
    """Decode and check one record's files -> [(domain, check, detail)]. Pure: bytes in, findings out."""
    found: list[tuple[str, str, str]] = []
    for domain, data in files.items():
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.size != (width, height):  # decided from the header: a bomb is never decoded
                    what = "info" if domain == IMAGE else "image"
                    found.append((domain, "size", f"{img.format} {img.width}x{img.height} != {what} {width}x{height}"))
                    continue
                img.load()
                findings = check_domain(domain, img) if domain != IMAGE else []
                if domain == IMAGE and img.mode != "RGB":
                    findings.append(("value_range", f"image mode {img.mode}, expected RGB"))
        except Image.DecompressionBombError as e:  # Pillow refuses it from the header (> 2x MAX_IMAGE_PIXELS)
            found.append((domain, "decompression_bomb", str(e)))
            continue
        except Exception as e:  # PIL raises many types for a bad file; every one is a "decode" finding
            found.append((domain, "decode", f"{type(e).__name__}: {e}"))
            continue
        found += [(domain, check, detail) for check, detail in findings]
    return found


class _Pool:
    """Runs per-record file checks on threads in order-kept chunks: decoding and numpy release the GIL,
    so a validation of millions of files uses every core. Each job returns (problems, label domains)."""

    CHUNK = 64

    def __init__(self, report: ValidationReport, workers: int) -> None:
        self.report, self.pending = report, []
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers))

    def submit(self, fn: Callable[..., tuple[list[Problem], list[str]]], *args) -> None:
        self.pending.append((fn, args))
        if len(self.pending) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        for problems, domains in self.executor.map(lambda job: job[0](*job[1]), self.pending):
            self.report.problems += problems
            self.report.domains.update(domains)
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.executor.shutdown()


def _findings(where: str, files: dict[str, bytes], height: int, width: int, names: dict[str, str]):
    problems = [Problem(f"{where} ({names[d]})", c, detail) for d, c, detail in check_files(files, height, width)]
    return problems, [d for d in files if d != IMAGE]


def _check_entry(entry: JointEntry, where: str) -> tuple[list[Problem], list[str]]:
    """Read and check one metadata line's files (runs on a worker thread)."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    for domain, rel in entry.files.items():
        try:
            files[domain] = entry.read(domain)
        except UnsafePathError as e:
            problems.append(Problem(where, "unsafe_path", str(e)))
        except FileNotFoundError:
            problems.append(Problem(where, "missing_file", f"{domain}: {rel} does not exist"))
        except OSError as e:
            problems.append(Problem(where, "missing_file", f"{domain}: {rel}: {e.strerror}"))
    found, domains = _findings(where, files, entry.height, entry.width, entry.files)
    return problems + found + _caption_problems(where, entry.captions), domains


def _caption_problems(where: str, captions: dict[str, str]) -> list[Problem]:
    return [
        Problem(where, "caption", f"caption {model!r} has {len(text):,} characters (more than {MAX_CAPTION_CHARS:,})")
        for model, text in captions.items()
        if len(text) > MAX_CAPTION_CHARS
    ]


def _name(path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _validate_joint(root, report: ValidationReport, pool: _Pool, limit: int | None) -> None:
    ids: Counter = Counter()
    base = root if is_remote(str(root)) else Path(root).resolve()
    for split, meta_path in metadata_files(root).items():
        with open_text(meta_path) as f:
            for n, text in enumerate(f, start=1):
                if limit is not None and report.records >= limit:
                    return
                if not text.strip():
                    continue
                where = f"{_name(meta_path)}:{n}"
                try:
                    entry = parse_entry(json.loads(text), base, split, n, meta_path)
                except json.JSONDecodeError as e:
                    report.add(where, "schema", f"not valid JSON ({e.msg})")
                    continue
                except JointFormatError as e:
                    report.add(where, "schema", str(e).split(": ", 1)[-1])
                    continue
                report.records += 1
                ids[entry.id] += 1
                if ids[entry.id] == 2:
                    report.add(where, "duplicate_id", f"id {entry.id!r} appears more than once")
                for key in entry.unknown_keys:
                    if key.startswith("annotation_"):
                        report.add(where, "schema", f"unknown label key {key!r}")
                pool.submit(_check_entry, entry, where)


_EXTRA_COLUMNS = {annotation_key(d) for d in EXTRA_DOMAINS}


def _validate_parquet(path, report: ValidationReport, pool: _Pool, limit: int | None) -> None:
    ids: Counter = Counter()
    for shards in parquet_files(path).values():
        for shard in shards:
            name = _name(shard)
            try:
                pf = open_parquet(shard)
                check_schema_version(pf.schema_arrow, shard)
            except Exception as e:  # unreadable footer, wrong schema: report and go on to the next shard
                report.add(name, "schema", f"{type(e).__name__}: {e}")
                report.damaged_shards.add(name)
                continue
            for f in RECORD_SCHEMA:
                if f.name in _EXTRA_COLUMNS and f.name not in pf.schema_arrow.names:
                    continue  # a schema 1.0 shard, written before this domain existed: it has none of its labels
                if f.name not in pf.schema_arrow.names:
                    report.add(name, "schema", f"missing column {f.name!r}")
                elif not pf.schema_arrow.field(f.name).type.equals(f.type):
                    report.add(name, "schema", f"column {f.name!r} is {pf.schema_arrow.field(f.name).type}")
            row_no = 0
            try:
                for batch in pf.iter_batches(batch_size=32):
                    for row in batch.to_pylist():
                        if limit is not None and report.records >= limit:
                            return
                        _check_row(row, f"{name}:row {row_no}", report, ids, pool)
                        row_no += 1
            except Exception as e:  # a truncated or corrupt page: the rest of the shard is unreadable
                report.add(name, "schema", f"unreadable after row {row_no}: {type(e).__name__}: {e}")
                report.damaged_shards.add(name)


def _check_row(row: dict, where: str, report: ValidationReport, ids: Counter, pool: _Pool) -> None:
    report.records += 1
    rid, info = row.get("id"), row.get("info") or {}
    if not rid or row.get(IMAGE) is None or not info.get("height") or not info.get("width"):
        report.add(where, "schema", "row lacks id, image or info")
        return
    ids[rid] += 1
    if ids[rid] == 2:
        report.add(where, "duplicate_id", f"id {rid!r} appears more than once")
    report.licences.update({p["annotator"]: p.get("licence") or "not recorded" for p in row.get("provenance") or []})
    files = {IMAGE: row[IMAGE]}
    files.update({d: row[annotation_key(d)] for d in STORED_DOMAINS if row.get(annotation_key(d)) is not None})
    for domain, value in files.items():
        if value.get("path") and value["path"] != relative_path(domain, rid):
            report.add(where, "schema", f"{domain} path {value['path']!r} != {relative_path(domain, rid)!r}")
    captions = {c.get("model") or "?": c.get("text") or "" for c in row.get("caption") or []}
    report.problems += _caption_problems(where, captions)
    data = {d: v.get("bytes") or b"" for d, v in files.items()}
    pool.submit(_findings, where, data, info["height"], info["width"], {d: d for d in data})


def validate(path: str | Path, max_records: int | None = None, workers: int | None = None) -> ValidationReport:
    """Check every record of a dataset (Joint folder, Parquet shards, or a label-job output holding both).

    `workers` threads decode files (default: the CPU count, at most 8)."""
    remote = is_remote(str(path))
    path = str(path) if remote else Path(path)
    report = ValidationReport(path=str(path))
    if not (Storage(path).exists("") if remote else path.exists()):
        report.add(str(path), "schema", "path does not exist")
        return report
    workers = workers or min(8, os.cpu_count() or 1)
    if parquet_files(path):
        report.layouts.append("parquet")
        pool = _Pool(report, workers)
        _validate_parquet(path, report, pool, max_records)
        pool.close()
    if (remote or path.is_dir()) and metadata_files(path):
        report.layouts.append("joint")
        before = (report.records, report.domains)
        report.records, report.domains = 0, Counter()
        pool = _Pool(report, workers)
        _validate_joint(path, report, pool, max_records)
        pool.close()
        if before[0]:
            # A label-job output: both layouts describe the same records; count once, flag disagreement.
            if before[0] != report.records and max_records is None:
                report.add(str(path), "schema", f"Parquet has {before[0]} records, metadata {report.records}")
            report.records, report.domains = max(before[0], report.records), before[1]
    if not report.layouts:
        report.add(str(path), "schema", "neither Parquet shards (data/*.parquet) nor metadata.jsonl found")
    return report
