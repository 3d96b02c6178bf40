"""Annotator quality: label a dataset's images with an annotator and score its labels, encoded exactly as
Joint stores them (`encode_label`), with the metrics of its domain against real ground truth where the
dataset provides it (`ground_truth_<domain>` files) or else against the dataset's own labels.

It answers "how good are the labels this annotator would put in the dataset" (`jodi eval-annotators`).
Annotators come in built (anything with `.domain` and `.annotate(images) -> labels`), so this module
needs no registry and keeps `jodi` importing only `schemas` of ours.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jodi.eval.data import EvalItem, read_split
from jodi.eval.metrics import MetricsConfig, build_lpips, headline, resize_to, score, summarize
from jodi.eval.runner import json_safe, metrics_for_reference, resize_short
from schemas.encoding import encode_label


def score_annotator(ann, items: list[EvalItem], metrics: MetricsConfig, lpips=None, short_side: int = 0) -> dict:
    """Label every item that has a reference for the annotator's domain; return the domain summary with the
    reference kind(s) and seconds spent annotating."""
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


def evaluate_annotators(annotators: dict, dataset: str | Path, split: str | None, metrics: MetricsConfig,
                        output: str | Path, limit: int | None = None, short_side: int = 0) -> dict:
    """Score each named annotator on a dataset split (None = every split); write `output`/eval.json and
    eval.md; return the report."""
    domains = tuple({a.domain for a in annotators.values()})
    items = list(read_split(dataset, split, limit, domains))
    lpips = build_lpips(metrics)
    scores = {name: score_annotator(a, items, metrics, lpips, short_side) for name, a in annotators.items()}
    report = {"dataset": str(dataset), "split": split or "all", "images": len(items), "annotators": scores}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))
    (out / "eval.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = ["# Annotator quality", "", f"- dataset: `{report['dataset']}` (split {report['split']})", "",
             "| annotator | domain | reference | metrics |", "|---|---|---|---|"]
    for name, s in report["annotators"].items():
        cells = ", ".join(f"{k} {v:.4g}" for k, v in headline(s["domain"], s).items() if isinstance(v, float))
        lines.append(f"| {name} | {s['domain']} | {s['reference']} | {cells or 'no scored image'} |")
    return "\n".join(lines) + "\n"
