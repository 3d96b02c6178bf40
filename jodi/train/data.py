"""Training input: latent-cache rows -> aspect-ratio bucketed batches with sampled roles.

Each Ray Train worker streams its own deterministic share of the cache files
(`worker_rows`; no copy of the data per worker). Rows pass a seeded local shuffle buffer, then go to one buffer
per bucket; a batch is emitted when a bucket has `batch_size` rows, so every
batch has one latent size (reference `AspectRatioBatchSampler`, drop_last=True).
The order is a pure function of (input order, seed, epoch, rank), so a resumed
run skips the batches it already trained on and sees the same ones after.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jodi.latents import CACHE_META, LATENT_DIR, NULL_TEXT
from jodi.roles import choose_caption, drop_modalities, drops_text, sample_roles
from schemas.domains import ALL_DOMAINS



@dataclass(frozen=True)
class CacheInfo:
    """What the trainer needs to know about a latent cache (from its cache.json)."""

    latent_channels: int
    text_channels: int
    domains: tuple[str, ...]
    records: int
    classes: tuple[str, ...] = ()  # class ids are positions in this list (caches made with class folders)
    dino_dim: int = 0  # width of the cached DINOv2 features (0 = none cached)


def read_cache_info(path: str) -> CacheInfo:
    meta = json.loads((Path(path) / CACHE_META).read_text())
    return CacheInfo(
        latent_channels=int(meta["latent_channels"]),
        text_channels=int(meta["text_channels"]),
        domains=tuple(meta["domains"]),
        records=int(meta.get("records", 0)),
        classes=tuple(meta.get("classes") or ()),
        dino_dim=int(meta.get("dino_dim") or 0),
    )


def load_null_text(path: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The cached encoding of "" padded/truncated to `length`: float32 (L, C), bool (L,)."""
    from safetensors.numpy import load_file

    null = load_file(str(Path(path) / NULL_TEXT))
    emb, mask = null["emb"].astype(np.float32), null["mask"].astype(bool)
    return _pad_tokens(emb[mask], length)


def read_dataset(paths: Iterable[str]):
    """One Ray Dataset over the latent caches, with `source_index` telling which cache a row came from."""
    import ray

    parts = []
    for k, path in enumerate(paths):
        ds = ray.data.read_parquet(str(Path(path) / LATENT_DIR))
        parts.append(ds.map_batches(_add_column, fn_kwargs={"value": k}, batch_format="pyarrow"))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _add_column(table, value: int):
    import pyarrow as pa

    return table.append_column("source_index", pa.array([value] * table.num_rows, pa.int32()))


# ---------------------------------------------------------------- worker shards


def cache_files(paths: Iterable[str]) -> list[tuple[int, object, str]]:
    """(source index, pyarrow filesystem, file) of every latent-cache Parquet file, sorted per cache.
    Local folders and URIs (s3://, gs://, ...) go through pyarrow's filesystems."""
    import pyarrow.fs as pafs

    out = []
    for k, path in enumerate(paths):
        if "://" in path:
            fs, root = pafs.FileSystem.from_uri(path)
        else:
            fs, root = pafs.LocalFileSystem(), str(Path(path).resolve())
        infos = fs.get_file_info(pafs.FileSelector(f"{root.rstrip('/')}/{LATENT_DIR}"))
        out += [(k, fs, info.path) for info in sorted(infos, key=lambda i: i.path) if info.path.endswith(".parquet")]
    return out


def worker_rows(files: list[tuple[int, object, str]], rank: int, world_size: int) -> Iterator[dict]:
    """The rows worker `rank` of `world_size` trains on in an epoch, streamed file by file.

    Whole files go round-robin (`files[rank::world_size]`) when there are at least as many files as workers
    (a cache written by Ray Data has one file per block); a smaller cache is split row by row. Either way the
    split is a pure function of (files, rank, world_size), so after a kill every worker resumes with exactly
    the rows it would have seen (Ray Data's streaming split assigns blocks dynamically and cannot promise that).
    """
    import pyarrow.parquet as pq

    def rows(entry):
        k, fs, path = entry
        for batch in pq.ParquetFile(path, filesystem=fs).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield {**row, "source_index": k}

    if len(files) >= world_size:
        for entry in files[rank::world_size]:
            yield from rows(entry)
        return
    index = 0
    for entry in files:
        for row in rows(entry):
            if index % world_size == rank:
                yield row
            index += 1


# ---------------------------------------------------------------- bucketing


def bucketed_batches(
    rows: Iterable[dict], batch_size: int, seed: int, epoch: int, rank: int, shuffle_buffer: int
) -> Iterator[list[dict]]:
    """Group rows into same-bucket batches after a seeded local shuffle. Leftovers are dropped
    at the end of the epoch (drop_last), as the reference batch sampler does."""
    rng = np.random.default_rng([seed, epoch, rank])
    pending: dict[str, list[dict]] = {}
    buffer: list[dict] = []

    def place(row: dict) -> list[dict] | None:
        group = pending.setdefault(str(row["bucket"]), [])
        group.append(row)
        if len(group) == batch_size:
            pending[str(row["bucket"])] = []
            return group
        return None

    for row in rows:
        buffer.append(row)
        if len(buffer) >= max(1, shuffle_buffer):
            out = place(buffer.pop(int(rng.integers(len(buffer)))))
            if out is not None:
                yield out
    rng.shuffle(buffer)
    for row in buffer:
        out = place(row)
        if out is not None:
            yield out


# ---------------------------------------------------------------- collation


@dataclass(frozen=True)
class Batch:
    """One training batch. x0: (B, D, C, h, w); role: (B, D) long; y: (B, L, Ct); y_mask: (B, L);
    drop_text: (B,) bool (caption dropout; perception is dropped inside the model); labels: (B,) long class
    ids (class-conditioned runs); dino: (B, N, F) DINOv2 features of the image (REPA runs)."""

    x0: torch.Tensor
    role: torch.Tensor
    y: torch.Tensor
    y_mask: torch.Tensor
    drop_text: torch.Tensor
    tasks: tuple[str, ...]
    ids: tuple[str, ...]
    labels: torch.Tensor | None = None
    dino: torch.Tensor | None = None

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(t) for t in (self.x0, self.role, self.y, self.y_mask, self.drop_text)),
                     self.tasks, self.ids, move(self.labels), move(self.dino))


@dataclass(frozen=True)
class Collator:
    latent_channels: int
    text_channels: int
    max_tokens: int
    caption_weights: tuple[dict[str, float], ...]  # per source_index
    null_text: tuple[np.ndarray, np.ndarray]
    caption_dropout: float = 0.1
    num_domains: int = len(ALL_DOMAINS)
    modality_dropout: float = 0.0
    classes: tuple[str, ...] = ()  # non-empty: emit class ids (class-conditioned runs)
    dino_dim: int = 0  # > 0: emit the cached DINOv2 features (REPA runs)

    def __call__(self, rows: list[dict], rng: np.random.Generator) -> Batch:
        """Decode latents, draw roles, choose and drop captions. All randomness comes from `rng`."""
        x0, roles, ys, masks, drop, tasks = [], [], [], [], [], []
        for row in rows:
            present = np.frombuffer(row["present"], np.uint8).astype(bool)
            z = np.frombuffer(row["latents"], np.float16).astype(np.float32)
            x0.append(z.reshape(self.num_domains, self.latent_channels, int(row["latent_h"]), int(row["latent_w"])))
            task, role = sample_roles(present, rng)
            role = drop_modalities(role, self.modality_dropout, rng)
            models = [] if row["caption_models"] is None else [str(m) for m in row["caption_models"]]
            weights = self.caption_weights[int(row.get("source_index") or 0)]
            pick = choose_caption(models, weights, rng)
            if self.classes:  # the class label is the condition: dropout means the null class
                dropped = rng.random() < self.caption_dropout
            else:
                dropped = pick is None or rng.random() < self.caption_dropout
            if dropped or pick is None:
                emb, mask = self.null_text
            else:
                raw = np.frombuffer(row["caption_embs"][pick], np.float16).astype(np.float32)
                emb, mask = _pad_tokens(raw.reshape(-1, self.text_channels), self.max_tokens)
            ys.append(emb)
            masks.append(mask)
            roles.append(role)
            drop.append(dropped or drops_text(task))
            tasks.append(task)
        labels = dino = None
        if self.classes:
            index = {name: k for k, name in enumerate(self.classes)}
            labels = torch.tensor([index[r["class_name"]] for r in rows], dtype=torch.long)
        if self.dino_dim:
            missing = [str(r["id"]) for r in rows if r.get("dino") is None]
            if missing:
                raise ValueError(f"records {missing[:3]} have no cached DINOv2 features (cache with --dino)")
            dino = torch.from_numpy(np.stack([
                np.frombuffer(r["dino"], np.float16).astype(np.float32).reshape(-1, self.dino_dim) for r in rows]))
        return Batch(
            x0=torch.from_numpy(np.stack(x0)),
            role=torch.from_numpy(np.stack(roles)),
            y=torch.from_numpy(np.stack(ys)),
            y_mask=torch.from_numpy(np.stack(masks)),
            drop_text=torch.tensor(drop),
            tasks=tuple(tasks),
            ids=tuple(str(r["id"]) for r in rows),
            labels=labels,
            dino=dino,
        )


def _pad_tokens(emb: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) real tokens -> (length, C) zero-padded and its mask; longer captions are cut at `length`
    (the reference keeps 300 tokens)."""
    n = min(len(emb), length)
    out = np.zeros((length, emb.shape[1]), dtype=np.float32)
    out[:n] = emb[:n]
    mask = np.zeros(length, dtype=bool)
    mask[:n] = True
    return out, mask
