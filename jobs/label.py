"""`jodi label INPUT OUTPUT --annotators depth,edge,...` and `python -m jobs.label ...` (for `ray job submit`).

Thin: parse arguments (and an optional YAML job file), build a LabelJobConfig, run it.
Command-line flags override the YAML file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.config import ConfigError, LabelJobConfig, config_from_mapping


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        help="image folder or bucket prefix (e.g. s3://bucket/dir; sidecar photo.txt/photo.json captions are kept), "
        "a .txt list of image paths, WebDataset .tar shards (img2dataset layout), Parquet files, "
        "hf://datasets/<name>[@revision], or a datasets.save_to_disk folder",
    )
    p.add_argument(
        "output",
        help="output folder or URI (s3://bucket/prefix, gs://...; credentials from the standard AWS_* / "
        "GOOGLE_APPLICATION_CREDENTIALS environment)",
    )
    p.add_argument(
        "--annotators",
        "-a",
        default=None,
        help="comma list of annotator names or domains (a domain picks its Joint-1.6M default)",
    )
    p.add_argument("--suite", help="a named suite instead of --annotators: joint, permissive (weights that allow "
                   "commercial use), offline; see docs/annotators-licences.md")
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
    p.add_argument(
        "--caption-key",
        "--hf-caption-key",
        dest="caption_key",
        help="caption key of the input's own captions (dataset column, tar key.txt, sidecar files; default: source)",
    )
    p.add_argument("--no-sidecar-captions", action="store_true", help="ignore photo.txt / photo.json beside images")
    p.add_argument("--allow-animated", action="store_true", help="label frame 0 of animated images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--takeover",
        action="store_true",
        help="take over the output's lease from another job (only when that job is dead)",
    )
    p.add_argument("--wait-for-resources", type=float, metavar="SECONDS", default=_default_wait(),
                   help="on a cluster, how long to wait for the autoscaler to add missing GPUs/CPUs before giving "
                   "up (default: 600 with RAY_ADDRESS set, else 0: a local machine does not grow)")

    p.add_argument("--plan", action="store_true",
                   help="calibrate each annotator on a few input images, print images/s, cost shares, projected "
                   "hours and a balanced actor/GPU split, write it as a job YAML; labels nothing")
    p.add_argument("--plan-images", type=int, default=4, help="input images to calibrate on (with --plan)")
    p.add_argument("--plan-yaml", default="label_plan.yaml", help="where --plan writes the job file")

def _default_wait() -> float:
    import os

    return 600.0 if os.environ.get("RAY_ADDRESS") else 0.0


def build_config(args: argparse.Namespace) -> LabelJobConfig:
    """YAML job file, then command-line flags on top -> a validated LabelJobConfig (ConfigError names
    the wrong field). Values keep their YAML types so the config's checks see what the user wrote."""
    data: dict = {}
    if args.config:
        data = _read_yaml(args.config)
    data["input"], data["output"] = args.input, args.output
    if args.annotators:
        data["annotators"] = [a.strip() for a in args.annotators.split(",") if a.strip()]
    if getattr(args, "suite", None):
        from annotators.registry import suite

        try:
            data["annotators"] = [*data.get("annotators", []), *suite(args.suite)]
        except KeyError as exc:
            raise SystemExit(f"jodi label: {exc.args[0]}") from None
    for flag, key in (
        ("min_short_side", "min_short_side"),
        ("target_short_side", "target_short_side"),
        ("shard_size", "shard_size"),
        ("hf_split", "hf_split"),
        ("hf_image_column", "hf_image_column"),
        ("hf_caption_column", "hf_caption_column"),
        ("caption_key", "caption_key"),
        ("dtype", "dtype"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.no_joint:
        data["write_joint"] = False
    if args.allow_animated:
        data["allow_animated"] = True
    if args.no_sidecar_captions:
        data["sidecar_captions"] = False
    if "hf_caption_key" in data:  # the former name of caption_key in job files
        data.setdefault("caption_key", data.pop("hf_caption_key"))
    overrides = data.get("overrides") or {}
    if isinstance(overrides, dict):
        overrides = {k: dict(v) if isinstance(v, dict) else v for k, v in overrides.items()}
        for item in args.model:
            name, _, path = item.partition("=")
            if not name or not path:
                raise ConfigError(f"--model expects NAME=PATH, got {item!r}")
            entry = overrides.setdefault(name, {})
            if isinstance(entry, dict):
                entry["model_id"] = path
                entry.setdefault("revision", None)
    data["overrides"] = overrides
    cli = {k: v for k, v in (("num_gpus", args.gpus), ("batch_size", args.batch_size), ("pool_max", args.pool))
           if v is not None}
    default = data.get("default_resources") or {}
    if isinstance(default, dict):
        data["default_resources"] = default = {**default, **cli}
    base = default if isinstance(default, dict) else {}  # a wrong type is left for the config check to name
    resources = data.get("resources") or {}
    if isinstance(resources, dict):  # per-annotator entries start from the defaults
        data["resources"] = {k: {**base, **v} if isinstance(v, dict) else v for k, v in resources.items()}
    colocate = data.get("colocate") or []
    if isinstance(colocate, list):
        data["colocate"] = [*colocate, *(c.split("+") for c in args.colocate)]
    return config_from_mapping(data)


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--config {path}:{where} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of job settings, got {type(data).__name__}")
    return data


def run(args: argparse.Namespace) -> int:
    """Build and check the job (a usage error exits 2 before Ray starts or a file is written), run it;
    exit 1 when it labeled nothing. Errors become one line in jobs.cli."""
    from pipeline.job import run_label_job
    from pipeline.preflight import preflight

    cfg = build_config(args)
    preflight(cfg, wait_s=args.wait_for_resources)
    if args.plan:
        return plan(cfg, args.plan_images, args.plan_yaml)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from annotators.registry import licence_notice

    if notice := licence_notice(cfg.annotators):
        print(notice)
    stats = run_label_job(cfg, progress=not args.quiet, takeover=args.takeover)
    print(summary(cfg.output, stats))
    if stats["records_out"] == 0:
        reasons = ", ".join(f"{k} {v}" for k, v in stats["errors_by_reason"].items()) or "no inputs"
        print(f"jodi label: labeled none of {stats['records_in']} inputs ({reasons}; see {cfg.output}/errors/)",
              file=sys.stderr)
        return 1
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
    """`python -m jobs.label ...` (for `ray job submit`): the same command, errors and exit codes as `jodi label`."""
    from jobs.cli import main as jodi

    return jodi(["label", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
