"""`jodi e2e`: label a folder -> cache latents -> train N steps -> evaluate -> report, in one command.

    jodi e2e --output out/e2e                         # bundled sample photos, offline annotators, tiny model
    jodi e2e --input photos/ --annotators hed,lineart_standard --steps 200 --output out/e2e

The train-after-label smoke path to run before spending GPU hours: it checks that the labels a job writes can
be cached, trained on and evaluated, with the same code the big runs use (the label job on Ray Data, the
latent cache job, the trainer's loop, `jodi eval`'s runner). Defaults fit a 2-core CPU in a few minutes: short
side 64, the tiny model preset and the tiny random DC-AE / Gemma stand-ins. A deterministic quarter of the
records (by id) is held out as the test split. Writes OUT/report.md (+ report.json) with the label stats, the
loss curve, the evaluation table and its picture grid.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="folder of images (default: the bundled sample photographs)")
    parser.add_argument("--output", default="out/e2e")
    parser.add_argument("--annotators", default="", help="comma-separated (default: the offline ones, one per domain)")
    parser.add_argument("--short-side", type=int, default=64, help="labeled image short side (and training resolution)")
    parser.add_argument("--steps", type=int, default=30, help="training steps")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="higher than fine-tuning's 1e-4: a tiny model trained from scratch")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--vae", default="tiny", help="'tiny' or a DC-AE hub id / folder")
    parser.add_argument("--text-encoder", default="tiny", help="'tiny' or a Gemma-2 hub id / folder")
    parser.add_argument("--eval-steps", type=int, default=4, help="perception sampling steps in the evaluation")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--ray-train", action="store_true", help="train through Ray Train (default: in this process)")
    parser.add_argument("--lpips-backbone", choices=("pretrained", "random", "none"), default="none")
    parser.add_argument("--seed", type=int, default=0)


def _annotators(text: str) -> tuple[str, ...]:
    if text:
        return tuple(a.strip() for a in text.split(",") if a.strip())
    from annotators.registry import OFFLINE_DEFAULTS
    from jobs.demo import one_per_domain  # the demo's choice: one offline annotator per domain

    return one_per_domain(OFFLINE_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    from jobs.demo import write_corpus
    from pipeline.config import LabelJobConfig
    from pipeline.job import run_label_job
    from pipeline.runtime import init_ray
    from pipeline.split import split_joint

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    init_ray(include_dashboard=False)

    t = time.perf_counter()
    source = Path(args.input) if args.input else out / "input"
    if not args.input:
        write_corpus(source)
    names = _annotators(args.annotators)
    label_cfg = LabelJobConfig(input=str(source), output=str(out / "labeled"), annotators=names,
                               min_short_side=args.short_side, target_short_side=args.short_side, shard_size=8)
    label_stats = run_label_job(label_cfg, progress=False)

    splits = split_joint(out / "labeled", out / "split", args.test_fraction)
    times["label"] = time.perf_counter() - t

    t = time.perf_counter()
    from jodi.latents import CacheConfig, run_cache_job

    cache = run_cache_job(CacheConfig(input=str(out / "split" / "train"), output=str(out / "cache"), vae=args.vae,
                                      text_encoder=args.text_encoder, resolution=args.short_side, batch_size=4))
    times["cache_latents"] = time.perf_counter() - t

    t = time.perf_counter()
    trained = _train(args, out)
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    report = _evaluate(args, out, trained["checkpoint"])
    times["eval"] = time.perf_counter() - t

    summary = {"annotators": list(names), "label": label_stats, "splits": splits, "cache": cache,
               "train": {k: v for k, v in trained.items() if k != "history"}, "eval": report,
               "seconds": {k: round(v, 1) for k, v in times.items()}}
    from jodi.eval.runner import json_safe

    (out / "report.json").write_text(json.dumps(json_safe(summary), indent=2, default=str))
    (out / "report.md").write_text(render_report(summary, trained["history"]))
    print((out / "report.md").read_text())
    return 0


def _train(args: argparse.Namespace, out: Path) -> dict:
    """Train from scratch on the cache; returns the checkpoint folder, loss history and curve path."""
    from jodi.train import log_dir, train, train_local
    from jodi.train.config import DataSource, TrainConfig
    from jodi.train.metrics import plot_loss_curve

    cfg = TrainConfig(
        data=(DataSource(str(out / "cache")),), output=str(out / "train"), run_name="e2e", preset=args.preset,
        lr=args.lr, batch_size=args.batch_size, max_steps=args.steps, seed=args.seed + 1,
        log_every=max(1, args.steps // 15),
        checkpoint_every=args.steps, keep_checkpoints=1, gradient_checkpointing=False, bf16=False,
    )
    shutil.rmtree(out / "train", ignore_errors=True)  # a smoke run starts from scratch every time
    if args.ray_train:
        result = train(cfg)
        checkpoint = result["checkpoint"]
    else:
        folder = out / "train" / "checkpoints"
        train_local(cfg, folder)
        checkpoint = str(sorted(folder.glob("checkpoint_*"))[-1])
    history_file = log_dir(cfg) / "metrics.jsonl"
    history = [json.loads(x) for x in history_file.read_text().splitlines() if x]
    curve = out / "loss_curve.png"
    plot_loss_curve(history, str(curve))
    first, last = history[0]["loss"], history[-1]["loss"]
    return {"checkpoint": checkpoint, "history": history, "loss_curve": curve.name, "steps": args.steps,
            "loss_first": first, "loss_last": last}


def _evaluate(args: argparse.Namespace, out: Path, checkpoint: str) -> dict:
    from jodi.eval.data import read_split
    from jodi.eval.metrics import MetricsConfig
    from jodi.eval.runner import EvalConfig, PipelineSpec, evaluate

    items = list(read_split(out / "split" / "test"))
    domains = tuple(sorted({d for it in items for d in it.labels}))
    cfg = EvalConfig(domains=domains, short_side=args.short_side, steps=args.eval_steps, seed=args.seed,
                     metrics=MetricsConfig(lpips_backbone=args.lpips_backbone))
    spec = PipelineSpec(checkpoint, preset=args.preset, vae=args.vae, text_encoder=args.text_encoder)
    info = {"checkpoint": checkpoint, "dataset": str(out / "split" / "test")}
    return evaluate(items, cfg, spec, out / "eval", info=info)


def render_report(s: dict, history: list[dict]) -> str:
    from jodi.eval.runner import markdown_table

    lab, tr = s["label"], s["train"]
    lines = [
        "# Train-after-label smoke run", "",
        f"Annotators: {', '.join(s['annotators'])}. "
        f"Records: {s['splits']['train']} train, {s['splits']['test']} test.", "",
        "| stage | seconds |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in s["seconds"].items()], "",
        "## Labeling", "", "```", json.dumps(lab, indent=1, default=str)[:1500], "```", "",
        "## Training", "",
        f"{tr['steps']} steps; loss {tr['loss_first']:.4f} (first log) -> {tr['loss_last']:.4f} (last log).", "",
        "| step | loss |", "|---|---|", *[f"| {h['step']} | {h['loss']:.4f} |" for h in history], "",
        f"![loss curve]({tr['loss_curve']})", "",
        markdown_table(s["eval"]).replace("# Evaluation", "## Evaluation", 1), "",
        "![prediction grid](eval/grid.png)", "",
    ]
    return "\n".join(lines)
