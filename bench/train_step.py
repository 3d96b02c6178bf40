"""Training-step throughput of the tiny preset on CPU, with and without the latent cache.

    .venv/bin/python bench/train_step.py [--steps 20] [--batch-size 4] [--resolution 128] [--threads 1]

With the cache a step is: collate cached latents + text embeddings -> forward/backward/AdamW.
Without it, every step also decodes the JPEGs, resizes them to the bucket, runs the autoencoder on every
domain and the text encoder on the captions (what `jodi cache-latents` does once). Both use the real
stages of jodi/latents/ and jodi/train/loop.py with the tiny random DC-AE / Gemma-2 stand-ins, so the
ratio here understates the real one: DC-AE f32c32 and Gemma-2-2b cost far more than the tiny stand-ins.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from jodi.latents import CacheConfig, EncodeLatents, prepare_row  # noqa: E402
from jodi.train.ckpt import build_initial_model  # noqa: E402
from jodi.train.config import DataSource, TrainConfig  # noqa: E402
from jodi.train.data import Collator, _pad_tokens  # noqa: E402
from jodi.train.loop import build_optimizer, build_scheduler, train_step  # noqa: E402
from schemas.domains import CAPTION, LABEL_DOMAINS, annotation_key  # noqa: E402


def _records(n: int, size: int) -> list[dict]:
    """n labeled records (image + lineart + edge as JPEG bytes) of one aspect ratio from real photographs."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((size, size))
    out = []
    for i in range(n):
        buf = io.BytesIO()
        photo.rotate(i * 7).save(buf, format="JPEG", quality=95)
        row = {"id": f"r{i}", "source": "bench", "height": size, "width": size, "image": buf.getvalue(),
               CAPTION: [{"model": "BLIP2-OPT-2.7b", "text": "an astronaut in a white suit holding a helmet"}]}
        for d in LABEL_DOMAINS:
            row[annotation_key(d)] = buf.getvalue() if d in ("lineart", "edge") else None
        out.append(row)
    return out


def _columns(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache_cfg = CacheConfig(input="", output="", vae="tiny", text_encoder="tiny", resolution=args.resolution)
    encoder = EncodeLatents(cache_cfg)
    records = _records(args.batch_size, args.resolution)
    prepared = [prepare_row(r, args.resolution, True) for r in records]
    cached = encoder(_columns(prepared)).to_pylist()
    null_emb, null_mask = encoder.text.null_embedding()
    cfg = TrainConfig(data=(DataSource("bench"),), preset="tiny", batch_size=args.batch_size, gradient_checkpointing=False)
    collator = Collator(latent_channels=32, text_channels=encoder.text.channels, max_tokens=16, caption_weights=({},),
                        null_text=_pad_tokens(null_emb[0][null_mask[0].bool()].numpy(), 16), caption_dropout=0.1)

    def run(with_cache: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build_initial_model(cfg)
        opt = build_optimizer(cfg, model.parameters())
        sched = build_scheduler(cfg, opt)
        rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
        tokens = 0
        for step in range(args.steps + 2):
            if step == 2:  # two warm-up steps (allocator, first-call overheads) are not timed
                start, tokens = time.perf_counter(), 0
            if with_cache:
                rows = cached
            else:
                rows = encoder(_columns([prepare_row(r, args.resolution, True) for r in records])).to_pylist()
            batch = collator(rows, rng)
            train_step(model, opt, sched, batch, gen, cfg)
            tokens += batch.x0[:, :, 0].numel()
        seconds = time.perf_counter() - start
        return args.steps * args.batch_size / seconds, tokens / seconds

    hw = cached[0]["latent_h"], cached[0]["latent_w"]
    print(f"tiny preset, CPU ({args.threads} thread), batch {args.batch_size}, {args.resolution} px "
          f"(latent {hw[0]}x{hw[1]}, 8 domains), {args.steps} steps")
    results = {}
    for name, flag in (("with latent cache", True), ("without cache (encode every step)", False)):
        sps, tps = run(flag)
        results[flag] = sps
        print(f"  {name:36s} {sps:8.2f} samples/s {tps:10.0f} tokens/s")
    print(f"  speed-up from the cache: {results[True] / results[False]:.2f}x")


if __name__ == "__main__":
    main()
