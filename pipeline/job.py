"""The label job: list -> decode -> annotate -> encode -> write on Ray Data, then finalise shards.

`run_label_job(config)` is the whole job. It is resumable and idempotent: rerun it
with the same arguments after a crash and it skips finished shards and, inside
unfinished ones, every input already written; rerun it with an extra annotator
and it labels only the missing domain of the finished shards (incremental).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections import Counter
from pathlib import Path

from annotators.loading import ModelUnavailableError
from annotators.registry import canonical_name, resolve
from pipeline import tuning
from pipeline.config import LabelJobConfig
from pipeline.decode import DecodeRules
from pipeline.report import write_preview, write_stats
from pipeline.sources import HF_PREFIX, InputItem, _is_saved_hf_dataset, list_sources, shard_items
from pipeline.stages import AnnotateStage, DecodeSpec, DecodeStage, EncodeStage, RecordDecodeStage, WriteStage
from pipeline.writer import OutputLayout, atomic_write_text, finalize_shard, staged_sources

log = logging.getLogger(__name__)


class JobConfigError(ValueError):
    """The job cannot start as configured (raised before any work)."""


def run_label_job(cfg: LabelJobConfig, progress: bool = True) -> dict:
    """Run the job to completion and return the stats written to OUT/stats.json."""
    started = time.perf_counter()
    names = _check_annotators(cfg.annotators)
    cfg = _canonical_keys(cfg)
    layout = OutputLayout(cfg.output)
    sources = list_sources(cfg.input, cfg.hf_split)  # a missing input fails here, before any work
    items = shard_items(sources, cfg.shard_size)
    previous = _check_previous_job(layout, cfg, names)
    _ensure_ray()

    done = layout.done_shards()
    by_shard: dict[int, list[InputItem]] = {}
    for it in items:
        by_shard.setdefault(it.shard, []).append(it)
    pending = [s for s in sorted(by_shard) if s not in done]
    todo = []
    for s in pending:
        staged = staged_sources(layout, s)  # read once per shard, not once per input
        todo.extend(it for it in by_shard[s] if it.source not in staged)
    run_stats: Counter = Counter()
    skipped = len(items) - sum(len(by_shard[s]) for s in pending)
    log.info(
        "%d inputs in %d shards: %d shards done, %d inputs to label", len(items), len(by_shard), len(done), len(todo)
    )

    atomic_write_text(layout.root / "job.json", json.dumps(_job_record(cfg, names, previous), indent=2, default=str))
    if todo:
        _stream(cfg, names, _fresh_dataset(cfg, todo), len(todo), run_stats, progress, "label")
    provenance = _provenance(cfg, names)
    seen = _ids_of_done_shards(layout, sorted(done))
    for s in pending:
        finalize_shard(layout, s, [it.source for it in by_shard[s]], provenance, seen, annotators=names)

    # Incremental labeling: shards finished by an earlier run that lack some of the requested annotators.
    updates = {s: [n for n in names if n not in m.get("annotators", [])] for s, m in done.items()}
    for missing in sorted({tuple(v) for v in updates.values() if v}):
        shards = [s for s, v in updates.items() if tuple(v) == missing]
        _add_annotators(cfg, layout, list(missing), shards, run_stats, progress)

    _remove_empty(layout.root / "_staging")
    stats = write_stats(cfg, layout, sorted(by_shard), run_stats, time.perf_counter() - started, skipped)
    write_preview(cfg, layout)
    return stats


def _check_annotators(requested: tuple[str, ...]) -> list[str]:
    """Registry names for the requested annotators or domains; one annotator per domain (or caption key)."""
    if not requested:
        raise JobConfigError("no annotators requested")
    names = [canonical_name(a) for a in requested]  # unknown names raise with the known ones listed
    outputs: dict[str, str] = {}
    for n in names:
        cls, config = resolve(n)
        out = f"caption:{getattr(config, 'caption_key', n)}" if cls.domain == "caption" else cls.domain
        if out in outputs:
            raise JobConfigError(f"annotators {outputs[out]!r} and {n!r} both produce {out!r}; choose one")
        outputs[out] = n
    return list(dict.fromkeys(names))


def _canonical_keys(cfg: LabelJobConfig) -> LabelJobConfig:
    """Per-annotator settings may name a domain (`--model depth=...`): key them by registry name."""

    def canon(d: dict) -> dict:
        return {canonical_name(k): v for k, v in d.items()}

    overrides = canon(cfg.overrides)
    if cfg.dtype is not None:
        # Per-annotator overrides win; OpenCV annotators simply ignore the field.
        names = [canonical_name(a) for a in cfg.annotators]
        overrides = {**overrides, **{n: {"dtype": cfg.dtype, **overrides.get(n, {})} for n in names}}
    return dataclasses.replace(cfg, overrides=overrides, resources=canon(cfg.resources))


def _check_previous_job(layout: OutputLayout, cfg: LabelJobConfig, names: list[str]) -> dict | None:
    path = layout.root / "job.json"
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    old = previous.get("settings", {})
    new = json.loads(json.dumps(cfg.settings_fingerprint(), default=str))
    changed = {k for k in new if k in old and old[k] != new[k]}
    if changed:
        raise JobConfigError(
            f"{cfg.output} was labeled with different settings ({', '.join(sorted(changed))}); "
            "use a new output folder or the same arguments to resume"
        )
    return previous


def _job_record(cfg: LabelJobConfig, names: list[str], previous: dict | None) -> dict:
    annotators = list(dict.fromkeys([*(previous or {}).get("annotators", []), *names]))
    return {"settings": cfg.settings_fingerprint(), "annotators": annotators, "config": json.loads(cfg.to_json())}


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        # Connects to RAY_ADDRESS when set (e.g. under `ray job submit`), else starts a local Ray in-process.
        ray.init(configure_logging=False, log_to_driver=False)


def _remove_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _fresh_dataset(cfg: LabelJobConfig, todo: list[InputItem]):
    import ray

    rows = [{"source": it.source, "shard": it.shard, "row": it.row} for it in todo]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), math.ceil(len(rows) / 8))))
    hf = cfg.input if (cfg.input.startswith(HF_PREFIX) or _is_saved_hf_dataset(cfg.input)) else None
    spec = DecodeSpec(
        rules=DecodeRules(cfg.min_short_side, cfg.target_short_side, cfg.max_pixels, cfg.allow_animated),
        hf_input=hf,
        hf_split=cfg.hf_split,
        hf_image_column=cfg.hf_image_column,
        hf_caption_column=cfg.hf_caption_column,
    )
    light = tuning.light_stage("decode", cfg.target_short_side)
    return ds.map_batches(
        DecodeStage,
        fn_constructor_kwargs={"spec": spec},
        batch_size=light.batch_size,
        batch_format="numpy",
        compute=_actors(1, 2),
        num_cpus=1,
        memory=light.memory,
    )


def _actors(lo: int, hi: int):
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(min_size=lo, max_size=hi)


def _stage_groups(cfg: LabelJobConfig, names: list[str]) -> list[list[str]]:
    groups, placed = [], set()
    for group in cfg.colocate:
        members = [canonical_name(n) for n in group if canonical_name(n) in names]
        if members:
            groups.append(members)
            placed.update(members)
    groups.extend([n] for n in names if n not in placed)
    return groups


def _stream(cfg, names, ds, total, run_stats: Counter, progress: bool, what: str) -> None:
    """Add the annotate/encode/write stages to `ds` and consume it, counting outcomes."""
    import ray

    groups = _stage_groups(cfg, names)
    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    tuning.configure_data_context(ray.data.DataContext.get_current())
    plans = tuning.plan_stages(cfg, groups, ray.cluster_resources().get("memory", 0.0))
    for group in groups:
        res = cfg.resources_for(group[0])
        vllm = _vllm_config(cfg, group)
        if vllm is not None:
            ds = _vllm_stage(ds, group[0], vllm, res)
            continue
        # Auto CPU share: leave one CPU for decode/encode/write, split the rest between annotator stages.
        cpus = res.num_cpus if res.num_cpus is not None else max(0.25, (cluster_cpus - 1) / len(groups))
        ds = ds.map_batches(
            AnnotateStage,
            fn_constructor_kwargs={"specs": [(n, cfg.overrides.get(n, {})) for n in group], "device": cfg.device},
            batch_size=plans[group[0]].batch_size,
            batch_format="numpy",
            compute=_actors(res.pool_min, res.pool_max),
            num_cpus=cpus,
            num_gpus=res.num_gpus or None,
            memory=plans[group[0]].memory,
        )
    domains = sorted({resolve(n)[0].domain for n in names} - {"caption"})
    ds = ds.map_batches(
        EncodeStage,
        fn_constructor_kwargs={
            "domains": domains,
            "jpeg_quality": cfg.jpeg_quality,
            "source_caption_key": cfg.hf_caption_key,
        },
        batch_size=plans["encode"].batch_size,
        batch_format="numpy",
        compute=_actors(1, 2),
        num_cpus=0.5,
        memory=plans["encode"].memory,
    )
    ds = ds.map_batches(
        WriteStage,
        fn_constructor_kwargs={"output": cfg.output, "write_joint": cfg.write_joint},
        batch_size=plans["write"].batch_size,
        batch_format="numpy",
        compute=_actors(1, 1),
        num_cpus=0.25,
        memory=plans["write"].memory,
    )
    bar = _progress(total, what, progress)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            n = len(batch["source"])
            run_stats["processed"] += n
            run_stats["failed"] += int(sum(1 for e in batch["error"] if e))
            for key, values in batch.items():
                if key.startswith("t_"):
                    run_stats[key] += float(values.sum())
            bar.update(n)
    except Exception as exc:
        # Missing weights surface inside an actor's constructor; give the user our one line, not Ray's traceback.
        line = _model_unavailable_line(exc)
        if line is not None:
            raise ModelUnavailableError(line) from None
        raise
    finally:
        bar.close()


def _model_unavailable_line(exc: BaseException) -> str | None:
    seen = exc
    while seen is not None:
        if isinstance(seen, ModelUnavailableError):
            return str(seen.args[0]) if seen.args else str(seen)
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"ModelUnavailableError: ([^\n]+)", str(exc))
    return match.group(1) if match else None


def _vllm_config(cfg: LabelJobConfig, group: list[str]):
    """The captioner config of a group when it selects the vLLM backend (then it runs alone in its stage)."""
    cls, config = resolve(group[0])
    config = dataclasses.replace(config, **cfg.overrides.get(group[0], {}))
    if getattr(config, "backend", "transformers") != "vllm":
        return None
    if len(group) > 1:
        raise JobConfigError(f"{group[0]} uses the vLLM backend and cannot be colocated with {group[1:]}")
    return config


def _vllm_stage(ds, name: str, config, res):
    """Captions through Ray Data LLM (vLLM continuous batching), then back to our columns."""
    from annotators.caption_vllm import VLLMResources, build_caption_processor
    from pipeline.stages import vllm_caption_columns

    resources = VLLMResources(batch_size=res.batch_size, concurrency=res.pool_max)
    ds = build_caption_processor(name, resources, config)(ds)
    return ds.map_batches(
        vllm_caption_columns,
        fn_kwargs={"caption_key": config.caption_key, "annotator": name},
        batch_size=64,
        batch_format="numpy",
    )


def _progress(total: int, what: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{what} (images)", unit="img", disable=not enabled, dynamic_ncols=True)


def _add_annotators(cfg, layout: OutputLayout, missing: list[str], shards: list[int], run_stats, progress) -> None:
    import ray

    rows = []
    for s in shards:
        ids = layout.read_data(s, ["id", "source"]).to_pylist()
        staged = staged_sources(layout, s)
        rows.extend(
            {"source": r["source"], "shard": s, "row": i, "id": r["id"]}
            for i, r in enumerate(ids)
            if r["source"] not in staged
        )
    if rows:
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / 8)))
        ds = ds.map_batches(
            RecordDecodeStage,
            fn_constructor_kwargs={"output": cfg.output},
            batch_size=8,
            batch_format="numpy",
            compute=_actors(1, 1),
            num_cpus=0.5,
        )
        _stream(cfg, missing, ds, len(rows), run_stats, progress, f"add {','.join(missing)}")
    provenance = _provenance(cfg, missing)
    for s in shards:
        base = layout.read_data(s)
        old_errors = layout.read_errors(s)
        marker = json.loads(layout.marker(s).read_text())
        annotators = list(dict.fromkeys([*marker.get("annotators", []), *missing]))
        finalize_shard(
            layout,
            s,
            base.column("source").to_pylist(),
            provenance,
            {},
            annotators=annotators,
            base_table=base,
            old_errors=old_errors,
        )


def _provenance(cfg: LabelJobConfig, names: list[str]) -> list[dict]:
    out = []
    for n in names:
        cls, config = resolve(n)
        config = dataclasses.replace(config, **cfg.overrides.get(n, {}))
        out.append(
            {
                "domain": cls.domain,
                "annotator": n,
                "model_id": config.model_id,
                "revision": config.revision,
                "parameters": config.to_json(),
            }
        )
    return out


def _ids_of_done_shards(layout: OutputLayout, shards: list[int]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for s in shards:
        for r in layout.read_data(s, ["id", "source"]).to_pylist():
            seen.setdefault(r["id"], r["source"])
    return seen
