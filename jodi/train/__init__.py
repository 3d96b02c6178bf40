"""Fine-tuning Jodi on latent caches: config -> data -> loop -> checkpoints, run by Ray Train or in one process.

Modules, in the order a step flows through them: `config` (the frozen `TrainConfig` tree), `data` (cache rows ->
bucketed batches with sampled roles), `ckpt` (model initialisation, checkpoints), `loop` (the per-worker loop),
`metrics` (loss windows, the loss curve), `runner` (`train` on Ray Train, `train_local` in this process).
Imports only `schemas` of ours, like the rest of `jodi`.
"""

from jodi.train.config import DataSource, NewDomain, TrainConfig
from jodi.train.runner import log_dir, train, train_local

__all__ = ["DataSource", "NewDomain", "TrainConfig", "log_dir", "train", "train_local"]
