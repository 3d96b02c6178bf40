"""Evaluate a Jodi model on a held-out split: perception for every domain, optional controllable generation.

For each item the pipeline predicts the labels from the image (paper §3 perception: no text, CFG 1, 10
steps) and each domain is scored against its reference with `jodi.eval.metrics`. With `control` domains,
it also generates an image from each reference label alone and scores FID against the real images and
condition consistency (the label re-extracted from the generated image, LPIPS to the input label; paper
Table 2). Outputs: `eval.json`, `eval.md` (a table) and `grid.png` (input, then prediction and reference
per domain, one row per item).

The per-item work is one function, `evaluate_item`; `evaluate` runs it in this process, or, with
`num_workers > 0`, in a Ray Data actor pool that loads the model once per actor (big splits, many GPUs);
the stats it returns merge by concatenation, so both paths give the same numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from common.imaging import MODEL_INPUT_KERNEL, resize_short_side
from jodi.codecs import TEXT_ID, VAE_ID
from jodi.eval.data import EvalItem
from jodi.eval.depth import DepthEvalConfig
from jodi.eval.generation import Fid, condition_consistency
from jodi.eval.metrics import FAMILY, MetricsConfig, build_lpips, headline, resize_to, score, summarize

# A pipeline factory builds a JodiPipeline (in each worker); an extractor factory maps a condition domain
# to `image -> label` (the annotator that made that label), or None when there is none.
PipelineFactory = Callable[[], object]
ExtractorFactory = Callable[[str], Callable[[np.ndarray], np.ndarray] | None]


@dataclass(frozen=True)
class EvalConfig:
    domains: tuple[str, ...] = ("lineart", "edge", "depth", "normal", "albedo", "seg_12colors")
    short_side: int = 0  # inference short side (0 = the image's own size; snapped to a bucket by the pipeline)
    steps: int = 10  # perception steps (jodi.sampling.PERCEPTION)
    seed: int = 0
    control: tuple[str, ...] = ()  # condition domains for controllable generation (each on its own)
    control_steps: int = 20
    guidance_scale: float = 4.5
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    grid_rows: int = 4
    cell: int = 128  # grid thumbnail side
    num_workers: int = 0  # 0 = this process; n = n Ray Data actors
    num_gpus: float = 0.0  # per actor


@dataclass(frozen=True)
class PipelineSpec:
    """What `jodi eval` loads; calling it builds the `JodiPipeline` (picklable, so Ray actors build their own).

    `checkpoint`: a trainer checkpoint folder (`model.safetensors`, or `ema.safetensors` with `ema`), a
    training run folder (its newest `checkpoint_<step>`), a `.pth`/`.safetensors` file, `hf://org/repo/file`,
    or None for random weights (smoke runs). `vae`/`text_encoder`: hub ids, local folders, or "tiny" for the
    seeded random stand-ins the latent cache job also uses with "tiny".
    """

    checkpoint: str | None
    preset: str = "jodi_1600m"
    vae: str = VAE_ID
    text_encoder: str = TEXT_ID
    device: str = "cpu"
    ema: bool = False
    seed: int = 0
    lora: str | None = None  # a LoRA adapter (adapter.safetensors) applied onto the checkpoint
    merge_lora: bool = False

    def weights_file(self) -> str | None:
        if not self.checkpoint or "://" in self.checkpoint or not Path(self.checkpoint).is_dir():
            return self.checkpoint
        folder = Path(self.checkpoint)
        steps = sorted(folder.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[-1]))
        folder = steps[-1] if steps and not (folder / "model.safetensors").exists() else folder
        name = "ema.safetensors" if self.ema and (folder / "ema.safetensors").exists() else "model.safetensors"
        if not (folder / name).exists():
            raise FileNotFoundError(f"{self.checkpoint}: no model.safetensors (nor checkpoint_<step>/) inside")
        return str(folder / name)

    def __call__(self):
        from jodi.codecs import TEXT_REVISION, VAE_REVISION, LatentCodec, TextEncoder
        from jodi.loading import load_model
        from jodi.pipeline import JodiPipeline, class_conditioned

        model = load_model(self.weights_file(), self.preset, self.lora, self.merge_lora, self.seed)
        length = model.cfg.model_max_length
        codec = LatentCodec.tiny(seed=self.seed) if self.vae == "tiny" else LatentCodec.from_pretrained(
            self.vae, VAE_REVISION)
        if class_conditioned(model):  # no text: generation is conditioned on the null class here
            text = None
        elif self.text_encoder == "tiny":
            text = TextEncoder.tiny(max_length=length, seed=self.seed).to(self.device)
        else:
            text = TextEncoder.from_pretrained(self.text_encoder, TEXT_REVISION, max_length=length).to(self.device)
        return JodiPipeline(model.to(self.device), codec.to(self.device), text).with_null_caption()


def resize_short(image: np.ndarray, short: int) -> np.ndarray:
    """An evaluated picture at `short` px short side, resampled as Jodi's training transform does (bicubic)."""
    return resize_short_side(image, short, MODEL_INPUT_KERNEL)


def metrics_for_reference(cfg: MetricsConfig, decoded: bool) -> MetricsConfig:
    """Pseudo labels hold Joint's min-max inverse depth, so depth is compared as disparity; real ground
    truth keeps the kind the user configured."""
    return cfg if decoded else replace(cfg, depth=DepthEvalConfig())


def evaluate_item(pipe, item: EvalItem, cfg: EvalConfig, lpips=None,
                  extractors: dict[str, Callable] | None = None) -> dict:
    """One item -> {"id", "stats": {domain: stats}, "sources": {domain: reference kind}, "pictures": {...},
    "control": {domain: {"image": generated, "lpips": float | None}}}."""
    from jodi.sampling import PERCEPTION, SamplerConfig

    image = resize_short(item.image, cfg.short_side)
    refs = {d: item.reference(d) for d in cfg.domains}
    wanted = [d for d in cfg.domains if refs[d] is not None and d in pipe.domains]
    sampler = replace(PERCEPTION, steps=cfg.steps)
    preds = pipe.perceive(image, wanted, sampler=sampler, seed=cfg.seed) if wanted else {}
    out = {"id": item.id, "stats": {}, "sources": {}, "pictures": {"image": image}, "control": {}}
    for d in wanted:
        ref, decoded, kind = refs[d]
        if not decoded:  # Joint labels follow the image to the evaluation size; real ground truth keeps its own
            ref = resize_to(d, ref, image.shape[:2])
        metrics = metrics_for_reference(cfg.metrics, decoded)
        out["stats"][d] = score(d, preds[d], ref, metrics, lpips, ref_decoded=decoded)
        out["sources"][d] = kind
        out["pictures"][d] = (preds[d], ref)
    for c in cfg.control:
        if c not in item.labels:
            continue
        gen_sampler = SamplerConfig(steps=cfg.control_steps, guidance_scale=cfg.guidance_scale)
        cond = resize_short(item.labels[c], cfg.short_side)
        prompt = item.caption if pipe.text_encoder is not None else ""  # a class-conditioned model has no text
        generated = pipe.control(prompt, {c: cond}, generate=["image"], sampler=gen_sampler,
                                 seed=cfg.seed)["image"]
        extract = (extractors or {}).get(c)
        dist = condition_consistency([cond], [generated], extract, lpips)[0] if extract and lpips else None
        out["control"][c] = {"image": generated, "lpips": dist}
    return out


class _EvalActor:
    """Ray Data stage: builds the pipeline, LPIPS and extractors once per actor, evaluates rows of items."""

    def __init__(self, cfg: EvalConfig, pipeline_factory: PipelineFactory, extractor_factory=None):
        self.cfg, self.pipe = cfg, pipeline_factory()
        self.lpips = build_lpips(cfg.metrics)
        self.extractors = {c: extractor_factory(c) for c in cfg.control} if extractor_factory else {}

    def __call__(self, batch: dict) -> dict:
        import pickle

        results = [evaluate_item(self.pipe, pickle.loads(b), self.cfg, self.lpips, self.extractors)
                   for b in batch["item"]]
        return {"result": np.array([pickle.dumps(r) for r in results], dtype=object)}


def _run_ray(items, cfg: EvalConfig, pipeline_factory, extractor_factory):
    """Results from a Ray Data actor pool. `items`: a Ray Dataset of {"item": pickled EvalItem} rows
    (`jodi.eval.data.split_rows`, files read by the workers) or EvalItems (pickled by the driver)."""
    import pickle

    import ray

    if not ray.is_initialized():
        ray.init()
    ds = items if isinstance(items, ray.data.Dataset) else ray.data.from_items(
        [{"item": pickle.dumps(it)} for it in items])
    ds = ds.map_batches(_EvalActor, fn_constructor_args=(cfg, pipeline_factory, extractor_factory), batch_size=1,
                        compute=ray.data.ActorPoolStrategy(size=cfg.num_workers), num_gpus=cfg.num_gpus)
    for row in ds.iter_rows():
        yield pickle.loads(row["result"])


def _add(family: str, kept: list, stats) -> None:
    """Keep one image's stats; histograms and confusion matrices are summed as they come (fixed memory)."""
    if family == "seg" and kept:
        kept[0] = kept[0] + stats
    elif family == "normal" and kept:
        kept[0] = {k: kept[0][k] + v for k, v in stats.items()}
    else:
        kept.append(stats)


def evaluate(items, cfg: EvalConfig, pipeline_factory: PipelineFactory, output: str | Path,
             extractor_factory: ExtractorFactory | None = None, fid_feature=2048, info: dict | None = None) -> dict:
    """Evaluate every item, write eval.json / eval.md / grid.png under `output`, return the eval.json dict.

    `items`: EvalItems, or with `num_workers > 0` also a Ray Dataset from `jodi.eval.data.split_rows`.
    Results are folded in as they arrive, so memory does not grow with the split (beyond per-image numbers).
    `fid_feature`: 2048 (torchmetrics' FID Inception through torch-fidelity) or an `nn.Module` stand-in.
    """
    start = time.perf_counter()
    if cfg.num_workers > 0:
        results = _run_ray(items, cfg, pipeline_factory, extractor_factory)
    else:
        pipe, lpips = pipeline_factory(), build_lpips(cfg.metrics)
        extractors = {c: extractor_factory(c) for c in cfg.control} if extractor_factory else {}
        results = (evaluate_item(pipe, it, cfg, lpips, extractors) for it in items)
    stats: dict[str, list] = {d: [] for d in cfg.domains}
    sources: dict[str, set] = {d: set() for d in cfg.domains}
    fids: dict[str, Fid] = {}
    dists: dict[str, list[float]] = {c: [] for c in cfg.control}
    shown, count = [], 0
    for r in results:
        count += 1
        for d, s in r["stats"].items():
            _add(FAMILY[d], stats[d], s)
            sources[d].add(r["sources"][d])
        for c, g in r["control"].items():
            fid = fids.setdefault(c, Fid(feature=fid_feature))
            fid.update([r["pictures"]["image"]], real=True)
            fid.update([g["image"]], real=False)
            if g["lpips"] is not None:
                dists[c].append(g["lpips"])
        if len(shown) < cfg.grid_rows:
            shown.append(r)
    report = {"info": info or {}, "config": _jsonable(asdict(cfg)), "images": count, "perception": {},
              "control": {}, "seconds": 0.0}
    for d in cfg.domains:
        if stats[d]:
            summary = summarize(d, stats[d], cfg.metrics)
            report["perception"][d] = {"reference": " + ".join(sorted(sources[d])), "family": FAMILY[d], **summary}
    for c, fid in fids.items():
        report["control"][c] = {"fid": fid.compute(), "lpips": float(np.mean(dists[c])) if dists[c] else None,
                                "images": fid.count["fake"]}
    report["seconds"] = round(time.perf_counter() - start, 2)
    write_report(report, shown, cfg, Path(output))
    return report


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def markdown_table(report: dict) -> str:
    """The eval.json numbers as Markdown: one perception row per domain, one control row per condition."""
    lines = [f"# Evaluation ({report['images']} images)", ""]
    info = report.get("info") or {}
    lines += [f"- {k}: `{v}`" for k, v in info.items()] + ([""] if info else [])
    if report["perception"]:
        lines += ["## Perception", "", "| domain | reference | metrics |", "|---|---|---|"]
        for d, s in report["perception"].items():
            cells = ", ".join(f"{k} {_fmt(v)}" for k, v in headline(d, s).items() if v is not None)
            lines.append(f"| {d} | {s['reference']} | {cells} |")
        lines.append("")
    if report["control"]:
        lines += ["## Controllable generation", "", "| condition | FID | condition LPIPS | images |",
                  "|---|---|---|---|"]
        for c, s in report["control"].items():
            lines.append(f"| {c} | {_fmt(s['fid'])} | {_fmt(s['lpips'])} | {s['images']} |")
        lines.append("")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def picture_grid(results: list[dict], domains: tuple[str, ...], rows: int, cell: int):
    """PIL image: per item, the input then (prediction, reference) for each domain; a header names columns."""
    from PIL import Image, ImageDraw

    shown = [d for d in domains if any(d in r["pictures"] for r in results)]
    header = ["input"] + [f"{d} {w}" for d in shown for w in ("pred", "ref")]
    picked = results[:rows]
    grid = Image.new("RGB", (cell * len(header), 16 + cell * max(1, len(picked))), "white")
    draw = ImageDraw.Draw(grid)
    for j, name in enumerate(header):
        draw.text((j * cell + 2, 2), name[:22], fill="black")
    for i, r in enumerate(picked):
        cells = [r["pictures"]["image"]]
        for d in shown:
            pred, ref = r["pictures"].get(d, (None, None))
            cells += [pred, ref]
        for j, a in enumerate(cells):
            if a is None:
                continue
            a = np.asarray(a)
            if a.dtype != np.uint8:  # real ground truth (e.g. metric depth): min-max for display
                finite = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                span = finite.max() - finite.min()
                a = ((finite - finite.min()) / (span if span > 0 else 1) * 255).astype(np.uint8)
            thumb = Image.fromarray(a).convert("RGB")
            scale = cell / max(thumb.size)  # fit the cell, up or down
            thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))))
            grid.paste(thumb, (j * cell, 16 + i * cell))
    return grid


def write_report(report: dict, results: list[dict], cfg: EvalConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))
    (folder / "eval.md").write_text(markdown_table(report) + "\n")
    picture_grid(results, cfg.domains, cfg.grid_rows, cfg.cell).save(folder / "grid.png")


def json_safe(obj):
    """JSON has no nan/inf: such values (an undefined metric, PSNR of identical pictures) become null."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
