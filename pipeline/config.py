"""Frozen configuration of a label job. Built by jobs/ from the command line or YAML; read-only here.

Every field is checked by type and range when a config is built (pydantic dataclasses: a wrong
YAML value fails here, naming the field and what it accepts, before Ray starts or a file is
written). Numbers and switches are strict (`"big"`, `"5"` or `true` is not a size); lists from
YAML become tuples. `config_from_mapping` turns a YAML/CLI mapping into a config or one `ConfigError`
line.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import field
from typing import Annotated

from pydantic import ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

# Strict scalars with their allowed range; the description is what an error message says the field accepts.
Count = Annotated[int, Field(strict=True, ge=1, description="an integer >= 1")]
Pixels = Annotated[int, Field(strict=True, ge=1, description="a number of pixels, an integer >= 1")]
Gpus = Annotated[float, Field(strict=True, ge=0, description="a number >= 0 (fractions share a GPU)")]
Cpus = Annotated[float, Field(strict=True, gt=0, description="a number > 0, or null for an automatic share")]
MemoryBytes = Annotated[int, Field(strict=True, ge=1, description="bytes of RAM per actor, an integer >= 1")]
# Pillow's JPEG encoder takes quality 1..100 (Pillow docs, "JPEG saving": values above 95 gain nothing).
JpegQuality = Annotated[int, Field(strict=True, ge=1, le=100, description="an integer from 1 to 100")]
Rows = Annotated[int, Field(strict=True, ge=0, description="an integer >= 0 (0 = no preview)")]
Text = Annotated[str, Field(strict=True, min_length=1, description="a non-empty string")]
Names = Annotated[tuple[Text, ...], Field(description="a list of annotator names, e.g. [canny, depth]")]

DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_CHECKED = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """A job setting has the wrong type or range; the one-line message names the field and what it accepts."""


@dataclass(frozen=True, config=_CHECKED)
class StageResources:
    """Ray resources of one annotator stage: from the job config, never from annotator code.

    `num_cpus=None` shares the machine's CPUs between the annotator stages (good for
    the embedded local default); on a cluster set them explicitly.
    """

    num_gpus: Gpus = 0.0  # fractional allowed: 0.25 packs four small annotators on one GPU
    num_cpus: Cpus | None = None
    batch_size: Count = 8
    pool_min: Count = 1
    pool_max: Count = 1
    memory: MemoryBytes | None = None  # Ray's `memory` resource: RAM reserved per actor (None = no reservation)

    @model_validator(mode="after")
    def _pool_range(self):
        if self.pool_max < self.pool_min:
            raise ValueError(f"pool_max ({self.pool_max}) must be >= pool_min ({self.pool_min})")
        return self


@dataclass(frozen=True, config=_CHECKED)
class LabelJobConfig:
    input: Text  # folder / fsspec URI, a .txt file of paths, or hf://datasets/<name> / a saved `datasets` folder
    output: Text
    annotators: Names = ("canny", "lineart_standard")
    # Per-annotator resources; missing names use `default_resources`.
    resources: dict[str, StageResources] = field(default_factory=dict)
    default_resources: StageResources = StageResources()
    # Per-annotator preset overrides, e.g. {"depth_anything_v2_large": {"model_id": "/models/da2"}}.
    overrides: dict[str, dict] = field(default_factory=dict)
    # Annotators run together in one actor (one model load each, one stage): keeps a GPU busy with
    # several small models. Names not in a group get a stage of their own.
    colocate: tuple[Names, ...] = ()
    min_short_side: Pixels = 1024  # Joint-1.6M keeps images whose short side is at least 1024
    target_short_side: Pixels = 1024  # and stores them with the short side resized to 1024
    max_pixels: Pixels = 100_000_000  # decompression-bomb guard, checked on the header before decoding
    allow_animated: StrictBool = False  # animated GIF/WebP/PNG: error by default, first frame if allowed
    shard_size: Count = 256  # inputs per shard: the unit of completion markers and Parquet files
    write_joint: StrictBool = True  # the Joint folder layout; Parquet shards are always written (resume reads them)
    hf_image_column: Text = "image"
    hf_caption_column: Text | None = None  # keep an input dataset's caption column under `caption_key`
    hf_split: Text = "train"
    jpeg_quality: JpegQuality = 95
    preview_rows: Rows = 6
    device: str = "auto"  # "auto": cuda if the stage has GPUs, else cpu
    # Every annotator's dtype unless its overrides say otherwise: "auto" = bf16 autocast on CUDA, fp32 on CPU;
    # "bfloat16" also on CPU is 1.4-2.7x faster on CPUs with AVX512-BF16/AMX (bench/label_throughput.py).
    dtype: str | None = None
    # Captions that come with the input (a dataset's caption column, WebDataset key.txt/key.json, sidecar
    # photo.txt/photo.json) land in every record under this caption key.
    caption_key: Text = "source"
    sidecar_captions: StrictBool = True  # read photo.txt / photo.json (field `caption`) beside each image

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

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str | None) -> str | None:
        if value is not None and value not in DTYPES:
            raise ValueError(f"must be one of {', '.join(DTYPES)} (or null)")
        return value


def config_from_mapping(data: dict) -> LabelJobConfig:
    """A YAML/CLI mapping -> LabelJobConfig, or a `ConfigError` whose one line names every wrong field."""
    if not isinstance(data, dict):
        raise ConfigError(f"job config must be a mapping of settings, got {type(data).__name__}")
    try:
        return LabelJobConfig(**data)
    except ValidationError as exc:
        raise ConfigError(validation_line(exc, LabelJobConfig)) from None


def validation_line(exc: ValidationError, cls: type) -> str:
    """pydantic's errors as one line: `field.path: what is wrong (accepts ...), got VALUE; ...`."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or cls.__name__
        if err["type"] == "unexpected_keyword_argument":
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            parts.append(f"unknown setting {loc!r} (known: {known})")
            continue
        accepts = _description(cls, err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        msg = msg.replace("Input should be", "must be", 1)
        msg = f" {msg}" if msg.startswith("must") else f": {msg}"
        hint = f" ({accepts})" if accepts and accepts not in msg else ""
        parts.append(f"{loc}{msg}{hint}, got {_short(err['input'])}")
    return "invalid job config: " + "; ".join(parts)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _description(cls: type, loc: tuple) -> str | None:
    """What the field at a pydantic error location accepts (the `description` of its annotation), walking
    nested dataclasses, dict values and tuple items: ("resources", "depth", "num_gpus") -> StageResources."""
    hint: object = cls
    found = None
    for part in loc:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(part, str):
            info = getattr(hint, "__pydantic_fields__", {}).get(part)
            if info is None:
                return found
            hint, found = info.annotation, info.description or found
            if info.metadata:
                hint = Annotated[(hint, *info.metadata)]
        else:  # dict[str, X] / tuple[X, ...] -> X
            args = [a for a in typing.get_args(hint) if a is not Ellipsis]
            hint = args[-1] if args else hint
        while True:  # X | None -> X; Annotated[X, Field(description=...)] -> X, remembering the description
            if typing.get_origin(hint) is Annotated:
                base, *meta = typing.get_args(hint)
                found = next((m.description for m in meta if getattr(m, "description", None)), found)
                hint = base
            elif typing.get_origin(hint) in (typing.Union, types.UnionType):
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            else:
                break
    return found
