"""What a latent cache is: its Parquet row schema, its file names, its job config and its domain list."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from jodi.codecs import TEXT_ID, TEXT_REVISION, VAE_ID, VAE_REVISION
from jodi.features import DINO_REVISION
from schemas.domains import ALL_DOMAINS, EXTRA_DOMAINS

SAFE_ID = re.compile(r"[0-9A-Za-z_-]+")
LATENT_SCHEMA_VERSION = "1.1"  # 1.1: optional class_name and dino columns
CACHE_META = "cache.json"
NULL_TEXT = "null_text.safetensors"
LATENT_DIR = "latents"

LATENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("bucket", pa.string(), nullable=False),  # aspect ratio key, e.g. "1.0"
        pa.field("latent_h", pa.int32(), nullable=False),
        pa.field("latent_w", pa.int32(), nullable=False),
        pa.field("present", pa.binary(), nullable=False),  # uint8 (D,), 1 = the domain has a label
        pa.field("latents", pa.binary(), nullable=False),  # float16 (D, C, h, w); zeros where absent
        pa.field("caption_models", pa.list_(pa.string())),
        pa.field("caption_embs", pa.list_(pa.binary())),  # float16 (n_i, C_text), real tokens only
        pa.field("class_name", pa.string()),  # opt-in: the folder holding the source file (ImageNet layout)
        pa.field("dino", pa.binary()),  # opt-in: float16 (h * w, F) DINOv2 patch features of the image (REPA)
    ],
    metadata={"jodi_latent_schema_version": LATENT_SCHEMA_VERSION},
)


@dataclass(frozen=True)
class CacheConfig:
    input: str  # label job output (data/*.parquet) or a Joint folder (metadata.jsonl)
    output: str
    # DC-AE f32c32 and Gemma-2-2b-it as in Sana/Jodi
    # (docs/jodi-reference.md#vae-and-text-encoder); "tiny" = random stand-ins
    vae: str = VAE_ID
    vae_revision: str = VAE_REVISION
    text_encoder: str = TEXT_ID
    text_encoder_revision: str = TEXT_REVISION
    resolution: int = 1024  # bucket sizes are the reference's 1024 buckets scaled by resolution/1024
    empty_openpose: bool = True  # reference `use_empty_openpose_image`: no person -> a black label
    batch_size: int = 8
    concurrency: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    classes_from_folders: bool = False  # class label = name of the folder holding each source image
    dino: str | None = None  # DINOv2 hub id or folder: cache REPA targets (jodi/features.py DINO_ID)
    dino_revision: str = DINO_REVISION
    # Label domains in folders outside the dataset: (name, folder holding `<id>.png|.jpg` labels) each, e.g.
    # a user's own labeler run apart from `jodi label`. Domains the label job wrote need nothing here.
    extra_domains: tuple[tuple[str, str], ...] = ()


def cache_domains(cfg: CacheConfig, dataset_domains: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The domains a cache stores, in latent order: the Joint domains, then the dataset's domains beyond
    Joint (`schemas.domains.EXTRA_DOMAINS` order), then the folders of `cfg.extra_domains`."""
    unknown = [d for d in dataset_domains if d not in EXTRA_DOMAINS]
    if unknown:
        raise ValueError(f"{unknown} are not domains beyond Joint; known: {list(EXTRA_DOMAINS)}")
    names = tuple(name for name, _ in cfg.extra_domains)
    taken = (*ALL_DOMAINS, *dataset_domains)
    bad = [n for n in names if n in taken or not SAFE_ID.fullmatch(n)]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"extra domain folders must be new, distinct, plain names (the dataset already has {list(taken)}); "
            f"got {list(names)}"
        )
    return (*ALL_DOMAINS, *dataset_domains, *names)
