"""`train(cfg)`: fine-tune Jodi on latent caches with Ray Train (one GPU or many nodes).

A `TorchTrainer` runs `run_training` (jodi/train/loop.py) on every worker. Each
worker streams its own share of the latent-cache files (`worker_rows`: a pure
function of files, rank and world size, so a resumed worker sees the same rows),
so the data is never copied per worker.
Checkpoints go through Ray Train to `<output>/<run_name>` (any storage Ray Train
accepts: a local folder or a pyarrow/fsspec URI), keeping the last
`keep_checkpoints`. Running again with the same output and run name resumes from
the latest checkpoint (Ray Train V2 restores a run by its storage path and name).
`LocalSession` runs the same loop in one process without Ray (tests, benchmark).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch

from jodi.train.config import TrainConfig
from jodi.train.data import Collator, cache_files, load_null_text, read_cache_info, worker_rows
from jodi.train.loop import run_training
from jodi.train.metrics import plot_loss_curve


def make_collator(cfg: TrainConfig) -> Collator:
    """The batch builder for these caches; all caches must share encoders and domains."""
    from jodi.train.ckpt import model_config

    infos = [read_cache_info(src.path) for src in cfg.data]
    first = infos[0]
    for src, info in zip(cfg.data, infos):
        if (info.latent_channels, info.text_channels, info.domains) != (
            first.latent_channels, first.text_channels, first.domains):
            raise ValueError(f"{src.path} was encoded differently from {cfg.data[0].path}")
    mcfg = model_config(cfg)
    if tuple(first.domains) != tuple(mcfg.domains):
        raise ValueError(f"{cfg.data[0].path} stores domains {list(first.domains)} but the model has "
                         f"{list(mcfg.domains)}: list the cache's extra domains as new_domains")
    text_ok = getattr(mcfg, "num_classes", 0) or first.text_channels == mcfg.caption_channels
    if not text_ok or first.latent_channels != mcfg.in_channels:
        raise ValueError(
            f"cache has latent/text channels {first.latent_channels}/{first.text_channels}, preset "
            f"{cfg.preset!r} expects {mcfg.in_channels}/{mcfg.caption_channels}"
        )
    if cfg.num_classes and len(first.classes) != cfg.num_classes:
        raise ValueError(f"num_classes={cfg.num_classes} but {cfg.data[0].path} has {len(first.classes)} classes "
                         "(cache with --classes-from-folders)")
    if cfg.repa_weight and not first.dino_dim:
        raise ValueError(f"repa_weight={cfg.repa_weight} needs DINOv2 features: cache {cfg.data[0].path} with --dino")
    if cfg.repa_weight and first.dino_dim != getattr(mcfg, "repa_dim", None):
        raise ValueError(f"cached DINOv2 features are {first.dino_dim}-d; preset {cfg.preset!r} projects to "
                         f"{getattr(mcfg, 'repa_dim', 'nothing (REPA needs an MMGen preset)')}")
    return Collator(
        latent_channels=first.latent_channels,
        text_channels=first.text_channels,
        max_tokens=mcfg.model_max_length,
        caption_weights=tuple(dict(src.caption_weights) for src in cfg.data),
        null_text=load_null_text(cfg.data[0].path, mcfg.model_max_length),
        caption_dropout=cfg.caption_dropout,
        num_domains=len(first.domains),
        modality_dropout=cfg.modality_dropout,
        classes=first.classes if cfg.num_classes else (),
        dino_dim=first.dino_dim if cfg.repa_weight else 0,
    )


def log_dir(cfg: TrainConfig) -> Path | None:
    """Where rank 0 keeps metrics.jsonl while training (local outputs only; remote runs keep the
    history inside every checkpoint)."""
    return None if "://" in cfg.output else Path(cfg.output) / cfg.run_name


def _write_log(cfg: TrainConfig, history: list[dict], line: str) -> None:
    print(line, flush=True)
    folder = log_dir(cfg)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


# ---------------------------------------------------------------- Ray Train


class RaySession:
    """The loop's view of a Ray Train worker."""

    def __init__(self, cfg: TrainConfig):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.cfg = cfg
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.files = cache_files([src.path for src in cfg.data])

    def rows(self, epoch: int):
        return worker_rows(self.files, self.rank, self.world_size)  # a new pass over this worker's rows

    def prepare_model(self, model):
        import ray.train.torch

        # Every parameter is in the graph each step ([C]/[X] outputs are detached *after* the final
        # layers, which then get zero gradients), so DDP needs no `find_unused_parameters`.
        return ray.train.torch.prepare_model(model, parallel_strategy=self.cfg.strategy)

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        if self.world_size == 1:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
        return t.cpu().tolist()

    @contextlib.contextmanager
    def resume_dir(self):
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as folder:
                yield Path(folder)
        elif self.cfg.resume_from:
            yield Path(self.cfg.resume_from)
        else:
            yield None

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        import ray.train

        clean = {k: v for k, v in metrics.items() if v is not None}
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(clean, checkpoint=ckpt)

    def log(self, record: dict, history: list[dict], line: str) -> None:
        if self.rank == 0:
            _write_log(self.cfg, history, line)


def _worker(config: dict) -> None:
    cfg: TrainConfig = config["cfg"]
    torch.manual_seed(cfg.seed)
    run_training(cfg, RaySession(cfg), make_collator(cfg))


def train(cfg: TrainConfig, worker_fn=None) -> dict:
    """Run (or resume) a training run on the current Ray cluster (a local one is started if needed).
    Returns {"metrics": last metrics, "checkpoint": path of the last checkpoint, "loss_curve": png}.
    `worker_fn(config)` replaces the per-worker function (instrumented runs in tests)."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init()
    # Workers do not share the driver's working directory: send absolute local paths.
    cfg = dataclasses.replace(
        cfg,
        output=_absolute(cfg.output),
        data=tuple(dataclasses.replace(src, path=_absolute(src.path)) for src in cfg.data),
        resume_from=_absolute(cfg.resume_from) if cfg.resume_from else None,
    )
    storage = cfg.output
    trainer = TorchTrainer(
        worker_fn or _worker,
        train_loop_config={"cfg": cfg},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            worker_runtime_env={"env_vars": {"PYTHONPATH": _project_root()}},
        ),
    )
    result = trainer.fit()
    out = {"metrics": dict(result.metrics or {}), "checkpoint": None, "loss_curve": None}
    if result.checkpoint is not None:
        out["checkpoint"] = result.checkpoint.path
        with result.checkpoint.as_directory() as folder:
            history_file = Path(folder) / "metrics.jsonl"
            history = [json.loads(x) for x in history_file.read_text().splitlines() if x]
        if history:
            out["loss_curve"] = f"{storage.rstrip('/')}/{cfg.run_name}/loss_curve.png"
            plot_loss_curve(history, out["loss_curve"])
    return out


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def _project_root() -> str:
    root = str(Path(__file__).resolve().parents[2])  # the repository root (jodi/train/runner.py)
    extra = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{extra}" if extra else root


# ---------------------------------------------------------------- one process


class LocalSession:
    """The same loop in one process: reads the caches' Parquet files in order, keeps checkpoints
    as `<folder>/checkpoint_<n>` (the last `keep`), resumes from the newest."""

    def __init__(self, cfg: TrainConfig, folder: str | Path):
        self.cfg, self.folder = cfg, Path(folder)
        self.rank, self.world_size, self.device = 0, 1, torch.device("cpu")
        self.reports: list[dict] = []

    def rows(self, epoch: int):
        return worker_rows(cache_files([src.path for src in self.cfg.data]), 0, 1)

    def prepare_model(self, model):
        return model.to(self.device)

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        return list(values)

    def checkpoints(self) -> list[Path]:
        return sorted(self.folder.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))

    @contextlib.contextmanager
    def resume_dir(self):
        found = self.checkpoints()
        yield found[-1] if found else (Path(self.cfg.resume_from) if self.cfg.resume_from else None)

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.reports.append(metrics)
        if checkpoint_dir is not None:
            step = json.loads((checkpoint_dir / "state.json").read_text())["step"]
            shutil.copytree(checkpoint_dir, self.folder / f"checkpoint_{step}", dirs_exist_ok=True)
            for old in self.checkpoints()[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old)

    def log(self, record: dict, history: list[dict], line: str) -> None:
        _write_log(self.cfg, history, line)


def train_local(cfg: TrainConfig, folder: str | Path) -> dict:
    """Run the training loop in this process (no Ray); checkpoints under `folder`."""
    return run_training(cfg, LocalSession(cfg, folder), make_collator(cfg))


__all__ = ["train", "train_local", "LocalSession", "RaySession", "make_collator"]
