"""`jodi generate`: run a Jodi model for joint generation, controllable generation or perception.

    jodi generate --prompt "a red house by a lake" --out out/joint                      # text -> image + all labels
    jodi generate --prompt "a cat" --condition depth=d.png --condition edge=e.jpg --out out/ctrl
    jodi generate --perceive photo.jpg --labels depth,normal --out out/perception        # image -> labels
    jodi generate --weights runs/x/checkpoint_1000/model.safetensors --class-label 3 --out out/cls  # class model
    jodi generate --tiny --prompt "smoke test" --steps 2 --out out/tiny                  # random tiny model, offline

Each output domain is written as `<out>/<domain>.png` in the Joint-1.6M encoding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jodi.codecs import TEXT_ID, VAE_ID
    from jodi.mmgen import MMGEN_PRESETS
    from jodi.model import PRESETS
    from jodi.pipeline import JODI_WEIGHTS
    from jodi.sampling import SOLVERS

    parser.add_argument("--prompt", default="", help="caption (ignored for perception)")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--class-label", type=int, metavar="N",
                        help="class id for a class-conditioned model (instead of --prompt); omitted = unconditional")
    parser.add_argument("--condition", action="append", default=[], metavar="DOMAIN=PATH",
                        help="a label (or the image) to condition on; repeatable")
    parser.add_argument("--perceive", metavar="IMAGE", help="perception: predict labels of this image, no text")
    parser.add_argument("--labels", help="comma-separated domains to generate (default: all not given)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--steps", type=int, help="sampling steps (default 20; 10 for perception)")
    parser.add_argument("--guidance", type=float, help="CFG scale (default 4.5; 1.0 for perception)")
    parser.add_argument("--solver", choices=SOLVERS, default="dpm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted({**PRESETS, **MMGEN_PRESETS}), default="jodi_1600m",
                        help="model preset (a trainer checkpoint's model.json overrides it)")
    parser.add_argument("--weights", default=JODI_WEIGHTS, help="Jodi .pth/.safetensors, local or hf://org/repo/file")
    parser.add_argument("--vae", default=VAE_ID, help="DC-AE hub id, local folder or 'tiny'")
    parser.add_argument("--text-encoder", default=TEXT_ID, help="Gemma-2 hub id, local folder or 'tiny'")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--lora", metavar="ADAPTER",
                        help="LoRA adapter (.safetensors from `jodi train`) onto --weights")
    parser.add_argument("--merge-lora", action="store_true", help="fold the adapter into the weights before sampling")
    parser.add_argument("--tiny", action="store_true", help="random tiny model and encoders (offline smoke test)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _read(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from jobs.cli import UsageError
    from jodi.pipeline import JodiPipeline
    from jodi.sampling import PERCEPTION, SamplerConfig

    conditions = {}
    for spec in args.condition:
        domain, sep, path = spec.partition("=")
        if not sep:
            raise UsageError(f"--condition expects DOMAIN=PATH, got {spec!r}")
        conditions[domain] = _read(path)
    labels = [d.strip() for d in args.labels.split(",")] if args.labels else None
    base = PERCEPTION if args.perceive else SamplerConfig()
    sampler = SamplerConfig(
        steps=args.steps or base.steps,
        guidance_scale=base.guidance_scale if args.guidance is None else args.guidance,
        solver=args.solver,
    )
    if args.tiny:
        pipe = JodiPipeline.tiny(preset="tiny" if args.preset.startswith("jodi") else args.preset)
    else:  # missing or unsafe weights: one line from jobs.cli
        pipe = JodiPipeline.from_pretrained(args.weights, args.preset, vae=args.vae, text_encoder=args.text_encoder,
                                            device=args.device, dtype=getattr(torch, args.dtype),
                                            lora=args.lora, merge_lora=args.merge_lora)
    size = {"height": args.height, "width": args.width}
    if args.perceive:
        outputs = pipe.perceive(_read(args.perceive), labels, sampler=sampler, seed=args.seed, **size)
    else:
        outputs = pipe(args.prompt, conditions, labels, sampler=sampler, seed=args.seed,
                       negative_prompt=args.negative_prompt, class_label=args.class_label, **size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for domain, array in outputs.items():
        Image.fromarray(array).save(out / f"{domain}.png")
    print(f"wrote {', '.join(sorted(outputs))} to {out}")
    return 0
