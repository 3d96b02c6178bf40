"""`jodi label INPUT OUTPUT --annotators depth,edge,...` and `python -m jobs.label ...` (for `ray job submit`).

Thin: parse arguments (and an optional YAML job file), build a LabelJobConfig, run it.
Command-line flags override the YAML file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from pipeline.config import LabelJobConfig, StageResources


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        help="image folder (local or fsspec URI, e.g. s3://bucket/dir), a .txt list of paths, "
        "hf://datasets/<name>, or a datasets.save_to_disk folder",
    )
    p.add_argument("output", help="output folder (Joint layout + Parquet shards)")
    p.add_argument(
        "--annotators",
        "-a",
        default=None,
        help="comma list of annotator names or domains (a domain picks its Joint-1.6M default)",
    )
    p.add_argument("--config", help="YAML job file (annotators, resources, overrides, colocate, sizes)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use local weights for an annotator (a folder or hub id); repeatable",
    )
    p.add_argument("--min-short-side", type=int)
    p.add_argument("--target-short-side", type=int)
    p.add_argument("--shard-size", type=int)
    p.add_argument("--gpus", type=float, help="GPUs per annotator actor (fractional allowed), all stages")
    p.add_argument("--batch-size", type=int, help="batch size of every annotator stage")
    p.add_argument("--pool", type=int, help="max actors per annotator stage")
    p.add_argument(
        "--colocate",
        action="append",
        default=[],
        metavar="A+B",
        help="run these annotators in one actor (e.g. pidinet+informative_drawings); repeatable",
    )
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                   help="every annotator's compute dtype (auto: bf16 autocast on GPU, fp32 on CPU; bfloat16 is "
                   "also fast on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--no-joint", action="store_true", help="write Parquet shards only")
    p.add_argument("--hf-split", help="split of a Hugging Face dataset input (default train)")
    p.add_argument("--hf-image-column")
    p.add_argument("--hf-caption-column", help="keep this column as a caption (alt text)")
    p.add_argument("--hf-caption-key", help="caption key for --hf-caption-column (default: source)")
    p.add_argument("--allow-animated", action="store_true", help="label frame 0 of animated images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--plan", action="store_true",
                   help="calibrate each annotator on a few input images, print images/s, cost shares, projected "
                   "hours and a balanced actor/GPU split, write it as a job YAML; labels nothing")
    p.add_argument("--plan-images", type=int, default=4, help="input images to calibrate on (with --plan)")
    p.add_argument("--plan-yaml", default="label_plan.yaml", help="where --plan writes the job file")


def build_config(args: argparse.Namespace) -> LabelJobConfig:
    data: dict = {}
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    data["input"], data["output"] = args.input, args.output
    if args.annotators:
        data["annotators"] = [a.strip() for a in args.annotators.split(",") if a.strip()]
    for flag, key in (
        ("min_short_side", "min_short_side"),
        ("target_short_side", "target_short_side"),
        ("shard_size", "shard_size"),
        ("hf_split", "hf_split"),
        ("hf_image_column", "hf_image_column"),
        ("hf_caption_column", "hf_caption_column"),
        ("hf_caption_key", "hf_caption_key"),
        ("dtype", "dtype"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.no_joint:
        data["write_joint"] = False
    if args.allow_animated:
        data["allow_animated"] = True
    overrides = {k: dict(v) for k, v in (data.get("overrides") or {}).items()}
    for item in args.model:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--model expects NAME=PATH, got {item!r}")
        overrides.setdefault(name, {})["model_id"] = path
        overrides[name].setdefault("revision", None)
    data["overrides"] = overrides
    default = StageResources(**(data.pop("default_resources", None) or {}))
    cli = {
        k: v
        for k, v in (("num_gpus", args.gpus), ("batch_size", args.batch_size), ("pool_max", args.pool))
        if v is not None
    }
    default = dataclasses.replace(default, **cli)
    data["default_resources"] = default
    data["resources"] = {k: dataclasses.replace(default, **v) for k, v in (data.get("resources") or {}).items()}
    colocate = [tuple(g) for g in data.get("colocate") or []] + [tuple(c.split("+")) for c in args.colocate]
    data["colocate"] = tuple(colocate)
    data["annotators"] = tuple(data.get("annotators") or LabelJobConfig.annotators)
    known = {f.name for f in dataclasses.fields(LabelJobConfig)}
    unknown = set(data) - known
    if unknown:
        raise SystemExit(f"unknown job settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return LabelJobConfig(**data)


def run(args: argparse.Namespace) -> int:
    from annotators.loading import ModelUnavailableError
    from pipeline.job import JobConfigError, run_label_job
    from pipeline.plan import PlanError
    from pipeline.sources import InputError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = build_config(args)
    try:
        if args.plan:
            return plan(cfg, args.plan_images, args.plan_yaml)
        stats = run_label_job(cfg, progress=not args.quiet)
    except (InputError, JobConfigError, KeyError, ModelUnavailableError, PlanError) as exc:
        print(f"jodi label: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(summary(cfg.output, stats))
    return 0


def plan(cfg: LabelJobConfig, images: int, yaml_path: str) -> int:
    from pipeline.plan import plan_label_job, report

    result, job_file = plan_label_job(cfg, images)
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write(job_file)
    print(f"{report(result)}\n  job file: {yaml_path} (run: jodi label INPUT OUTPUT --config {yaml_path})")
    return 0


def summary(output: str, stats: dict) -> str:
    run_ = stats["this_run"]
    lines = [
        f"labeled {stats['records_out']} of {stats['records_in']} inputs into {output}",
        f"  labels per domain: {json.dumps(stats['per_domain'])}",
    ]
    if stats["captions"]:
        lines.append(f"  captions: {json.dumps(stats['captions'])}")
    lines.append(f"  errors: {stats['errors']} {json.dumps(stats['errors_by_reason'])}  (see {output}/errors/)")
    lines.append(
        f"  this run: {run_['processed']} processed, {run_['skipped_finished']} already done, "
        f"{run_['wall_seconds']} s, {run_['images_per_second']} images/s"
    )
    lines.append(f"  Joint layout: {output}/metadata.jsonl   Parquet: {output}/data/   preview: {output}/preview.png")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.label", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
