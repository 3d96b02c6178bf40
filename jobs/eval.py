"""`jodi eval`: score a Jodi checkpoint on a held-out split (perception, optional controllable generation).

    jodi eval --checkpoint runs/jodi-train --dataset data/joint --split test --output out/eval
    jodi eval --checkpoint hf://VIPL-GENUN/Jodi/Jodi.pth --dataset D --split test --control depth,edge
    jodi eval --tiny --checkpoint random --dataset D --split all --short-side 64 --steps 2   # offline smoke

Writes eval.json, eval.md and grid.png under --output. References are the dataset's labels, or real ground
truth where its metadata has `ground_truth_<domain>` files (docs/evaluation.md).
"""

from __future__ import annotations

import argparse

from schemas.domains import LABEL_DOMAINS, canonical_domain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jodi.codecs import TEXT_ID, VAE_ID
    from jodi.mmgen import MMGEN_PRESETS
    from jodi.model import PRESETS

    parser.add_argument("--checkpoint", required=True,
                        help="trainer checkpoint or run folder, .pth/.safetensors, hf://org/repo/file, or 'random'")
    parser.add_argument("--dataset", required=True, help="Joint folder or Parquet dataset (label job output)")
    parser.add_argument("--split", default="test", help="split name; 'all' = every split")
    parser.add_argument("--output", default="out/eval")
    parser.add_argument("--domains", default=",".join(d for d in LABEL_DOMAINS if d != "openpose"),
                        help="comma-separated label domains to predict and score")
    parser.add_argument("--control", default="", help="comma-separated condition domains for controllable generation")
    parser.add_argument("--limit", type=int, help="at most this many records")
    parser.add_argument("--short-side", type=int, default=0, help="inference short side (0 = the stored size)")
    parser.add_argument("--steps", type=int, default=10, help="perception steps")
    parser.add_argument("--control-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.5, help="CFG scale for controllable generation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted({**PRESETS, **MMGEN_PRESETS}), default="jodi_1600m",
                        help="model preset (a trainer checkpoint's model.json overrides it)")
    parser.add_argument("--lora", metavar="ADAPTER", help="LoRA adapter (.safetensors from `jodi train`) onto --checkpoint")
    parser.add_argument("--merge-lora", action="store_true", help="fold the adapter into the weights first")
    parser.add_argument("--vae", default=VAE_ID, help="DC-AE hub id, local folder or 'tiny'")
    parser.add_argument("--text-encoder", default=TEXT_ID, help="Gemma-2 hub id, local folder or 'tiny'")
    parser.add_argument("--ema", action="store_true", help="use ema.safetensors of a trainer checkpoint")
    parser.add_argument("--tiny", action="store_true", help="tiny preset with the tiny random encoders (offline)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lpips-net", choices=("alex", "vgg", "squeeze"), default="alex")
    parser.add_argument("--lpips-backbone", choices=("pretrained", "random", "none"), default="pretrained",
                        help="'random' only for smoke runs: its numbers mean nothing")
    parser.add_argument("--depth-gt-kind", choices=("depth", "disparity"), default="depth",
                        help="what real depth ground truth files hold")
    parser.add_argument("--depth-align", choices=("depth", "disparity"), default="disparity",
                        help="space of the least-squares scale-and-shift fit against real ground truth")
    parser.add_argument("--extractor", action="append", default=[], metavar="DOMAIN=ANNOTATOR",
                        help="annotator that re-extracts a condition (default: the domain's Joint annotator)")
    parser.add_argument("--num-workers", type=int, default=0, help="Ray Data actors (0 = in this process)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")


def _domains(text: str) -> tuple[str, ...]:
    return tuple(canonical_domain(d.strip()) for d in text.split(",") if d.strip())


class AnnotatorExtractor:
    """Condition re-extraction for consistency: the annotator of a domain, built once; output in the Joint
    encoding (as the condition given to the model was). Picklable, so Ray actors build their own."""

    def __init__(self, names: dict[str, str], device: str = "cpu"):
        self.names, self.device = names, device

    def __call__(self, domain: str):
        from annotators.registry import DOMAIN_DEFAULTS, build
        from schemas.encoding import encode_label

        name = self.names.get(domain, DOMAIN_DEFAULTS.get(domain))
        if name is None:
            return None
        ann = build(name, device=self.device)
        return lambda image: encode_label(domain, ann.annotate([image])[0])


def build_config(args: argparse.Namespace):
    from jodi.eval.depth import DepthEvalConfig
    from jodi.eval.metrics import MetricsConfig
    from jodi.eval.runner import EvalConfig, PipelineSpec

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = MetricsConfig(
        depth=DepthEvalConfig(pred_kind="disparity", gt_kind=args.depth_gt_kind, align_space=args.depth_align),
        lpips_net=args.lpips_net, lpips_backbone=args.lpips_backbone,
    )
    cfg = EvalConfig(
        domains=_domains(args.domains), short_side=args.short_side, steps=args.steps, seed=args.seed,
        control=_domains(args.control), control_steps=args.control_steps, guidance_scale=args.guidance,
        metrics=metrics, num_workers=args.num_workers, num_gpus=args.num_gpus,
    )
    spec = PipelineSpec(
        checkpoint=None if args.checkpoint == "random" else args.checkpoint,
        preset="tiny" if args.tiny else args.preset,
        vae="tiny" if args.tiny else args.vae,
        text_encoder="tiny" if args.tiny else args.text_encoder,
        device=device, ema=args.ema, seed=args.seed, lora=args.lora, merge_lora=args.merge_lora,
    )
    return cfg, spec, device


def run(args: argparse.Namespace) -> int:
    from jodi.eval.data import read_split, split_rows
    from jodi.eval.runner import evaluate, markdown_table

    cfg, spec, device = build_config(args)
    names = dict(x.split("=", 1) for x in args.extractor)
    extractor = AnnotatorExtractor({canonical_domain(k): v for k, v in names.items()}, device) if cfg.control else None
    wanted = tuple(dict.fromkeys(cfg.domains + cfg.control))
    split = None if args.split == "all" else args.split
    if cfg.num_workers > 0:  # the workers read the files; the driver only lists them
        items = split_rows(args.dataset, split, args.limit, wanted)
    else:
        items = read_split(args.dataset, split, args.limit, wanted)
    info = {"checkpoint": args.checkpoint, "dataset": args.dataset, "split": args.split, "preset": spec.preset}
    report = evaluate(items, cfg, spec, args.output, extractor, info=info)
    print(markdown_table(report))
    print(f"eval: {report['images']} images in {report['seconds']}s -> {args.output}/eval.json, eval.md, grid.png")
    return 0
