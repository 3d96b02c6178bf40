"""Frozen configuration of a label job. Built by jobs/ from the command line or YAML; read-only here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageResources:
    """Ray resources of one annotator stage: from the job config, never from annotator code.

    `num_cpus=None` shares the machine's CPUs between the annotator stages (good for
    the embedded local default); on a cluster set them explicitly.
    """

    num_gpus: float = 0.0  # fractional allowed: 0.25 packs four small annotators on one GPU
    num_cpus: float | None = None
    batch_size: int = 8
    pool_min: int = 1
    pool_max: int = 1


@dataclass(frozen=True)
class LabelJobConfig:
    input: str  # folder / fsspec URI, a .txt file of paths, or hf://datasets/<name> / a saved `datasets` folder
    output: str
    annotators: tuple[str, ...] = ("canny", "lineart_standard")
    # Per-annotator resources; missing names use `default_resources`.
    resources: dict[str, StageResources] = field(default_factory=dict)
    default_resources: StageResources = StageResources()
    # Per-annotator preset overrides, e.g. {"depth_anything_v2_large": {"model_id": "/models/da2"}}.
    overrides: dict[str, dict] = field(default_factory=dict)
    # Annotators run together in one actor (one model load each, one stage): keeps a GPU busy with
    # several small models. Names not in a group get a stage of their own.
    colocate: tuple[tuple[str, ...], ...] = ()
    min_short_side: int = 1024  # Joint-1.6M keeps images whose short side is at least 1024
    target_short_side: int = 1024  # and stores them with the short side resized to 1024
    max_pixels: int = 100_000_000  # decompression-bomb guard, checked on the header before decoding
    allow_animated: bool = False  # animated GIF/WebP/PNG: error by default, first frame if allowed
    shard_size: int = 256  # inputs per shard: the unit of completion markers and Parquet files
    write_joint: bool = (
        True  # the Joint folder layout; Parquet shards are always written (they are the truth for resume)
    )
    hf_image_column: str = "image"
    hf_caption_column: str | None = None  # keep an input dataset's caption column under `caption_key`
    hf_split: str = "train"
    jpeg_quality: int = 95
    preview_rows: int = 6
    device: str = "auto"  # "auto": cuda if the stage has GPUs, else cpu
    # Every annotator's dtype unless its overrides say otherwise: "auto" = bf16 autocast on CUDA, fp32 on CPU;
    # "bfloat16" also on CPU is 1.4-2.7x faster on CPUs with AVX512-BF16/AMX (bench/label_throughput.py).
    dtype: str | None = None
    # Captions that come with the input (a dataset's caption column, WebDataset key.txt/key.json, sidecar
    # photo.txt/photo.json) land in every record under this caption key.
    caption_key: str = "source"
    sidecar_captions: bool = True  # read photo.txt / photo.json (field `caption`) beside each image

    @property
    def hf_caption_key(self) -> str:
        """The former name of `caption_key` (it applied to Hugging Face inputs only)."""
        return self.caption_key

    def resources_for(self, name: str) -> StageResources:
        return self.resources.get(name, self.default_resources)

    def settings_fingerprint(self) -> dict:
        """Settings that change what a record is; a rerun with different ones into the same folder is refused."""
        keys = ("input", "min_short_side", "target_short_side", "max_pixels", "allow_animated", "shard_size")
        return {k: getattr(self, k) for k in keys}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=str)
