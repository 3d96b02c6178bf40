"""`jodi eval-annotators`: score annotators against the reference labels of a dataset.

    jodi eval-annotators --dataset data/nyu --split test --annotator depth_anything_v2_large --output out/ann
    jodi eval-annotators --dataset D --annotator hed --annotator pidinet --limit 50

Each annotator labels the dataset's images; its output is encoded as Joint stores it (`encode_label`) and
scored with the metrics of its domain (jodi.eval.metrics) against real ground truth where the dataset
provides it (`ground_truth_<domain>` files, e.g. real disparity), else against the dataset's labels. It
answers "how good are the labels this annotator would put in the dataset". Writes eval.json and eval.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


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
    out: dict[str, dict] = {}
    for item in items:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if not name or not key:
            raise ValueError(f"--override {item!r}: expected NAME:KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(name, {})[key] = parsed
    return out


def score_annotator(ann, items, metrics, lpips=None, short_side: int = 0) -> dict:
    """Label every item that has a reference for the annotator's domain; return the domain summary with the
    reference kind(s) and seconds spent annotating."""
    from jodi.eval.metrics import resize_to, score, summarize
    from jodi.eval.runner import metrics_for_reference, resize_short
    from schemas.encoding import encode_label

    domain, stats, kinds, seconds = ann.domain, [], set(), 0.0
    for item in items:
        ref = item.reference(domain)
        if ref is None:
            continue
        array, decoded, kind = ref
        image = resize_short(item.image, short_side)
        array = array if decoded else resize_to(domain, array, image.shape[:2])
        start = time.perf_counter()
        label = ann.annotate([image])[0]
        seconds += time.perf_counter() - start
        if label is None or isinstance(label, Exception):
            continue
        pred = encode_label(domain, label)
        stats.append(score(domain, pred, array, metrics_for_reference(metrics, decoded), lpips, ref_decoded=decoded))
        kinds.add(kind)
    summary = summarize(domain, stats, metrics)
    return {"domain": domain, "reference": " + ".join(sorted(kinds)) or "none",
            "annotate_seconds": round(seconds, 3), **summary}


def markdown(report: dict) -> str:
    from jodi.eval.metrics import headline

    lines = ["# Annotator quality", "", f"- dataset: `{report['dataset']}` (split {report['split']})", "",
             "| annotator | domain | reference | metrics |", "|---|---|---|---|"]
    for name, s in report["annotators"].items():
        cells = ", ".join(f"{k} {v:.4g}" for k, v in headline(s["domain"], s).items() if isinstance(v, float))
        lines.append(f"| {name} | {s['domain']} | {s['reference']} | {cells or 'no scored image'} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from annotators.registry import build
    from jodi.eval.data import read_split
    from jodi.eval.depth import DepthEvalConfig
    from jodi.eval.metrics import MetricsConfig, build_lpips
    from jodi.eval.runner import json_safe

    metrics = MetricsConfig(
        depth=DepthEvalConfig(pred_kind="disparity", gt_kind=args.depth_gt_kind, align_space=args.depth_align),
        lpips_backbone=args.lpips_backbone,
    )
    overrides = parse_overrides(args.override)
    annotators = {name: build(name, device=args.device, **overrides.get(name, {})) for name in args.annotator}
    domains = tuple({a.domain for a in annotators.values()})
    items = list(read_split(args.dataset, None if args.split == "all" else args.split, args.limit, domains))
    lpips = build_lpips(metrics)
    scores = {name: score_annotator(a, items, metrics, lpips, args.short_side) for name, a in annotators.items()}
    report = {"dataset": args.dataset, "split": args.split, "images": len(items), "annotators": scores}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))
    (out / "eval.md").write_text(markdown(report))
    print(markdown(report), end="")
    print(f"eval-annotators: {len(items)} images -> {out}/eval.json, eval.md")
    return 0
