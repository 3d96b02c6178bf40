"""Publish a labeled dataset to the Hugging Face Hub: prepare an upload folder, write its card, upload.

The upload folder is what the Hub's dataset viewer and `datasets.load_dataset` expect
(huggingface.co/docs/hub/datasets-manual-configuration, datasets-cards):

    README.md                           dataset card: YAML front matter + provenance
    preview.png                         contact sheet shown in the card
    data/<split>-00000-of-0000N.parquet RECORD_SCHEMA rows, images and labels as `Image()`

The token is never read or written by this module: `HfApi` finds it itself (HF_TOKEN or
`hf auth login`). Every message this module returns is passed through `redact` anyway, in
case a server echoes the token back in an error.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from annotators.registry import licence_refusal, licence_table
from pipeline.convert import ShardConfig, WriteStats, write_parquet
from pipeline.preview import contact_sheet
from pipeline.validate import ValidationReport, validate
from schemas.domains import STORED_DOMAINS, annotation_key
from schemas.joint import detect_layout, iter_records, metadata_files, parquet_files
from schemas.record import RECORD_SCHEMA, SCHEMA_VERSION, LabeledRecord, huggingface_features
from schemas.storage import Storage, is_remote

# Hub repository limits (huggingface.co/docs/hub/repositories-recommendations).
MAX_FILES_PER_FOLDER = 10_000
MAX_FILES_TOTAL = 100_000
# `size_categories` values the Hub understands, by upper bound.
# Everything an upload folder may hold: what `prepare_folder` writes and the Hub client's resume cache.
STAGING_ENTRIES = ("README.md", "preview.png", "data", ".cache", ".gitattributes")
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


class HubLayoutError(ValueError):
    """The prepared folder breaks a Hub repository limit."""


@dataclass(frozen=True)
class PublishConfig:
    """What `jodi publish` does. `staging` defaults to a sibling folder `<source>-hub`."""

    source: str
    repo_id: str
    staging: str | None = None
    private: bool = False
    dry_run: bool = False
    license: str = "other"  # the source images' license decides; "other" until the user says
    pretty_name: str | None = None
    preview_samples: int = 6
    validate: bool = True  # decode-check every record before uploading; slow for millions of images
    i_have_checked_licences: bool = False  # publish even if non-commercial weights made labels of a commercial dataset
    shards: ShardConfig = ShardConfig()

    @property
    def staging_path(self) -> Path:
        if self.staging:
            return Path(self.staging)
        if is_remote(self.source):  # a dataset in a bucket is prepared in a local folder named after it
            return Path(self.source.rstrip("/").rsplit("/", 1)[-1] + "-hub").resolve()
        return Path(str(Path(self.source).resolve()) + "-hub")


@dataclass
class PreparedFolder:
    """An upload folder and what went into it (the card is written from this)."""

    path: Path
    splits: dict[str, WriteStats] = field(default_factory=dict)
    provenance: Counter = field(default_factory=Counter)  # (domain, annotator, model_id, revision, params) -> n
    schema_versions: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # (stage, error) -> n

    @property
    def records(self) -> int:
        return sum(s.records for s in self.splits.values())

    @property
    def domains(self) -> Counter:
        return sum((s.domains for s in self.splits.values()), Counter())


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the Hub token (and any given secret) replaced by `***`."""
    from huggingface_hub import get_token

    for secret in (*secrets, os.environ.get("HF_TOKEN"), get_token()):
        if secret:
            text = text.replace(secret, "***")
    return text


def _follows_conventions(shard: Path | str, cfg: ShardConfig) -> bool:
    """True when a source shard can be published as it is: our schema with `datasets` features,
    row groups of at most `rows_per_group`, at most `max_shard_bytes` (the label job writes such shards).
    Shards in a bucket are rewritten locally (read through the storage layer), never linked."""
    if is_remote(str(shard)):
        return False
    pf = pq.ParquetFile(shard)
    meta = pf.metadata
    return (
        shard.stat().st_size <= cfg.max_shard_bytes
        and all(meta.row_group(i).num_rows <= cfg.rows_per_group for i in range(meta.num_row_groups))
        and [(f.name, f.type) for f in pf.schema_arrow] == [(f.name, f.type) for f in RECORD_SCHEMA]
        and b"huggingface" in (pf.schema_arrow.metadata or {})
    )


_PROVENANCE_KEY = ("domain", "annotator", "model_id", "revision", "parameters")


def _link_shards(shards: list[Path], folder: Path, split: str, prepared: PreparedFolder) -> WriteStats:
    """Hard-link (copy across file systems) conforming shards under Hub names, counting what they hold
    from their small columns only: re-preparing a terabyte dataset costs seconds, not a rewrite."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = WriteStats()
    columns = ["provenance", "schema_version", *(f"{annotation_key(d)}.path" for d in STORED_DOMAINS)]
    for i, shard in enumerate(shards):
        table = pq.ParquetFile(shard).read(columns=columns)
        stats.records += table.num_rows
        for d in STORED_DOMAINS:
            stats.domains[d] += table.num_rows - table.column(annotation_key(d)).null_count
        prepared.schema_versions.update(table.column("schema_version").to_pylist())
        for provenance in table.column("provenance").to_pylist():
            prepared.provenance.update(tuple(p[k] for k in _PROVENANCE_KEY) for p in provenance or [])
        target = folder / f"{split}-{i:05d}-of-{len(shards):05d}.parquet"
        try:
            os.link(shard, target)
        except OSError:
            shutil.copyfile(shard, target)
        stats.files.append(target)
    stats.domains = +stats.domains  # drop zero counts, as the writer's counter has none
    return stats


def _tap(records: Iterator[LabeledRecord], prepared: PreparedFolder, keep: list[LabeledRecord], n: int):
    """Pass records through while counting provenance and keeping the first `n` for the preview."""
    for record in records:
        for p in record.provenance:
            prepared.provenance[(p.domain, p.annotator, p.model_id, p.revision, p.parameters)] += 1
        prepared.schema_versions[record.schema_version] += 1
        if len(keep) < n:
            keep.append(record)
        yield record


def error_counts(source: Path | str) -> Counter:
    """(stage, error) -> count over the label job's `errors/*.parquet` (empty for other datasets)."""
    counts: Counter = Counter()
    storage = Storage(str(source))
    for shard in storage.list("errors", ".parquet"):
        table = storage.read_table(shard, columns=["stage", "error"])
        counts.update(zip(table.column("stage").to_pylist(), table.column("error").to_pylist()))
    return counts


def check_hub_layout(folder: Path, per_folder: int = MAX_FILES_PER_FOLDER, total: int = MAX_FILES_TOTAL) -> int:
    """Raise `HubLayoutError` when a folder holds too many files; returns the file count."""
    counts = Counter(p.parent for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts)
    crowded = [f"{d.relative_to(folder)} ({n})" for d, n in counts.items() if n >= per_folder]
    if crowded:
        raise HubLayoutError(f"more than {per_folder} files in: {', '.join(crowded)}; use larger shards")
    if sum(counts.values()) >= total:
        raise HubLayoutError(f"{sum(counts.values())} files; the Hub recommends well under {total}")
    return sum(counts.values())


def size_category(n: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if n < bound), "n>1M")


def _clear_staging(out: Path) -> None:
    """Empty a previous upload folder, refusing any folder that holds files this module did not write.

    `.cache/` is kept: huggingface_hub keeps its resume state for an interrupted upload there.
    """
    if not out.exists():
        return
    entries = {p.name for p in out.iterdir()}
    if entries - set(STAGING_ENTRIES):
        raise ValueError(f"refusing to clear {out}: it holds {sorted(entries - set(STAGING_ENTRIES))}; pick --staging")
    for name in entries - {".cache"}:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink()


def prepare_folder(cfg: PublishConfig) -> PreparedFolder:
    """Build the upload folder: Parquet shards per split, preview, card.

    Source shards that already follow the Hub conventions are linked, not rewritten; others (and a
    Joint folder) are written anew. Rebuilt each run: the same input gives the same bytes, so an
    interrupted upload resumes without sending them again."""
    source, out = (cfg.source if is_remote(cfg.source) else Path(cfg.source)), cfg.staging_path
    if not is_remote(cfg.source) and (out.resolve() == source.resolve() or source.resolve() in out.resolve().parents):
        raise ValueError(f"staging folder {out} must not be inside the source {source}")
    _clear_staging(out)
    prepared = PreparedFolder(path=out, errors=error_counts(source))
    keep: list[LabeledRecord] = []
    if detect_layout(source) == "parquet":
        shards = parquet_files(source)
    else:
        shards = {split: [] for split in metadata_files(source)}  # a Joint folder: always written anew
    for split, files in shards.items():
        name = split or "train"  # the Hub names an unsplit dataset's only split "train"
        if files and all(_follows_conventions(f, cfg.shards) for f in files):
            prepared.splits[name] = _link_shards(files, out / "data", name, prepared)
            keep += list(itertools.islice(iter_records(source, split), cfg.preview_samples - len(keep)))
        else:
            records = _tap(iter_records(source, split), prepared, keep, cfg.preview_samples)
            prepared.splits[name] = write_parquet(records, out / "data", name, cfg.shards)
    if keep:
        contact_sheet(keep, n=cfg.preview_samples).save(out / "preview.png")
    (out / "README.md").write_text(dataset_card(prepared, cfg), encoding="utf-8")
    check_hub_layout(out)
    return prepared


def _yaml_front_matter(prepared: PreparedFolder, cfg: PublishConfig) -> str:
    import datasets
    from huggingface_hub import DatasetCardData

    domains = prepared.domains
    tasks = ["image-to-image", "text-to-image"]
    tasks += ["depth-estimation"] if domains["depth"] else []
    tasks += ["image-segmentation"] if domains["seg_12colors"] else []
    features = datasets.Features.from_dict(huggingface_features())
    data = DatasetCardData(
        license=cfg.license,
        task_categories=tasks,
        size_categories=[size_category(prepared.records)],
        pretty_name=cfg.pretty_name or cfg.repo_id.split("/")[-1],
        tags=["jodi", "joint-1.6m", *(d for d in STORED_DOMAINS if domains[d])],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in prepared.splits],
            }
        ],
        dataset_info={
            "features": features._to_yaml_list(),
            # num_bytes: the Parquet bytes of the split (the viewer only needs a size order).
            "splits": [
                {"name": s, "num_examples": w.records, "num_bytes": sum(f.stat().st_size for f in w.files)}
                for s, w in prepared.splits.items()
            ],
        },
    )
    return data.to_yaml()


def dataset_card(prepared: PreparedFolder, cfg: PublishConfig) -> str:
    """README.md text: YAML front matter, then what the dataset is, its provenance and how to load it."""
    domains = prepared.domains
    lines = [
        "---",
        _yaml_front_matter(prepared, cfg),
        "---",
        "",
        f"# {cfg.pretty_name or cfg.repo_id.split('/')[-1]}",
        "",
        "Images with machine-generated labels in the layout of Joint-1.6M "
        "([Jodi, arXiv 2505.19084](https://arxiv.org/abs/2505.19084)), made with the Jodi data engine.",
        "",
        "![preview](preview.png)" if (prepared.path / "preview.png").exists() else "",
        "",
        "## Contents",
        "",
        "| split | records |",
        "|---|---|",
        *[f"| {s} | {w.records} |" for s, w in prepared.splits.items()],
        "",
        "| label column | records with the label |",
        "|---|---|",
        *[f"| `{annotation_key(d)}` | {domains[d]} |" for d in STORED_DOMAINS if domains[d]],
        "",
        "Columns: `id` (md5 of the source file), `source`, `image`, `info` {height, width}, "
        "`caption` (list of {model, text}), one `annotation_<domain>` image per label domain "
        "(null when absent), `provenance`, `schema_version`. Depth is 8-bit grey, near = bright; "
        "normals are (n+1)/2*255; segmentation is a lossless PNG in Jodi's 12-colour palette.",
        "",
        "## Provenance",
        "",
        f"Record schema version: {', '.join(sorted(prepared.schema_versions)) or SCHEMA_VERSION}.",
        "",
    ]
    if prepared.provenance:
        lines += ["| domain | annotator | model | revision | parameters | records |", "|---|---|---|---|---|---|"]
        for (domain, annotator, model_id, revision, params), n in sorted(prepared.provenance.items(), key=str):
            cells = [domain, annotator, model_id or "-", revision or "-", f"`{params}`", str(n)]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    else:
        lines.append("The source carried no per-record provenance (a Joint folder); see its own card.")
    lines += ["", "## Weight licences", "", *licence_table({(d, a) for d, a, *_ in prepared.provenance})]
    lines += ["", "## Inputs that did not become records", ""]
    if prepared.errors:
        lines += ["| stage | reason | count |", "|---|---|---|"]
        lines += [f"| {s} | {e} | {n} |" for (s, e), n in sorted(prepared.errors.items())]
    else:
        lines.append("None recorded.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{cfg.repo_id}", split="{next(iter(prepared.splits), "train")}")',
        "```",
        "",
        "`jodi convert` turns the Parquet shards back into the Joint folder layout that Jodi's own "
        "`JodiDataset` reads.",
        "",
    ]
    return redact("\n".join(lines))


def upload(folder: Path, repo_id: str, private: bool = False, api=None) -> str:
    """Create the dataset repo if needed and upload `folder` resumably; returns the repo URL.

    huggingface_hub 1.x has `upload_large_folder` (resumable, multi-commit); in 2.x it was folded
    into `upload_folder`, which resumes an interrupted upload when re-run. The token comes from
    the environment or the user's login, never from here.
    """
    from huggingface_hub import HfApi

    api = api or HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if hasattr(api, "upload_large_folder"):
        api.upload_large_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", private=private)
    else:
        api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", commit_message="jodi publish")
    return str(url)


def publish(cfg: PublishConfig, log: Callable[[str], None] = print) -> tuple[PreparedFolder, ValidationReport]:
    """Prepare the folder, validate it as it will be uploaded, then upload unless `cfg.dry_run`.

    Nothing is uploaded when validation finds a problem (the report says what). A failed upload
    raises `RuntimeError` with a one-line, redacted message.
    """
    prepared = prepare_folder(cfg)
    refusal = licence_refusal(cfg.license, {a for _, a, *_ in prepared.provenance})
    if refusal and not cfg.i_have_checked_licences:
        raise ValueError(refusal)
    log(
        f"prepared {prepared.path}: {prepared.records} records in "
        + ", ".join(f"{s}={w.records} ({len(w.files)} shards)" for s, w in prepared.splits.items())
    )
    report = validate(prepared.path) if cfg.validate else ValidationReport(str(prepared.path), ["parquet"])
    if cfg.validate:
        log(report.format())
    if cfg.dry_run or not report.ok:
        log("dry run: nothing uploaded" if report.ok else "validation failed: nothing uploaded")
        return prepared, report
    try:
        url = upload(prepared.path, cfg.repo_id, cfg.private)
    except Exception as e:  # network, auth, quota: one redacted line, never a traceback with headers
        raise RuntimeError(redact(f"upload to {cfg.repo_id} failed: {type(e).__name__}: {e}")) from None
    log(f"uploaded to {url}")
    return prepared, report


def summary_json(prepared: PreparedFolder) -> str:
    """Machine-readable summary of a prepared folder (printed by `jodi publish --json`)."""
    return json.dumps(
        {
            "path": str(prepared.path),
            "records": prepared.records,
            "splits": {s: w.records for s, w in prepared.splits.items()},
            "domains": dict(prepared.domains),
            "errors": sum(prepared.errors.values()),
        }
    )
