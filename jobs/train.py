"""`jodi train --config train.yaml` (and `python -m jobs.train ...` for `ray job submit`).

Thin: read the YAML file, apply command-line overrides, build a TrainConfig, call `jodi.train.train`.
See examples/train.yaml for every key.
"""

from __future__ import annotations

import argparse
import json
import sys

from jodi.train.config import DataSource, NewDomain, TrainConfig

_TUPLES = ("betas",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (see examples/train.yaml)")
    p.add_argument("--data", action="append", default=[], metavar="CACHE",
                   help="a latent cache folder (replaces the YAML `data`); repeatable")
    p.add_argument("--output", help="storage path for checkpoints and metrics (folder or URI)")
    p.add_argument("--run-name")
    p.add_argument("--preset", help="model preset: jodi_1600m, jodi_600m, tiny, tiny_2 (Jodi) or mmgen_1600m, "
                   "mmgen_600m, mmgen_tiny (grouped tokens, MMGen recipe)")
    p.add_argument("--timesteps", choices=("shared", "per_domain"), help="per_domain = modality decoupling")
    p.add_argument("--modality-dropout", type=float)
    p.add_argument("--repa-weight", type=float, help="REPA loss weight (needs a cache made with --dino)")
    p.add_argument("--lora-rank", type=int, help="LoRA rank (0 = full fine-tuning)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int, help="per worker")
    p.add_argument("--lr", type=float)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--strategy", choices=("ddp", "fsdp"))
    p.add_argument("--resume-from", help="a checkpoint folder to start from (same-name runs resume on their own)")


def build_config(args: argparse.Namespace) -> TrainConfig:
    import yaml

    with open(args.config, encoding="utf-8") as f:
        data: dict = yaml.safe_load(f) or {}
    if args.data:
        data["data"] = [{"path": p} for p in args.data]
    for key in ("output", "run_name", "preset", "max_steps", "batch_size", "lr", "num_workers", "use_gpu",
                "strategy", "resume_from", "timesteps", "modality_dropout", "repa_weight", "lora_rank"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    return config_from_dict(data)


def config_from_dict(data: dict) -> TrainConfig:
    """YAML mapping -> TrainConfig. `data` entries are a path or {path, caption_weights: {model: w}};
    `new_domains` entries are {name, copy_from}. Unknown keys are an error."""
    data = dict(data)
    sources = []
    for item in data.pop("data", None) or []:
        item = {"path": item} if isinstance(item, str) else dict(item)
        weights = tuple((str(k), float(v)) for k, v in (item.get("caption_weights") or {}).items())
        sources.append(DataSource(path=str(item["path"]), caption_weights=weights))
    data["data"] = tuple(sources)
    data["new_domains"] = tuple(NewDomain(**d) for d in data.pop("new_domains", None) or [])
    for key in _TUPLES:
        if key in data:
            data[key] = tuple(data[key])
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        from jobs.cli import UsageError

        raise UsageError(f"unknown training config keys {unknown}; known: {', '.join(sorted(known))}")
    return TrainConfig(**data)


def run(args: argparse.Namespace) -> int:
    from jodi.train.runner import train

    cfg = build_config(args)
    result = train(cfg)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # `ray job submit -- python -m jobs.train`: the errors and exit codes of `jodi train`
    from jobs.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
