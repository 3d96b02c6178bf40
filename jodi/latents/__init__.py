"""The latent cache: a labeled dataset encoded once (DC-AE latents, Gemma caption embeddings, optional
DINOv2 features) so that training never runs the encoders.

    schema.py   LATENT_SCHEMA, file names, CacheConfig, the cache's domain list
    rows.py     reading a label job output or Joint folder; rows -> bucket pixels (CPU stage)
    encode.py   the encoder actor (DC-AE, Gemma, DINOv2 loaded once)
    job.py      run_cache_job: the Ray Data job and cache.json
"""

from jodi.buckets import bucket_sizes
from jodi.latents.encode import EncodeLatents, load_encoders, probe_encoders
from jodi.latents.job import cached_ids, run_cache_job
from jodi.latents.rows import class_of, dataset_domains, extra_label, joint_items, prepare_row, read_joint_files
from jodi.latents.schema import (
    CACHE_META,
    LATENT_DIR,
    LATENT_SCHEMA,
    LATENT_SCHEMA_VERSION,
    NULL_TEXT,
    CacheConfig,
    cache_domains,
)

__all__ = [
    "CACHE_META",
    "LATENT_DIR",
    "LATENT_SCHEMA",
    "LATENT_SCHEMA_VERSION",
    "NULL_TEXT",
    "CacheConfig",
    "EncodeLatents",
    "bucket_sizes",
    "cache_domains",
    "cached_ids",
    "class_of",
    "dataset_domains",
    "extra_label",
    "joint_items",
    "load_encoders",
    "prepare_row",
    "probe_encoders",
    "read_joint_files",
    "run_cache_job",
]
