"""`jodi cache-latents INPUT OUTPUT`: encode a labeled dataset once for training (jodi/latents/).

INPUT is a label job output (its data/*.parquet) or a Joint folder (metadata.jsonl). Rerunning on the
same OUTPUT encodes only records not cached yet.
"""

from __future__ import annotations

import argparse
import json
import sys

from jodi.features import DINO_ID
from jodi.latents import CacheConfig, run_cache_job


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = CacheConfig(input="", output="")
    p.add_argument("input", help="label job output folder or Joint folder")
    p.add_argument("output", help="latent cache folder")
    p.add_argument("--vae", default=defaults.vae, help="DC-AE hub id or folder ('tiny' = random test stand-in)")
    p.add_argument("--vae-revision", default=defaults.vae_revision)
    p.add_argument("--text-encoder", default=defaults.text_encoder, help="Gemma-2 hub id or folder ('tiny')")
    p.add_argument("--text-encoder-revision", default=defaults.text_encoder_revision)
    p.add_argument("--resolution", type=int, default=defaults.resolution, help="bucket base size (1024 = paper)")
    p.add_argument("--no-empty-openpose", action="store_true",
                   help="treat a missing openpose as absent instead of a black 'no person' label")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--concurrency", type=int, default=defaults.concurrency, help="encoder actors")
    p.add_argument("--gpus", type=float, default=defaults.num_gpus, help="GPUs per encoder actor")
    p.add_argument("--classes-from-folders", action="store_true",
                   help="class label = folder holding each source image (ImageNet layout), for class-conditioned MMGen")
    p.add_argument("--dino", nargs="?", const=DINO_ID, default=None, metavar="MODEL",
                   help=f"cache DINOv2 patch features for REPA (default model {DINO_ID}; or a local folder)")
    p.add_argument("--dino-revision", default=defaults.dino_revision)
    p.add_argument("--extra-domain", action="append", default=[], metavar="NAME=FOLDER",
                   help="a label domain kept outside the dataset: FOLDER holds <id>.png|.jpg labels; repeatable "
                        "(domains `jodi label` wrote are cached without it)")


def build_config(args: argparse.Namespace) -> CacheConfig:
    return CacheConfig(
        input=args.input, output=args.output, vae=args.vae, vae_revision=args.vae_revision,
        text_encoder=args.text_encoder, text_encoder_revision=args.text_encoder_revision,
        resolution=args.resolution, empty_openpose=not args.no_empty_openpose, batch_size=args.batch_size,
        concurrency=args.concurrency, num_gpus=args.gpus, classes_from_folders=args.classes_from_folders,
        dino=args.dino, dino_revision=args.dino_revision, extra_domains=tuple(_pair(x) for x in args.extra_domain),
    )


def _pair(spec: str) -> tuple[str, str]:
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise SystemExit(f"--extra-domain expects NAME=FOLDER, got {spec!r}")
    return name, folder


def run(args: argparse.Namespace) -> int:
    print(json.dumps(run_cache_job(build_config(args))))
    return 0


if __name__ == "__main__":  # the same errors and exit codes as `jodi cache-latents`
    from jobs.cli import main

    sys.exit(main(["cache-latents", *sys.argv[1:]]))
