"""The training configuration: one frozen dataclass tree, built by jobs/train.py from YAML.

Defaults follow the reference training config (docs/jodi-training-recipe.md#training-defaults):
lr 1e-4 constant with warm-up, gradient clip 0.1, gradient checkpointing, bf16,
weight decay 0, flow shift 3, 10% caption dropout. The reference uses CAME-8bit;
AdamW is the default here because it ships with torch, CAME is an option.
"""

from __future__ import annotations

from dataclasses import dataclass

INITS = ("random", "jodi", "sana")
OPTIMIZERS = ("adamw", "came")
STRATEGIES = ("ddp", "fsdp")
TIMESTEPS = ("shared", "per_domain")


@dataclass(frozen=True)
class DataSource:
    """One latent cache (made by `jodi cache-latents`) and how to pick its captions.

    `caption_weights` is the reference's per-source `caption_model_probs`, e.g.
    (("BLIP2-OPT-2.7b", 4.0), ("Qwen2-VL-7b-Instruct", 1.0)); empty = uniform.
    """

    path: str
    caption_weights: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class NewDomain:
    """A label domain the base checkpoint does not have: its embedder and final layer
    start as copies of `copy_from` (reference `--extend_to_new_domain_copy_id`)."""

    name: str
    copy_from: str


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[DataSource, ...]
    output: str = "runs"  # Ray Train storage path: a local folder or any fsspec/pyarrow URI
    run_name: str = "jodi-train"
    # model and initialisation
    preset: str = "tiny"
    init: str = "random"  # "jodi" (released checkpoint), "sana" (Sana backbone) or "random"
    init_weights: str | None = None  # path or hf://repo/file for init="jodi"/"sana"
    new_domains: tuple[NewDomain, ...] = ()
    # optimisation
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_clip: float = 0.1
    ema_decay: float | None = None  # e.g. 0.9999; None = no EMA
    gradient_checkpointing: bool = True
    bf16: bool = True  # autocast to bfloat16 on GPU; CPU runs stay in fp32
    # objective (docs/jodi-reference.md#objective and #timestep-sampling)
    flow_shift: float = 3.0
    caption_dropout: float = 0.1  # also the null-class rate of class-conditioned models
    # MMGen recipe (arXiv 2503.20644 §3.2): "per_domain" = one timestep per domain, [C] at t = 0 (MMGen
    # presets always); modality dropout drops each present label domain with this probability.
    timesteps: str = "shared"
    modality_dropout: float = 0.0
    num_classes: int = 0  # > 0: class-conditioned MMGen over the cache's `classes` (cache with class folders)
    repa_weight: float = 0.0  # REPA loss weight (REPA uses 0.5); needs a cache made with DINOv2 features
    # LoRA (jodi/lora.py): rank 0 = full fine-tuning
    lora_rank: int = 0
    lora_alpha: float | None = None  # None = rank (scale 1)
    lora_train_heads: bool = True  # per-domain embedders and final layers fully trained alongside
    # schedule
    batch_size: int = 4  # per worker
    max_steps: int = 1000
    epochs: int | None = None  # stop after this many epochs even before max_steps
    seed: int = 1
    shuffle_buffer: int = 256  # rows held per worker for the seeded local shuffle
    # distribution
    num_workers: int = 1
    use_gpu: bool = False
    strategy: str = "ddp"
    cpus_per_worker: float = 1.0
    # checkpoints and logs
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 20
    resume_from: str | None = None  # a checkpoint folder; runs with the same name/output resume on their own
    stop_after_steps: int | None = None  # end this process early (tests, preemptible jobs); resume continues

    def __post_init__(self):
        if not self.data:
            raise ValueError("TrainConfig.data needs at least one latent cache")
        for name, value, allowed in (
            ("init", self.init, INITS),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("strategy", self.strategy, STRATEGIES),
            ("timesteps", self.timesteps, TIMESTEPS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}; choose one of {', '.join(allowed)}")
        if self.init != "random" and not self.init_weights:
            raise ValueError(f"init={self.init!r} needs init_weights (a path or hf://repo/file)")
        if self.strategy == "fsdp" and self.ema_decay:
            raise ValueError("EMA keeps a full copy of the model; with strategy=fsdp use ema_decay=None")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout={self.modality_dropout} must be in [0, 1)")
        if self.lora_rank < 0 or self.repa_weight < 0:
            raise ValueError("lora_rank and repa_weight must not be negative")
        if self.batch_size < 1 or self.max_steps < 1:
            raise ValueError("batch_size and max_steps must be positive")
