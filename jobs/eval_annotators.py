"""`jodi eval-annotators`: score annotators against the reference labels of a dataset.

    jodi eval-annotators --dataset data/nyu --split test --annotator depth_anything_v2_large --output out/ann
    jodi eval-annotators --dataset D --annotator hed --annotator pidinet --limit 50

Thin: parse arguments, build the annotators, call `jodi.eval.annotators.evaluate_annotators` (which labels
the dataset's images and scores the labels against real ground truth or the dataset's own labels). Writes
eval.json and eval.md.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="Joint folder or Parquet dataset with reference labels")
    parser.add_argument("--split", default="all", help="split name; 'all' = every split")
    parser.add_argument("--annotator", action="append", required=True, help="registry name; repeatable")
    parser.add_argument("--override", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="preset field for one annotator, e.g. depth_anything_v2_small:model_id=/models/da2")
    parser.add_argument("--output", default="out/eval_annotators")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--short-side", type=int, default=512,
                        help="score at this short side (image and labels resized; real ground truth keeps "
                        "its size); 0 = the stored size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lpips-backbone", choices=("pretrained", "random", "none"), default="none",
                        help="LPIPS for albedo/openpose (needs torchvision weights)")
    parser.add_argument("--depth-gt-kind", choices=("depth", "disparity"), default="disparity",
                        help="what real depth ground truth files hold")
    parser.add_argument("--depth-align", choices=("depth", "disparity"), default="disparity")


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """["name:key=value", ...] -> {name: {key: value}}; values are JSON where they parse (numbers, true)."""
    from jobs.cli import UsageError

    out: dict[str, dict] = {}
    for item in items:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if not name or not key:
            raise UsageError(f"--override {item!r}: expected NAME:KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(name, {})[key] = parsed
    return out


def run(args: argparse.Namespace) -> int:
    from annotators.registry import build
    from jodi.eval.annotators import evaluate_annotators, markdown
    from jodi.eval.depth import DepthEvalConfig
    from jodi.eval.metrics import MetricsConfig

    metrics = MetricsConfig(
        depth=DepthEvalConfig(pred_kind="disparity", gt_kind=args.depth_gt_kind, align_space=args.depth_align),
        lpips_backbone=args.lpips_backbone,
    )
    overrides = parse_overrides(args.override)
    annotators = {name: build(name, device=args.device, **overrides.get(name, {})) for name in args.annotator}
    split = None if args.split == "all" else args.split
    report = evaluate_annotators(annotators, args.dataset, split, metrics, args.output, args.limit, args.short_side)
    print(markdown(report), end="")
    print(f"eval-annotators: {report['images']} images -> {args.output}/eval.json, eval.md")
    return 0
