"""The label job: list -> decode -> annotate -> encode -> write on Ray Data, then finalise shards.

`run_label_job(config)` is the whole job. It is resumable and idempotent: rerun it
with the same arguments after a crash and it skips finished shards and, inside
unfinished ones, every input already written; rerun it with an extra annotator
and it labels only the missing domain of the finished shards (incremental).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import time
from collections import Counter

from annotators.loading import ModelUnavailableError
from annotators.multi import label_domains
from annotators.registry import canonical_name, entry, resolve
from pipeline import tuning
from pipeline.config import LabelJobConfig
from pipeline.finalize import ShardPlan, finalize_shard
from pipeline.inputs import decoded_dataset
from pipeline.lease import Heartbeat, LeaseLostError, acquire, release
from pipeline.preflight import check_annotators, stage_groups
from pipeline.report import write_preview, write_stats
from pipeline.runtime import init_ray
from pipeline.shards import Finaliser, ShardTracker
from pipeline.sources import InputItem, list_sources, shard_items
from pipeline.stages import AnnotateStage, EncodeStage, RecordDecodeStage, WriteStage, run_stage
from pipeline.writer import PART_PREFIX, OutputLayout, add_prefix
from schemas.record import Provenance
from schemas.storage import StorageError, StorageLostError, describe_failure

log = logging.getLogger(__name__)
# CPUs of one fused encode + write task: it spends about half its time waiting on storage.
ENCODE_WRITE_CPUS = 0.5


class JobConfigError(ValueError):
    """The job cannot start as configured (raised before any work)."""


def run_label_job(cfg: LabelJobConfig, progress: bool = True, *, takeover: bool = False) -> dict:
    """Run the job to completion and return the stats written to OUT/stats.json.

    `takeover=True` takes the output's lease from a job that holds it (see pipeline/lease.py)."""
    started = time.perf_counter()
    names = check_annotators(cfg)  # the checks preflight ran, again for callers that skip preflight
    cfg = _canonical_keys(cfg)
    layout = OutputLayout(cfg.output)
    sources = list_sources(cfg.input, cfg.hf_split)  # a missing input fails here, before any work
    items = shard_items(sources, cfg.shard_size)
    layout.storage.check_writable()  # missing bucket / endpoint / credential: one line, before any work
    previous = _check_previous_job(layout, cfg, names)
    lease = acquire(layout.storage, takeover=takeover)
    try:
        with Heartbeat(layout.storage, lease) as beat:
            stats = _run(cfg, names, layout, items, previous, lease.owner, progress, started)
        if beat.lost:
            raise LeaseLostError(beat.lost)
        return stats
    except Exception as exc:
        line = _storage_failure_line(exc, cfg.output)
        if line is not None:
            raise StorageLostError(line) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            release(layout.storage, lease.owner)


def _run(cfg, names, layout: OutputLayout, items, previous, owner: str, progress: bool, started: float) -> dict:
    _ensure_ray()
    done = layout.done_shards()
    by_shard: dict[int, list[InputItem]] = {}
    for it in items:
        by_shard.setdefault(it.shard, []).append(it)
    pending = [s for s in sorted(by_shard) if s not in done]
    tracker = ShardTracker({s: [it.source for it in by_shard[s]] for s in pending})
    for s in sorted(done):
        for rel in layout.parts(s):  # a crash between a marker and its clean-up leaves parts behind
            layout.storage.delete(rel)
        tracker.known(s, layout.read_data(s, ["id", "source"]))
    todo = []
    for s in pending:
        staged = tracker.staged(s, layout.read_staged(s, columns=["source", "id", "error"]))
        todo.extend(it for it in by_shard[s] if it.source not in staged)
    run_stats: Counter = Counter()
    skipped = len(items) - sum(len(by_shard[s]) for s in pending)
    log.info(
        "%d inputs in %d shards: %d shards done, %d inputs to label", len(items), len(by_shard), len(done), len(todo)
    )
    layout.storage.put_text("job.json", json.dumps(_job_record(cfg, names, previous), indent=2, default=str))
    finaliser = Finaliser(layout, tracker, names, _provenance(cfg, names), owner)
    finaliser.submit_ready()  # shards fully staged by an earlier run finalise at once
    if todo:
        source = functools.partial(decoded_dataset, cfg, todo)
        _stream(cfg, names, source, len(todo), run_stats, progress, "label", finaliser.observe)
    finaliser.wait()

    # Incremental labeling: shards finished by an earlier run that lack some of the requested annotators.
    updates = {s: [n for n in names if n not in m.get("annotators", [])] for s, m in done.items()}
    for missing in sorted({tuple(v) for v in updates.values() if v}):
        shards = [s for s, v in updates.items() if tuple(v) == missing]
        _add_annotators(cfg, layout, list(missing), {s: done[s] for s in shards}, run_stats, progress, owner)

    layout.storage.remove_empty_dir("_staging")
    stats = write_stats(cfg, layout, sorted(by_shard), run_stats, time.perf_counter() - started, skipped)
    write_preview(cfg, layout)
    return stats


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
    if not layout.storage.exists("job.json"):
        return None
    previous = json.loads(layout.storage.get_text("job.json"))
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
    # No dashboard for the embedded Ray: nothing to look at, and its agents outlive a killed driver.
    init_ray(include_dashboard=False)


def _actors(lo: int, hi: int):
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(min_size=lo, max_size=hi)


def _stream(
    cfg, names, source, total, run_stats: Counter, progress: bool, what: str, observe, prefix=PART_PREFIX
) -> None:
    """Build the stages over `source(decode_args)` (the rows to label, decoded with those Ray remote args)
    and consume the writers' status rows: count them and hand them to `observe` (which finalises shards
    as they complete).

    Stage layout: decode -> one actor stage per annotator group -> encode -> write. Decode, encode and
    write are Ray tasks; Ray Data fuses a task into the next stage when their resources match. On CPU,
    decode runs inside the first annotator actor (the cores are shared anyway, and a decoded batch then
    never crosses the object store) and encode + write run as one task. A GPU stage keeps decode apart,
    as CPU tasks that feed it, so the GPU never waits on JPEG decoding."""
    import ray

    groups = stage_groups(cfg, names)  # the same grouping preflight checked resources for
    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    tuning.configure_data_context(ray.data.DataContext.get_current())
    plans = tuning.plan_stages(cfg, groups, ray.cluster_resources().get("memory", 0.0))
    args = {g[0]: _annotate_args(cfg, g, plans, cluster_cpus, len(groups)) for g in groups}
    first = groups[0][0]
    fuse = not args[first].get("num_gpus") and _vllm_config(cfg, groups[0]) is None
    if fuse:  # decode runs in these actors too: reserve its measured footprint with the model's
        args[first]["memory"] += plans["decode"].memory
    ds = source(args[first] if fuse else {"num_cpus": 1, "memory": plans["decode"].memory})
    for group in groups:
        vllm = _vllm_config(cfg, group)
        if vllm is not None:
            ds = _vllm_stage(ds, group[0], vllm, cfg.resources_for(group[0]))
            continue
        res = cfg.resources_for(group[0])
        ds = ds.map_batches(
            AnnotateStage,
            fn_constructor_kwargs={"specs": [(n, cfg.overrides.get(n, {})) for n in group], "device": cfg.device},
            batch_size=plans[group[0]].batch_size,
            batch_format="numpy",
            compute=_actors(res.pool_min, res.pool_max),
            **args[group[0]],
        )
    domains = sorted({d for n in names for d in label_domains(resolve(n)[0])} - {"caption"})
    # Encode and write share one task (same resources => fused): a batch's file bytes go straight to
    # storage from the process that encoded them. Tasks spread over every node, so writing scales with
    # the cluster; part names are content hashes, so a retried task overwrites its own objects.
    light = {"num_cpus": ENCODE_WRITE_CPUS, "memory": max(plans["encode"].memory, plans["write"].memory)}
    encode = {"domains": domains, "jpeg_quality": cfg.jpeg_quality, "source_caption_key": cfg.caption_key}
    ds = ds.map_batches(
        run_stage,
        fn_kwargs={"stage": EncodeStage, "kwargs": encode},
        batch_size=plans["encode"].batch_size,
        batch_format="numpy",
        **light,
    )
    write = {"output": cfg.output, "write_joint": cfg.write_joint, "prefix": prefix}
    ds = ds.map_batches(
        run_stage,
        fn_kwargs={"stage": WriteStage, "kwargs": write},
        batch_size=plans["write"].batch_size,
        batch_format="numpy",
        **light,
    )
    bar = _progress(total, what, progress)
    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for batch in batches:
            n = len(batch["source"])
            run_stats["processed"] += n
            run_stats["failed"] += int(sum(1 for e in batch["error"] if e))
            for key, values in batch.items():
                if key.startswith("t_"):
                    run_stats[key] += float(values.sum())
            observe(batch)
            bar.update(n)
    except Exception as exc:
        # Missing weights surface inside an actor's constructor; give the user our one line, not Ray's traceback.
        line = _model_unavailable_line(exc)
        if line is not None:
            raise ModelUnavailableError(line) from None
        raise
    finally:
        bar.close()
        # Shut the execution down now, not when the iterator is collected: a failed run's actors would
        # otherwise keep their CPUs (and GPUs) from the next job in the same Ray.
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _model_unavailable_line(exc: BaseException) -> str | None:
    seen = exc
    while seen is not None:
        if isinstance(seen, ModelUnavailableError):
            return str(seen.args[0]) if seen.args else str(seen)
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"ModelUnavailableError: ([^\n]+)", str(exc))
    return match.group(1) if match else None


def _annotate_args(cfg: LabelJobConfig, group: list[str], plans: dict, cluster_cpus: float, n_groups: int) -> dict:
    """Ray remote args of an annotator group's actors: the job config's resources, else an automatic CPU
    share (the rest split between the annotator stages, at most one node's CPUs: an actor lives on one
    node, and the pool grows across nodes) and the measured memory footprint.

    What is left for the fused encode + write tasks (0.5 CPU each) depends on the models: a compute-bound
    model stage gets all but one task's half CPU, so on 2 cores its torch runs 2 threads like a per-image
    loop's (with a whole CPU kept back it ran 1); a weights-free group (canny, decode fused in) costs about
    what encoding its output does, so two encode + write tasks keep a whole CPU."""
    res = cfg.resources_for(group[0])
    cpus = res.num_cpus
    if cpus is None:
        kept = ENCODE_WRITE_CPUS * (2 if tuning.is_weights_free(group) else 1)
        cpus = max(0.25, min((cluster_cpus - kept) / n_groups, _largest_node_cpus()))
    args = {"num_cpus": cpus, "memory": res.memory or plans[group[0]].memory}
    if res.num_gpus:
        args["num_gpus"] = res.num_gpus
    return args


def _largest_node_cpus() -> float:
    import ray

    return max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=1.0)


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


def _add_annotators(cfg, layout: OutputLayout, missing: list[str], markers: dict, run_stats, progress, owner) -> None:
    """Label finished shards with annotators they lack, then merge the new labels into their records."""
    import ray

    prefix = add_prefix(missing)
    rows = []
    for s in sorted(markers):
        for rel in layout.all_parts(s):  # leftovers of a first pass or of another incremental pass
            if not rel.rsplit("/", 1)[-1].startswith(prefix):
                layout.storage.delete(rel)
        ids = layout.read_data(s, ["id", "source"]).to_pylist()
        staged = set(layout.read_staged(s, prefix, ["source"]).column("source").to_pylist())
        rows.extend(
            {"source": r["source"], "shard": s, "row": i, "id": r["id"]}
            for i, r in enumerate(ids)
            if r["source"] not in staged
        )
    if rows:

        def source(_decode_args: dict):
            # An actor, not a task: it keeps the shard's stored images between batches (rows come in shard order).
            ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / 8)))
            return ds.map_batches(
                RecordDecodeStage,
                fn_constructor_kwargs={"output": cfg.output},
                batch_size=8,
                batch_format="numpy",
                compute=_actors(1, 1),
                num_cpus=0.5,
            )

        what = f"add {','.join(missing)}"
        _stream(cfg, missing, source, len(rows), run_stats, progress, what, lambda b: None, prefix)
    provenance = tuple(_provenance(cfg, missing))
    task = ray.remote(num_cpus=0.25, max_retries=3)(finalize_shard)
    futures = []
    for s, marker in sorted(markers.items()):
        sources = tuple(layout.read_data(s, ["source"]).column("source").to_pylist())
        annotators = tuple(dict.fromkeys([*marker.get("annotators", []), *missing]))
        plan = ShardPlan(s, sources, annotators, provenance, added=tuple(missing), lease_owner=owner)
        futures.append(task.remote(layout, plan))
    ray.get(futures)


def _provenance(cfg: LabelJobConfig, names: list[str]) -> list[Provenance]:
    out = []
    for n in names:
        cls, config = resolve(n)
        config = dataclasses.replace(config, **cfg.overrides.get(n, {}))
        licence = entry(n).licence.name
        out.extend(
            Provenance(domain, n, config.model_id, config.revision, config.to_json(), licence)
            for domain in label_domains(cls)
        )
    return out


def _storage_failure_line(exc: BaseException, output: str) -> str | None:
    """Storage that fails mid-run (unreachable, refused, full) -> one line. Ray wraps a worker's exception in
    its RayTaskError / UserCodeException, whose text is the worker's traceback: take the StorageError's own
    message when there is one, else recognise the store's error in the text."""
    resume = "; the data written so far is safe: rerun the same command to resume"
    store_error = re.compile(r"AWS Error|NETWORK_CONNECTION|curlCode|ACCESS_DENIED|google::cloud::Status")
    for e in _chain(exc):
        for err in (getattr(e, "cause", None), e):  # RayTaskError keeps the worker's exception as `cause`
            if isinstance(err, StorageError) and type(err).__module__ == StorageError.__module__:
                return str(err.args[0]) if err.args else str(err)
            if isinstance(err, OSError) and type(err).__module__ == "builtins" and store_error.search(str(err)):
                return describe_failure(output, err) + resume
    text = "\n".join(str(e) for e in _chain(exc))
    full = re.search(r"(no space left writing [^\n]+)", text)
    if full:
        return full.group(1)
    if store_error.search(text):
        return describe_failure(output, Exception(store_error.search(text).group(0))) + resume
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], exc
    while seen is not None and len(out) < 20:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out
