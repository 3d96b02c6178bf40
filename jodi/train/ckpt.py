"""Model initialisation (Jodi, Sana, random, new domains) and training checkpoints.

A checkpoint folder holds everything a resumed run needs to continue as if it had
never stopped:
    model.safetensors        full (unsharded) weights, parameter names of the released Jodi
    model.json               the model's recipe and config (domains, classes, timestep mode)
    adapter.safetensors      the LoRA adapter alone (LoRA runs)
    ema.safetensors          the EMA weights, when EMA is on
    optimizer.pt             optimizer state keyed by parameter name (torch.load weights_only=True)
    state.json               step, epoch, batches done in the epoch, scheduler state
    rng_rank<r>.json         each worker's numpy (roles, captions) and torch (noise) generator states
    metrics.jsonl            the metrics history so far (the loss curve survives a resume)
State dicts go through torch.distributed.checkpoint's helpers, which give the same full
state dict for a plain module, DDP and FSDP.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from jodi.mmgen import MMGen, MMGenConfig
from jodi.model import Jodi, build_model, preset_config, read_state_dict
from jodi.train.config import TrainConfig
from schemas.checkpoint import load_torch_file
from schemas.domains import ALL_DOMAINS

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
_PER_DOMAIN = ("x_embedders.", "final_layers.")


# ---------------------------------------------------------------- initialisation


def model_config(cfg: TrainConfig):
    """The preset's config with this run's domains, timestep mode and classes (JodiConfig or MMGenConfig)."""
    base = preset_config(cfg.preset)
    changes = {"num_domains": base.num_domains + len(cfg.new_domains),
               "extra_domains": tuple(d.name for d in cfg.new_domains)}
    if isinstance(base, MMGenConfig):
        changes["num_classes"] = cfg.num_classes
        if not cfg.repa_weight:  # no projector without REPA: DDP requires every parameter to get a gradient
            changes["repa_block"] = 0
    elif cfg.num_classes:
        raise ValueError("class conditioning is part of the MMGen recipe: use an mmgen_* preset")
    else:
        changes["decoupled_timesteps"] = cfg.timesteps == "per_domain"
    return dataclasses.replace(base, **changes)


def domain_names(cfg: TrainConfig) -> tuple[str, ...]:
    return (*ALL_DOMAINS, *(d.name for d in cfg.new_domains))


def build_initial_model(cfg: TrainConfig) -> Jodi:
    """The model a run starts from (before any resume): random, the released Jodi, or Sana."""
    torch.manual_seed(cfg.seed)  # the random init is part of the run's reproducibility
    model = build_model(model_config(cfg))
    if isinstance(model, MMGen) and cfg.init != "random":
        raise ValueError(f"preset {cfg.preset!r} (MMGen recipe) has no released weights: use init='random'")
    if cfg.init == "jodi":
        init_from_jodi(model, read_state_dict(cfg.init_weights), cfg)
    elif cfg.init == "sana":
        init_from_sana(model, read_state_dict(cfg.init_weights))
    return model


def init_from_jodi(model: Jodi, state: dict[str, torch.Tensor], cfg: TrainConfig) -> None:
    """Load a Jodi checkpoint; with new domains, their embedder and final layer are copies of a named
    existing domain and their domain-embedding row stays random (reference `--extend_to_new_domain`)."""
    state = {k.removeprefix("module."): v for k, v in state.items() if k != "pos_embed"}
    names = domain_names(cfg)
    base = len(ALL_DOMAINS)
    for k, new in enumerate(cfg.new_domains):
        if new.copy_from not in names[:base]:
            raise ValueError(f"new domain {new.name!r}: copy_from {new.copy_from!r} is not one of {names[:base]}")
        src = names.index(new.copy_from)
        for prefix in _PER_DOMAIN:
            for key in [key for key in state if key.startswith(f"{prefix}{src}.")]:
                state[f"{prefix}{base + k}." + key.split(".", 2)[2]] = state[key].clone()
    if cfg.new_domains:
        table = model.domain_embedding.detach().clone()
        table[: state["domain_embedding"].shape[0]] = state["domain_embedding"]
        state["domain_embedding"] = table
    model.load_state_dict(state, strict=True)


def init_from_sana(model: Jodi, state: dict[str, torch.Tensor]) -> list[str]:
    """Start from a Sana backbone (reference `--resume_from_sana`): Sana's `x_embedder` goes to every
    domain's embedder, its `final_layer` to the image's only (label final layers stay random: the paper
    found that converges best), `pos_embed` is dropped. Returns the Jodi-only keys left at their init."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key == "pos_embed":
            continue
        if key.startswith("x_embedder."):
            for i in range(model.cfg.num_domains):
                mapped[f"x_embedders.{i}." + key.split(".", 1)[1]] = value.clone()
        elif key.startswith("final_layer."):
            mapped["final_layers.0." + key.split(".", 1)[1]] = value
        else:
            mapped[key] = value
    own = model.state_dict()
    bad = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"Sana weights do not fit this preset: {bad[:5]}")
    result = model.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)
    return list(result.missing_keys)


def set_null_caption(model: Jodi, emb: np.ndarray) -> None:
    """Overwrite the model's stored null caption with the text encoder's encoding of "" (as Jodi does
    at load time), so caption dropout in training and CFG at inference use the same empty prompt."""
    buf = model.y_embedder.y_embedding
    if tuple(buf.shape) != tuple(emb.shape):
        raise ValueError(f"null caption {emb.shape} does not fit the model's {tuple(buf.shape)}")
    with torch.no_grad():
        buf.copy_(torch.from_numpy(emb).to(buf))


def describe_model(model) -> dict:
    """What `jodi generate` / `jodi eval` need to rebuild a checkpoint's model: its recipe and config."""
    return {"recipe": "mmgen" if isinstance(model, MMGen) else "jodi", "config": dataclasses.asdict(model.cfg)}


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    folder: Path, model, optimizer, scheduler, ema, state: dict, rng: dict, rank: int, history: list[dict]
) -> None:
    """Write this worker's part of a checkpoint into `folder` (Ray Train merges the workers' folders).
    Every worker must call it: gathering a sharded (FSDP) state dict is a collective."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = get_model_state_dict(model, options=_FULL)
    optim = get_optimizer_state_dict(model, optimizer, options=_FULL)
    (folder / f"rng_rank{rank}.json").write_text(json.dumps(rng))
    if rank != 0:
        return
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))
    base = getattr(model, "module", model)
    if hasattr(base, "lora_settings"):  # the adapter alone, to load onto the released checkpoint
        from jodi.lora import save_adapter

        save_adapter(base, str(folder / "adapter.safetensors"))
    (folder / "model.json").write_text(json.dumps(describe_model(base)))
    if ema is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in ema.module.state_dict().items()},
                  str(folder / "ema.safetensors"))
    torch.save(optim, folder / "optimizer.pt")
    extra = {"ema_n_averaged": int(ema.n_averaged.item())} if ema is not None else {}
    (folder / "state.json").write_text(json.dumps({**state, **extra, "scheduler": scheduler.state_dict()}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


def load_checkpoint(folder: Path, model, optimizer, scheduler, ema, rank: int) -> tuple[dict, dict | None, list]:
    """Restore model, optimizer, scheduler and EMA from `folder`. Returns (state, this rank's rng
    states or None when the checkpoint came from fewer workers, metrics history)."""
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    optim = load_torch_file(folder / "optimizer.pt")
    set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
    if ema is not None and (folder / "ema.safetensors").exists():
        ema.module.load_state_dict(load_file(str(folder / "ema.safetensors")))
    state = json.loads((folder / "state.json").read_text())
    scheduler.load_state_dict(state.pop("scheduler"))
    n_averaged = state.pop("ema_n_averaged", None)
    if ema is not None and n_averaged is not None:
        ema.n_averaged.fill_(n_averaged)  # otherwise the first update after resume would copy, not average
    rng_file = folder / f"rng_rank{rank}.json"
    rng = json.loads(rng_file.read_text()) if rng_file.exists() else None
    history_file = folder / "metrics.jsonl"
    history = [json.loads(x) for x in history_file.read_text().splitlines() if x] if history_file.exists() else []
    return state, rng, history


def rng_state(np_rng: np.random.Generator, torch_gen: torch.Generator) -> dict:
    return {"numpy": np_rng.bit_generator.state, "torch": torch_gen.get_state().tolist()}


def restore_rng(saved: dict, np_rng: np.random.Generator, torch_gen: torch.Generator) -> None:
    np_rng.bit_generator.state = saved["numpy"]
    torch_gen.set_state(torch.tensor(saved["torch"], dtype=torch.uint8))
