"""The latent cache job: encode every image, label and caption once, for training.

Training reads latents, so neither the DC-AE autoencoder nor the 2B Gemma text
encoder runs in the training loop. Ray Data stages: read labeled rows -> drop ids
already cached (incremental) -> decode + resize to the aspect-ratio bucket (CPU)
-> encode (an actor pool that loads both encoders once) -> Parquet.

Cache layout (OUT/):
    latents/*.parquet   LATENT_SCHEMA rows, one per record, keyed by id and bucket
    null_text.safetensors   the text encoding of "" (caption dropout and perception)
    cache.json          encoders, resolution, domains and shapes, for the trainer to check
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from jodi.buckets import bucket_sizes, fit_to_bucket, nearest_bucket_key
from jodi.codecs import TEXT_ID, TEXT_REVISION, VAE_ID, VAE_REVISION
from jodi.features import DINO_REVISION
from schemas.domains import ALL_DOMAINS, CAPTION, LABEL_DOMAINS, annotation_key
from schemas.storage import Storage, is_remote

_SAFE_ID = re.compile(r"[0-9A-Za-z_-]+")
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
    # New label domains beyond the Joint seven: (name, folder holding `<id>.png|.jpg` labels) each, e.g.
    # the output of an extra annotator or of a user's own labeler.
    extra_domains: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------- stages


def _read_input(cfg: CacheConfig):
    """(Ray Dataset of rows {id, source, height, width, captions, image, annotation_*} with file bytes,
    the input's ids). The ids are read on the driver from the id column / metadata only."""
    import pyarrow.parquet as pq
    import ray

    if is_remote(str(cfg.input)):  # a dataset in a bucket: its Parquet shards, read by Ray Data from there
        storage = Storage(str(cfg.input))
        files = storage.list("data", ".parquet")
        if not files:
            raise FileNotFoundError(f"{cfg.input}: no Parquet shards under data/")
        cols = ["id", "source", "info", CAPTION, "image", *[annotation_key(d) for d in LABEL_DOMAINS]]
        ids = storage.read_table(files, columns=["id"]).column("id").to_pylist()
        ds = ray.data.read_parquet([storage.url(f) for f in files], columns=cols)
        return ds.map_batches(_flatten_parquet, batch_format="pyarrow", zero_copy_batch=True), ids
    root = Path(cfg.input)
    if (root / "data").is_dir() or str(cfg.input).endswith(".parquet"):
        src = str(root / "data") if (root / "data").is_dir() else cfg.input
        cols = ["id", "source", "info", CAPTION, "image", *[annotation_key(d) for d in LABEL_DOMAINS]]
        ids = pq.read_table(src, columns=["id"]).column("id").to_pylist()
        ds = ray.data.read_parquet(src, columns=cols)
        return ds.map_batches(_flatten_parquet, batch_format="pyarrow", zero_copy_batch=True), ids
    if (root / "metadata.jsonl").exists():
        items = _joint_items(root)
        return ray.data.from_items(items).map(_read_joint_files), [it["id"] for it in items]
    raise FileNotFoundError(f"{cfg.input}: neither a label job output (data/*.parquet) nor a Joint folder")


def _flatten_parquet(table: pa.Table) -> pa.Table:
    info = table.column("info").combine_chunks()
    cols = {
        "id": table.column("id"),
        "source": table.column("source"),
        "height": info.field("height"),
        "width": info.field("width"),
        CAPTION: table.column(CAPTION),
        "image": table.column("image").combine_chunks().field("bytes"),
    }
    for d in LABEL_DOMAINS:
        cols[annotation_key(d)] = table.column(annotation_key(d)).combine_chunks().field("bytes")
    return pa.table(cols)


def _joint_items(root: Path) -> list[dict]:
    """Index a Joint folder (every metadata split) through schemas.joint: paths only, no file read yet."""
    from schemas.joint import iter_joint_entries

    items = []
    for entry in iter_joint_entries(root):
        item = {
            "id": entry.id,
            "source": str(entry.files["image"]),
            "height": entry.height,
            "width": entry.width,
            CAPTION: [{"model": k, "text": v} for k, v in sorted(entry.captions.items())],
            "image": str(entry.path("image")),
        }
        for d in LABEL_DOMAINS:
            item[annotation_key(d)] = str(entry.path(d)) if d in entry.files else None
        items.append(item)
    return items


def _read_joint_files(item: dict) -> dict:
    out = dict(item)
    for key in ("image", *[annotation_key(d) for d in LABEL_DOMAINS]):
        if out[key] is not None:
            out[key] = Path(out[key]).read_bytes()
    return out


def prepare_row(row: dict, resolution: int, empty_openpose: bool, classes_from_folders: bool = False,
                extra_domains: tuple[tuple[str, str], ...] = ()) -> dict:
    """CPU stage: file bytes -> uint8 pixels (D, H, W, 3) at the record's bucket, plus the presence mask.
    D = the Joint domains, then `extra_domains` ((name, folder of `<id>.png|.jpg` labels), in order)."""
    from PIL import Image

    key = nearest_bucket_key(int(row["height"]), int(row["width"]))
    size = bucket_sizes(resolution)[key]
    domains = (*ALL_DOMAINS, *(name for name, _ in extra_domains))
    pixels = np.zeros((len(domains), size[0], size[1], 3), dtype=np.uint8)
    present = np.zeros(len(domains), dtype=np.uint8)
    extra = {name: extra_label(folder, str(row["id"])) for name, folder in extra_domains}
    for i, domain in enumerate(domains):
        data = row["image"] if domain == "image" else extra[domain] if domain in extra else row[annotation_key(domain)]
        if data is not None:
            with Image.open(io.BytesIO(data)) as img:
                pixels[i] = fit_to_bucket(img, size)
            present[i] = 1
        elif domain == "openpose" and empty_openpose:
            present[i] = 1  # black image = "no person", a real label (reference default)
    captions = row.get(CAPTION) or []
    return {
        "id": row["id"],
        "source": row.get("source") or "",
        "bucket": key,
        "pixels": pixels.tobytes(),
        "shape": np.array(pixels.shape, dtype=np.int64),
        "present": present.tobytes(),
        "caption_models": [c["model"] for c in captions],
        "caption_texts": [c["text"] for c in captions],
        "class_name": class_of(row.get("source") or "") if classes_from_folders else None,
    }


def extra_label(folder: str, record_id: str) -> bytes | None:
    """The bytes of `<folder>/<id>.png` (or .jpg), None when the record has no such label. Ids are Joint's
    md5 hex names; anything else is refused, so a path from metadata never leaves `folder`."""
    if not _SAFE_ID.fullmatch(record_id):
        raise ValueError(f"record id {record_id!r} cannot name a label file (expected letters, digits, _ or -)")
    for ext in (".png", ".jpg", ".jpeg"):
        path = Path(folder) / f"{record_id}{ext}"
        if path.is_file():
            return path.read_bytes()
    return None


def cache_domains(cfg: CacheConfig) -> tuple[str, ...]:
    """The domains a cache stores, in latent order: the Joint domains, then the extra ones."""
    names = tuple(name for name, _ in cfg.extra_domains)
    bad = [n for n in names if n in ALL_DOMAINS or not _SAFE_ID.fullmatch(n)]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"extra domains must be new, distinct, plain names; got {list(names)}")
    return (*ALL_DOMAINS, *names)


def class_of(source: str) -> str:
    """ImageNet-style layout `<root>/<class>/<file>`: the class is the folder holding the file."""
    parts = source.replace("\\", "/").rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2]:
        raise ValueError(f"{source!r} is not inside a class folder (expected <root>/<class>/<file>)")
    return parts[-2]


def load_encoders(cfg: CacheConfig):
    """(LatentCodec, TextEncoder) from hub ids or local folders; "tiny" builds seeded random stand-ins
    so every actor of a test run encodes identically."""
    from jodi.codecs import LatentCodec, TextEncoder

    if cfg.vae == "tiny":
        codec = LatentCodec.tiny()
    else:
        codec = LatentCodec.from_pretrained(cfg.vae, revision=cfg.vae_revision)
    if cfg.text_encoder == "tiny":
        text = TextEncoder.tiny()
    else:
        text = TextEncoder.from_pretrained(cfg.text_encoder, revision=cfg.text_encoder_revision)
    return codec, text


class _Encode:
    """Actor stage: loads both encoders once; encodes each bucket group of a batch together."""

    def __init__(self, cfg: CacheConfig):
        import torch

        from jodi.features import DinoFeatures

        self.codec, self.text = load_encoders(cfg)
        self.dino = DinoFeatures.from_pretrained(cfg.dino, cfg.dino_revision) if cfg.dino else None
        self.classes = cfg.classes_from_folders
        self.chunk = max(1, cfg.batch_size)
        self.device = "cuda" if cfg.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        for enc in (self.codec, self.text, self.dino):
            if hasattr(enc, "to"):
                enc.to(self.device)

    def __call__(self, batch: dict) -> pa.Table:
        import torch

        n = len(batch["id"])
        latents: list[bytes] = [b""] * n
        lat_hw = [(0, 0)] * n
        dino: list[bytes | None] = [None] * n
        by_shape: dict[tuple, list[int]] = {}
        for i in range(n):
            by_shape.setdefault(tuple(int(s) for s in batch["shape"][i]), []).append(i)
        with torch.no_grad():
            for shape, rows in by_shape.items():
                d = shape[0]
                z = np.zeros((len(rows), d, 0, 0), np.float32)
                # Only present domains are encoded (absent ones stay zero: [X] tokens are zeroed in the model),
                # at most `batch_size` images per autoencoder call to bound its memory at 1024 px.
                pairs = [(j, k) for j, i in enumerate(rows)
                         for k in np.flatnonzero(np.frombuffer(batch["present"][i], np.uint8))]
                for start in range(0, len(pairs), self.chunk):
                    part = pairs[start : start + self.chunk]
                    pix = np.stack([
                        np.frombuffer(batch["pixels"][rows[j]], np.uint8).reshape(shape)[k] for j, k in part])
                    x = torch.from_numpy(pix).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                    out = self.codec.encode(x).float().cpu().numpy()
                    if z.shape[2] == 0:
                        z = np.zeros((len(rows), d, *out.shape[1:]), np.float32)
                    for (j, k), latent in zip(part, out):
                        z[j, k] = latent
                for j, i in enumerate(rows):
                    latents[i] = z[j].astype(np.float16).tobytes()
                    lat_hw[i] = (z.shape[-2], z.shape[-1])
                if self.dino is not None:  # REPA targets of the image (domain 0), on the latent grid
                    images = np.stack([np.frombuffer(batch["pixels"][i], np.uint8).reshape(shape)[0] for i in rows])
                    for start in range(0, len(rows), self.chunk):
                        feats = self.dino(images[start : start + self.chunk], (z.shape[-2], z.shape[-1]))
                        for i, f in zip(rows[start : start + self.chunk], feats.numpy()):
                            dino[i] = f.astype(np.float16).tobytes()
            texts = [t for ts in batch["caption_texts"] for t in ts]
            embs = self._encode_text(texts) if texts else []
        caption_embs, k = [], 0
        for ts in batch["caption_texts"]:
            caption_embs.append(embs[k : k + len(ts)])
            k += len(ts)
        return pa.table(
            {
                "id": list(batch["id"]),
                "source": list(batch["source"]),
                "bucket": list(batch["bucket"]),
                "latent_h": [h for h, _ in lat_hw],
                "latent_w": [w for _, w in lat_hw],
                "present": list(batch["present"]),
                "latents": latents,
                "caption_models": [list(m) for m in batch["caption_models"]],
                "caption_embs": caption_embs,
                # Ray Data turns an all-None column into float NaNs: read it only when classes were asked for
                "class_name": [str(c) for c in batch["class_name"]] if self.classes else [None] * n,
                "dino": dino,
            },
            schema=LATENT_SCHEMA,
        )

    def _encode_text(self, texts: list[str]) -> list[bytes]:
        emb, mask = self.text.encode(texts)
        emb, mask = emb.float().cpu().numpy(), mask.cpu().numpy().astype(bool)
        return [emb[i][mask[i]].astype(np.float16).tobytes() for i in range(len(texts))]


# ---------------------------------------------------------------- job


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


def _probe_encoders(cfg: CacheConfig) -> dict:
    """Encode "" and one black 32 px image (in a Ray task, so a GPU-only encoder never has to fit on
    the driver): the null caption for dropout/perception, and the channel counts for cache.json."""
    import torch

    codec, text = load_encoders(cfg)
    emb, mask = text.null_embedding()
    with torch.no_grad():
        z = codec.encode(-torch.ones(1, 3, 32, 32))
    emb = emb.reshape(-1, emb.shape[-1]).float().cpu()
    return {"emb": emb.numpy(), "mask": mask.reshape(-1).cpu().numpy(), "latent_channels": int(z.shape[1])}


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
    meta = {"schema_version": LATENT_SCHEMA_VERSION, **asdict(cfg), "domains": list(cache_domains(cfg))}
    old_meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    legacy = {"dino": None, "classes_from_folders": False}  # caches written before these options existed
    for key in ("vae", "text_encoder", "resolution", "domains", "dino", "classes_from_folders"):
        if old_meta and old_meta.get(key, legacy.get(key)) != meta[key]:
            raise ValueError(f"{out} was cached with {key}={old_meta.get(key)!r}, not {meta[key]!r}; use a new output")
    if "latent_channels" in old_meta and (out / NULL_TEXT).exists():
        meta["latent_channels"], meta["text_channels"] = old_meta["latent_channels"], old_meta["text_channels"]
    else:
        probe = ray.get(ray.remote(num_gpus=cfg.num_gpus)(_probe_encoders).remote(cfg))
        meta["latent_channels"], meta["text_channels"] = probe["latent_channels"], int(probe["emb"].shape[-1])
        tensors = {"emb": torch.tensor(probe["emb"]), "mask": torch.tensor(probe["mask"]).to(torch.uint8)}
        save_file(tensors, str(out / NULL_TEXT))
    done = cached_ids(cfg.output)
    ds, ids = _read_input(cfg)
    new = len(set(ids) - done)
    if new:
        if done:
            ds = ds.map_batches(_drop_ids, fn_kwargs={"ids": sorted(done)}, batch_format="pyarrow")
        ds = ds.map(prepare_row, fn_kwargs={"resolution": cfg.resolution, "empty_openpose": cfg.empty_openpose,
                                            "classes_from_folders": cfg.classes_from_folders,
                                            "extra_domains": tuple((n, str(Path(f).resolve()))
                                                                   for n, f in cfg.extra_domains)})
        ds = ds.map_batches(
            _Encode,
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

