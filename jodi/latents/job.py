"""The latent cache job: encode every image, label and caption once, for training.

Training reads latents, so neither the DC-AE autoencoder nor the 2B Gemma text
encoder runs in the training loop. Ray Data stages: read labeled rows -> drop ids
already cached (incremental) -> decode + resize to the aspect-ratio bucket (CPU,
`jodi.latents.rows`) -> encode (an actor pool that loads both encoders once,
`jodi.latents.encode`) -> Parquet.

Cache layout (OUT/):
    latents/*.parquet   LATENT_SCHEMA rows, one per record, keyed by id and bucket
    null_text.safetensors   the text encoding of "" (caption dropout and perception)
    cache.json          encoders, resolution, domains and shapes, for the trainer to check
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from jodi.latents.encode import EncodeLatents, probe_encoders
from jodi.latents.rows import dataset_domains, prepare_row, read_input
from jodi.latents.schema import CACHE_META, LATENT_DIR, LATENT_SCHEMA_VERSION, NULL_TEXT, CacheConfig, cache_domains


def cached_ids(output: str) -> set[str]:
    """Ids already in the cache (reads only the id column)."""
    import pyarrow.parquet as pq

    folder = Path(output) / LATENT_DIR
    if not folder.is_dir():
        return set()
    ids: set[str] = set()
    for f in sorted(folder.glob("*.parquet")):
        ids.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return ids


def _column_facts(folder: Path, cfg: CacheConfig) -> dict:
    """cache.json entries of the opt-in columns: the sorted class list (its order = class ids) and the
    DINOv2 feature width."""
    import pyarrow.parquet as pq

    facts: dict = {}
    files = sorted(folder.glob("*.parquet"))
    if cfg.classes_from_folders:
        names = {n for f in files for n in pq.read_table(f, columns=["class_name"]).column("class_name").to_pylist()}
        facts["classes"] = sorted(n for n in names if n is not None)
    if cfg.dino:
        from transformers import AutoConfig

        facts["dino_dim"] = int(AutoConfig.from_pretrained(cfg.dino, revision=cfg.dino_revision).hidden_size)
    return facts


def _drop_ids(table: pa.Table, ids: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.invert(pc.is_in(table.column("id"), value_set=pa.array(ids, pa.string()))))


def run_cache_job(cfg: CacheConfig) -> dict:
    """Encode the records of `cfg.input` not yet in `cfg.output`. Returns counts {total, new, cached}.

    Needs a running Ray (or starts a local one).
    """
    import ray
    import torch
    from safetensors.torch import save_file

    if not ray.is_initialized():
        ray.init()
    out = Path(cfg.output)
    (out / LATENT_DIR).mkdir(parents=True, exist_ok=True)
    meta_path = out / CACHE_META
    stored = dataset_domains(cfg)  # the label job's domains beyond Joint that this dataset has
    meta = {"schema_version": LATENT_SCHEMA_VERSION, **asdict(cfg), "domains": list(cache_domains(cfg, stored))}
    old_meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    legacy = {"dino": None, "classes_from_folders": False}  # caches written before these options existed
    for key in ("vae", "text_encoder", "resolution", "domains", "dino", "classes_from_folders"):
        if old_meta and old_meta.get(key, legacy.get(key)) != meta[key]:
            raise ValueError(f"{out} was cached with {key}={old_meta.get(key)!r}, not {meta[key]!r}; use a new output")
    if "latent_channels" in old_meta and (out / NULL_TEXT).exists():
        meta["latent_channels"], meta["text_channels"] = old_meta["latent_channels"], old_meta["text_channels"]
    else:
        probe = ray.get(ray.remote(num_gpus=cfg.num_gpus)(probe_encoders).remote(cfg))
        meta["latent_channels"], meta["text_channels"] = probe["latent_channels"], int(probe["emb"].shape[-1])
        tensors = {"emb": torch.tensor(probe["emb"]), "mask": torch.tensor(probe["mask"]).to(torch.uint8)}
        save_file(tensors, str(out / NULL_TEXT))
    done = cached_ids(cfg.output)
    ds, ids = read_input(cfg, stored)
    new = len(set(ids) - done)
    if new:
        if done:
            ds = ds.map_batches(_drop_ids, fn_kwargs={"ids": sorted(done)}, batch_format="pyarrow")
        ds = ds.map(prepare_row, fn_kwargs={"resolution": cfg.resolution, "empty_openpose": cfg.empty_openpose,
                                            "classes_from_folders": cfg.classes_from_folders,
                                            "extra_domains": tuple((n, str(Path(f).resolve()))
                                                                   for n, f in cfg.extra_domains),
                                            "stored": stored})
        ds = ds.map_batches(
            EncodeLatents,
            fn_constructor_args=(cfg,),
            batch_size=cfg.batch_size,
            concurrency=cfg.concurrency,
            num_gpus=cfg.num_gpus,
            num_cpus=cfg.num_cpus,
        )
        ds.write_parquet(str(out / LATENT_DIR))
    meta["records"] = len(cached_ids(cfg.output))
    meta.update(_column_facts(out / LATENT_DIR, cfg))
    meta_path.write_text(json.dumps(meta, indent=2))
    return {"total": len(ids), "new": new, "cached": meta["records"]}

