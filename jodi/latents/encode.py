"""The GPU side of the cache job: an actor that loads DC-AE and Gemma (and DINOv2 when asked) once and
encodes prepared rows (`jodi.latents.rows.prepare_row`) into LATENT_SCHEMA rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jodi.latents.schema import LATENT_SCHEMA, CacheConfig


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


class EncodeLatents:
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


def probe_encoders(cfg: CacheConfig) -> dict:
    """Encode "" and one black 32 px image (in a Ray task, so a GPU-only encoder never has to fit on
    the driver): the null caption for dropout/perception, and the channel counts for cache.json."""
    import torch

    codec, text = load_encoders(cfg)
    emb, mask = text.null_embedding()
    with torch.no_grad():
        z = codec.encode(-torch.ones(1, 3, 32, 32))
    emb = emb.reshape(-1, emb.shape[-1]).float().cpu()
    return {"emb": emb.numpy(), "mask": mask.reshape(-1).cpu().numpy(), "latent_channels": int(z.shape[1])}


