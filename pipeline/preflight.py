"""Check that a label job can run before Ray starts or a file is written.

`preflight(cfg)` raises `PreflightError` with one line when the job asks for something that cannot
work: an unknown annotator, two annotators for one output, a per-annotator setting that names no
annotator or no preset field, or more CPUs, GPUs or memory than the machine or cluster has. Without
this, `--gpus 1` on a machine with no GPU waits forever: Ray Data starts its actor pools
asynchronously (`DataContext.wait_for_min_actors_s` defaults to -1), so a pool whose actors can
never be placed just stays pending.

Where the resources come from:
- no Ray running and no RAY_ADDRESS: the local Ray `run_label_job` would start, i.e. this machine
  (CPUs Ray would see, CUDA GPUs, memory); nothing waits, nothing starts;
- a Ray already running in this process: `ray.cluster_resources()` / `ray.nodes()` as they are;
- RAY_ADDRESS set (`ray job submit`, a cluster): connect, ask the autoscaler for the missing
  bundles (`ray.autoscaler.sdk.request_resources`) and wait up to `wait_s` seconds for nodes to join;
  a static cluster simply never grows and the wait ends with the same one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from annotators.multi import label_domains
from annotators.registry import canonical_name, resolve
from pipeline.config import LabelJobConfig, StageResources
from pipeline.runtime import init_ray

# Ray reserves this share of a node's memory for its object store by default (ray_constants,
# DEFAULT_OBJECT_STORE_MEMORY_PROPORTION); actors get the rest as the `memory` resource.
OBJECT_STORE_SHARE = 0.3
RESOURCES = ("CPU", "GPU", "memory")  # the Ray resources a stage of this job may ask for


class PreflightError(ValueError):
    """The job cannot run as configured; raised before Ray starts or any file is written."""


@dataclass(frozen=True)
class StageDemand:
    """What one stage asks Ray for: `per_actor` resources, times `actors` (the pool's minimum size)."""

    stage: str
    per_actor: dict[str, float]
    actors: int

    def total(self, key: str) -> float:
        return self.per_actor.get(key, 0.0) * self.actors


@dataclass(frozen=True)
class Offer:
    """What Ray can place: resource totals and the largest single node (an actor runs on one node)."""

    where: str  # "this machine" or "the Ray cluster"
    totals: dict[str, float]
    nodes: tuple[dict[str, float], ...]


def preflight(cfg: LabelJobConfig, wait_s: float = 0.0) -> list[str]:
    """Check names, per-annotator settings and resources; returns the annotators' registry names."""
    names = check_annotators(cfg)
    demands = stage_demands(cfg, names)
    if demands:  # nothing explicit (CPU-only, automatic shares): the job sizes itself, nothing to probe
        check_resources(demands, offer_source(), wait_s)
    return names


class UnknownAnnotatorError(PreflightError, KeyError):
    """A name the registry does not know. Also a KeyError, the registry's own error for it, so callers of
    `run_label_job` that catch what `annotators.registry.entry` raises keep working."""

    __str__ = BaseException.__str__  # the message as is, not KeyError's quoted repr


def _known(name: str, what: str) -> str:
    try:
        return canonical_name(name)
    except KeyError as exc:
        raise UnknownAnnotatorError(f"{what}: {exc.args[0]}") from None


def check_annotators(cfg: LabelJobConfig) -> list[str]:
    """Registry names of the requested annotators; one per output; every per-annotator key known."""
    if not cfg.annotators:
        raise PreflightError("no annotators requested; pass --annotators (e.g. -a canny,depth)")
    names = list(dict.fromkeys(_known(a, "annotators") for a in cfg.annotators))
    outputs: dict[str, str] = {}
    for n in names:
        cls, config = resolve(n)
        for domain in label_domains(cls):  # several for a multi-domain annotator (MoGe-2: depth + normal)
            out = f"caption:{getattr(config, 'caption_key', n)}" if domain == "caption" else domain
            if out in outputs:
                raise PreflightError(f"annotators {outputs[out]!r} and {n!r} both produce {out!r}; choose one")
            outputs[out] = n
    for name in cfg.resources:
        _known(name, "resources")
    for name, fields in cfg.overrides.items():
        _, config = resolve(_known(name, "overrides"))
        try:
            dataclasses.replace(config, **fields)
        except (TypeError, ValueError) as exc:
            allowed = ", ".join(f.name for f in dataclasses.fields(config))
            raise PreflightError(f"overrides.{name}: {exc}; {type(config).__name__} fields: {allowed}") from None
    placed: dict[str, int] = {}
    for i, group in enumerate(cfg.colocate):
        for member in (_known(n, f"colocate group {i + 1}") for n in group):
            if placed.setdefault(member, i) != i:
                raise PreflightError(f"colocate: {member!r} is in groups {placed[member] + 1} and {i + 1}")
    return names


def stage_groups(cfg: LabelJobConfig, names: list[str]) -> list[list[str]]:
    """Annotators per actor, as the job builds its stages: colocated groups, then one stage each."""
    groups, placed = [], set()
    for group in cfg.colocate:
        members = [canonical_name(n) for n in group if canonical_name(n) in names]
        if members:
            groups.append(members)
            placed.update(members)
    groups.extend([n] for n in names if n not in placed)
    return groups


def stage_demands(cfg: LabelJobConfig, names: list[str]) -> list[StageDemand]:
    """What each annotator stage explicitly asks for (GPUs, CPUs, memory), its pool at minimum size.

    These must all be placed at once: a stage whose actors stay pending stalls the stream (two 1.5-CPU
    actor stages on 2 CPUs wait forever). The job's own small stages (decode/encode/write) and the
    automatic CPU share (`num_cpus: null`) are sized from the cluster by the job itself, so they are
    not counted."""
    demands = []
    for group in stage_groups(cfg, names):
        res: StageResources = cfg.resources_for(group[0])
        per_actor = {"CPU": res.num_cpus or 0.0, "GPU": res.num_gpus, "memory": float(res.memory or 0)}
        per_actor = {k: v for k, v in per_actor.items() if v}
        if per_actor:
            demands.append(StageDemand("+".join(group), per_actor, res.pool_min))
    return demands


def shortfall(demands: list[StageDemand], offer: Offer) -> str | None:
    """The first request `offer` cannot meet, as one line; None when everything fits."""
    largest = {k: max((n.get(k, 0.0) for n in offer.nodes), default=0.0) for k in RESOURCES}
    for d in demands:
        for key, amount in d.per_actor.items():
            # A fraction of a GPU packs onto one device; whole units must all sit on one node.
            if amount > largest[key] + 1e-9:
                return (
                    f"{d.stage} needs {_amount(key, amount)} per actor; {offer.where} has at most "
                    f"{_amount(key, largest[key])} on one node{_advice(key)}"
                )
    for key in RESOURCES:
        need = sum(d.total(key) for d in demands)
        if need > offer.totals.get(key, 0.0) + 1e-9:
            parts = ", ".join(f"{d.stage} {_amount(key, d.total(key))}" for d in demands if d.total(key))
            return (
                f"the job needs {_amount(key, need)} at once ({parts}; pools at their minimum size); "
                f"{offer.where} has {_amount(key, offer.totals.get(key, 0.0))}{_advice(key)}"
            )
    return None


def _amount(key: str, value: float) -> str:
    if key == "memory":
        return f"{value / 2**30:.1f} GiB of memory"
    text = f"{value:g}"
    return f"{text} {key}" + ("s" if value != 1 else "")


def _advice(key: str) -> str:
    if key == "GPU":
        return " (run with --gpus 0 to label on CPUs, or lower num_gpus / pool_min in the job file)"
    if key == "CPU":
        return " (lower num_cpus or pool_min in the job file)"
    return " (lower memory or pool_min in the job file)"


def check_resources(demands: list[StageDemand], offer: Callable[[], Offer], wait_s: float = 0.0) -> None:
    """Raise PreflightError naming the unsatisfiable resource; with `wait_s` > 0 ask the autoscaler for
    it first and poll until it arrives or the time is up."""
    problem = shortfall(demands, offer())
    if problem is None:
        return
    if wait_s > 0:
        _request_from_autoscaler(demands)
        deadline = time.monotonic() + wait_s
        while problem is not None and time.monotonic() < deadline:
            time.sleep(min(2.0, wait_s))
            problem = shortfall(demands, offer())
        if problem is not None:
            problem += f"; still missing after waiting {wait_s:g} s for the cluster to scale up"
    if problem is not None:
        raise PreflightError(f"not enough resources: {problem}")


def _request_from_autoscaler(demands: list[StageDemand]) -> None:
    from ray.autoscaler.sdk import request_resources

    bundles = [{k: v for k, v in d.per_actor.items() if v} for d in demands for _ in range(d.actors)]
    request_resources(bundles=[b for b in bundles if b])


def offer_source() -> Callable[[], Offer]:
    """How to read what Ray can place, without starting a local Ray (see the module docstring)."""
    import ray

    if ray.is_initialized():
        return cluster_offer
    if os.environ.get("RAY_ADDRESS"):
        init_ray()  # the job connects the same way
        return cluster_offer
    return local_offer


def cluster_offer() -> Offer:
    import ray

    nodes = tuple(n["Resources"] for n in ray.nodes() if n.get("Alive"))
    return Offer("the Ray cluster", dict(ray.cluster_resources()), nodes)


def local_offer() -> Offer:
    """What `ray.init()` on this machine would offer: the CPUs this process may use, the CUDA devices
    torch sees (Ray honours CUDA_VISIBLE_DEVICES the same way) and memory less the object store."""
    import psutil

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    totals = {"CPU": float(cpus), "GPU": float(_cuda_devices()),
              "memory": math.floor(psutil.virtual_memory().available * (1 - OBJECT_STORE_SHARE))}
    return Offer("this machine", totals, (totals,))


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
