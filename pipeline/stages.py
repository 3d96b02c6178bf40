"""The Ray Data stages of the label job: decode -> annotate (one stage per annotator group) -> encode -> write.

Each stage is a callable class over a numpy batch dict, so it can be tested on a
hand-built batch without Ray. Failures never drop a row: they set its `error`
columns, later stages skip it, and the writer files it in the errors table.

Only annotators hold state worth keeping (their models), so only `AnnotateStage` runs
in Ray actors; decode, encode and write run as Ray *tasks* through `run_stage`. Ray Data
fuses a task stage into the stage after it when their resources match, so the job
can run decode inside the first annotator's actor and encode + write as one task
(see `pipeline/job.py`), instead of one actor pool per stage - each a process that
imports its libraries and holds its own copy of every batch.

This module imports no model code at import time: a decode/encode/write worker
should not pay for torch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from pipeline.decode import DecodeError, DecodeRules, content_id, decode_image, read_bytes, read_caption
from schemas.domains import STORED_DOMAINS
from schemas.encoding import label_ndim

# How many dimensions each domain's raw label has (HxW or HxWx3); an absent label is an
# empty array of that rank, which keeps every column a tensor column in Ray's blocks.
LABEL_NDIM = {d: label_ndim(d) for d in STORED_DOMAINS}  # Joint's seven and those beyond (schemas/domains.py)
_PLACEHOLDER_IMAGE = np.zeros((1, 1, 3), np.uint8)


def absent(domain: str) -> np.ndarray:
    return np.zeros((0,) * LABEL_NDIM[domain], np.float32)


def is_absent(label: np.ndarray) -> bool:
    return label.size == 0


@dataclass(frozen=True)
class DecodeSpec:
    rules: DecodeRules
    sidecar_captions: bool = True  # read a file input's `caption_uri` (photo.txt / photo.json)


# Columns a reader may put before DecodeStage; they do not travel further (the bytes would only cost memory).
_READ_COLUMNS = ("data", "caption", "read_error", "read_detail", "caption_uri")


class DecodeStage:
    """Bytes -> md5 id -> decoded, resized RGB, plus the input's own caption (`source_caption`).

    Rows either carry their bytes already (`data`, `caption`, `read_error` from `pipeline.containers`)
    or name a file (`source`, `caption_uri`) that is read here. Every row comes out, with an error if it failed.
    """

    def __init__(self, spec: DecodeSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        n = len(batch["source"])
        out = {k: [] for k in ("id", "image", "height", "width", "error", "error_stage", "detail", "source_caption")}
        for i in range(n):
            rid, caption = "", ""
            try:
                data = self._bytes(batch, i)
                rid = content_id(data)
                caption = self._caption(batch, i)
                image = decode_image(data, self.spec.rules)
                error, stage, detail = "", "", ""
            except DecodeError as exc:
                image, error, stage, detail = _PLACEHOLDER_IMAGE, exc.reason, "decode", str(exc)
            except Exception as exc:  # noqa: BLE001 - any other failure is still a reasoned error row
                image, error, stage, detail = (
                    _PLACEHOLDER_IMAGE,
                    "decode_failed",
                    "decode",
                    f"{type(exc).__name__}: {exc}",
                )
            out["id"].append(rid)
            out["image"].append(image)
            out["height"].append(image.shape[0] if not error else 0)
            out["width"].append(image.shape[1] if not error else 0)
            out["error"].append(error)
            out["error_stage"].append(stage)
            out["detail"].append(detail[:500])
            out["source_caption"].append(caption)
        result = {k: v for k, v in batch.items() if k not in _READ_COLUMNS}
        result.update({k: _column(v) for k, v in out.items()})
        result["t_decode"] = np.full(n, (time.perf_counter() - t0) / max(1, n))
        return result

    @staticmethod
    def _bytes(batch: dict[str, np.ndarray], i: int) -> bytes:
        if "data" not in batch:
            return read_bytes(str(batch["source"][i]))
        if batch["read_error"][i]:
            raise DecodeError(str(batch["read_error"][i]), str(batch["read_detail"][i]))
        return bytes(batch["data"][i])

    def _caption(self, batch: dict[str, np.ndarray], i: int) -> str:
        if "caption" in batch:
            return str(batch["caption"][i])
        uri = str(batch["caption_uri"][i]) if "caption_uri" in batch else ""
        return read_caption(uri) if uri and self.spec.sidecar_captions else ""


def run_stage(batch: dict[str, np.ndarray], *, stage: type, kwargs: dict):
    """A stage class as a Ray task: built per batch (their constructors are cheap), so Ray Data may fuse
    it with its neighbour. A generator stage (containers) stays a generator."""
    return stage(**kwargs)(batch)


class AnnotateStage:
    """Runs one or more annotators (colocated in one actor) on the rows that have no error yet."""

    def __init__(self, specs: list[tuple[str, dict]], device: str = "auto") -> None:
        import annotators

        self.device = _pick_device(device)
        _set_torch_threads()
        self.annotators = [annotators.build(name, device=self.device, **overrides) for name, overrides in specs]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = dict(batch)
        n = len(batch["id"])
        error = list(batch["error"])
        stage = list(batch["error_stage"])
        detail = list(batch["detail"])
        for ann in self.annotators:
            t0 = time.perf_counter()
            todo = [i for i in range(n) if not error[i]]
            # Annotators that read an input dataset's own caption (alt_text) get it alongside the image.
            extra = (
                {"source_caption": [str(batch["source_caption"][i]) or None for i in todo]}
                if "source_caption" in batch
                else {}
            )
            # A multi-domain annotator (MoGe-2: depth + normal) labels all its domains in this one call.
            by_domain = self._run(ann, [batch["image"][i] for i in todo], extra)
            for domain, labels in by_domain.items():
                column = [None] * n
                for i, lab in zip(todo, labels, strict=True):
                    if isinstance(lab, Exception):
                        error[i] = getattr(lab, "reason", type(lab).__name__)
                        stage[i] = f"annotate:{ann.name}"
                        detail[i] = str(lab)[:500]
                    else:
                        column[i] = lab
                result[_label_column(ann, domain)] = _label_values(ann, column, domain)
            result[f"t_{ann.name}"] = np.full(n, (time.perf_counter() - t0) / max(1, len(todo)))
        result.update(error=_column(error), error_stage=_column(stage), detail=_column(detail))
        return result

    @staticmethod
    def _run(ann, images: list[np.ndarray], extra: dict[str, list]) -> dict[str, list]:
        """{domain: labels} of one batch call; if the batch fails, retry image by image so one bad input
        cannot sink its neighbours (a failed image is the same exception in every domain)."""
        from annotators.multi import label_domains

        domains = label_domains(ann)
        if not images:
            return {d: [] for d in domains}
        try:
            result = ann({"image": images, **extra})
            return {d: list(result[d]) for d in domains}
        except Exception:  # noqa: BLE001 - isolate the failing image below
            out: dict[str, list] = {d: [] for d in domains}
            for j, image in enumerate(images):
                try:
                    one = {k: [v[j]] for k, v in extra.items()}
                    result = ann({"image": [image], **one})
                    for d in domains:
                        out[d].append(result[d][0])
                except Exception as exc:  # noqa: BLE001
                    exc.reason = getattr(exc, "reason", type(exc).__name__)
                    for d in domains:
                        out[d].append(exc)
            return out


def vllm_caption_columns(batch: dict[str, np.ndarray], caption_key: str, annotator: str) -> dict[str, np.ndarray]:
    """After a `ray.data.llm` captioning stage: its `caption`/`caption_error` columns -> our
    `caption__<key>` column and error columns (rows that already failed keep their first error)."""
    result = {k: v for k, v in batch.items() if k not in ("caption", "caption_error")}
    n = len(batch["id"])
    error, stage, detail = list(batch["error"]), list(batch["error_stage"]), list(batch["detail"])
    captions = []
    for i in range(n):
        text, failed = batch["caption"][i], batch["caption_error"][i]
        if failed and not error[i]:
            error[i], stage[i], detail[i] = str(failed), f"annotate:{annotator}", "vLLM returned no caption"
        captions.append("" if error[i] or text is None else str(text))
    result[f"caption__{caption_key}"] = _column(captions)
    result.update(error=_column(error), error_stage=_column(stage), detail=_column(detail))
    return result


def _label_column(ann, domain: str) -> str:
    if domain == "caption":
        return f"caption__{ann.config.caption_key}"
    return f"label_{domain}"


def _label_values(ann, column: list, domain: str) -> np.ndarray:
    if domain == "caption":
        return _column(["" if c is None else str(c) for c in column])
    return _column([absent(domain) if c is None else np.asarray(c) for c in column])


class EncodeStage:
    """Labels -> stored uint8 encodings -> file bytes (JPEG / PNG), plus the image itself."""

    def __init__(self, domains: list[str], jpeg_quality: int = 95, source_caption_key: str = "source") -> None:
        self.domains = domains
        self.quality = jpeg_quality
        self.source_caption_key = source_caption_key  # an input dataset's own caption (alt text) is kept under it

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from schemas.codec import encode_file
        from schemas.encoding import encode_label

        t0 = time.perf_counter()
        n = len(batch["id"])
        error, stage, detail = list(batch["error"]), list(batch["error_stage"]), list(batch["detail"])
        files = {d: [b""] * n for d in ["image", *self.domains]}
        captions = []
        caption_cols = sorted(k for k in batch if k.startswith("caption__"))
        for i in range(n):
            caps = {k[len("caption__") :]: str(batch[k][i]) for k in caption_cols if batch[k][i]}
            if "source_caption" in batch and batch["source_caption"][i]:
                caps.setdefault(self.source_caption_key, str(batch["source_caption"][i]))
            captions.append(json.dumps(caps, ensure_ascii=False, sort_keys=True))
            if error[i]:
                continue
            try:
                if "encoded_image" in batch and len(batch["encoded_image"][i]):
                    files["image"][i] = bytes(batch["encoded_image"][i])  # incremental: keep the stored JPEG
                else:
                    files["image"][i] = encode_file("image", batch["image"][i], self.quality)
                for d in self.domains:
                    label = batch[f"label_{d}"][i]
                    if not is_absent(label):
                        files[d][i] = encode_file(d, encode_label(d, label), self.quality)
            except Exception as exc:  # noqa: BLE001
                error[i], stage[i], detail[i] = "encode_failed", "encode", f"{type(exc).__name__}: {exc}"[:500]
        keep = ("source", "shard", "row", "id", "height", "width", "source_caption")
        result = {k: batch[k] for k in keep if k in batch}
        result.update({k: v for k, v in batch.items() if k.startswith("t_")})
        result.update({f"file_{d}": _column(v) for d, v in files.items()})
        result.update(
            captions=_column(captions), error=_column(error), error_stage=_column(stage), detail=_column(detail)
        )
        result["t_encode"] = np.full(n, (time.perf_counter() - t0) / max(1, n))
        return result


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ray
    import torch

    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", []) if ray.is_initialized() else []
    return "cuda" if gpus and torch.cuda.is_available() else "cpu"


def _set_torch_threads() -> None:
    """Torch threads = this actor's CPU share, so colocated stages do not oversubscribe the cores."""
    import torch

    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # noqa: BLE001 - outside Ray: leave torch's default
        return
    torch.set_num_threads(max(1, int(round(cpus))))


def _column(values: list) -> np.ndarray:
    """A list -> numpy column; ragged arrays and bytes become object arrays (Ray stores them as such)."""
    if values and isinstance(values[0], np.ndarray | bytes):
        col = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):  # element-wise: slice assignment would try to broadcast same-shape arrays
            col[i] = v
        return col
    return np.asarray(values)


class WriteStage:
    """One of a pool of writers: puts the Joint files of good rows and one staging part per shard in the
    batch (deterministic names, so a retried batch overwrites its own objects); returns one small
    status row per input (source, shard, id, error and the stage timers), never file bytes."""

    def __init__(self, output: str, write_joint: bool, prefix: str = "part-") -> None:
        from pipeline.writer import OutputLayout

        self.layout = OutputLayout(output)
        self.write_joint = write_joint
        self.prefix = prefix

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        n = len(batch["source"])
        domains = [d for d in STORED_DOMAINS if f"file_{d}" in batch]
        by_shard: dict[int, dict[str, list]] = {}
        joint: list[tuple[str, dict[str, bytes]]] = []
        for i in range(n):
            rid, err = str(batch["id"][i]), str(batch["error"][i])
            files = {d: bytes(batch[f"file_{d}"][i]) for d in domains}
            if not err and self.write_joint:
                joint.append((rid, {"image": bytes(batch["file_image"][i]), **files}))
            rows = by_shard.setdefault(int(batch["shard"][i]), {})
            values = {
                "source": str(batch["source"][i]),
                "shard": int(batch["shard"][i]),
                "id": rid,
                "height": int(batch["height"][i]),
                "width": int(batch["width"][i]),
                "captions": str(batch["captions"][i]),
                "image": None if err else bytes(batch["file_image"][i]),
                **{f"file_{d}": (files[d] or None) if not err else None for d in domains},
                "error": err,
                "error_stage": str(batch["error_stage"][i]),
                "detail": str(batch["detail"][i]),
            }
            for k, v in values.items():
                rows.setdefault(k, []).append(v)
        self.layout.write_joint_files(joint)
        # Parts land after the files they describe: a staged input always has its Joint files.
        for shard, rows in by_shard.items():
            self.layout.write_staging_part(shard, rows, self.prefix)
        status = {k: batch[k] for k in ("source", "shard", "id", "error")}
        status.update({k: v for k, v in batch.items() if k.startswith("t_")})
        status["t_write"] = np.full(n, (time.perf_counter() - t0) / max(1, n))
        return status


class RecordDecodeStage:
    """Incremental labeling: decode images of records already in the output's Parquet shards,
    keeping their stored JPEG so the image is not re-encoded."""

    def __init__(self, output: str) -> None:
        from pipeline.writer import OutputLayout

        self.layout = OutputLayout(output)
        self._shard, self._images = -1, None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from schemas.codec import decode_file

        t0 = time.perf_counter()
        images, encoded = [], []
        for shard, row in zip(batch["shard"], batch["row"], strict=True):
            if int(shard) != self._shard:
                table = self.layout.read_data(int(shard), ["image"])
                self._shard, self._images = int(shard), table.column("image").to_pylist()
            data = self._images[int(row)]["bytes"]
            encoded.append(data)
            images.append(decode_file(data, "RGB"))
        n = len(images)
        result = dict(batch)
        result.update(
            image=_column(images),
            encoded_image=_column(encoded),
            height=np.array([im.shape[0] for im in images]),
            width=np.array([im.shape[1] for im in images]),
            error=_column([""] * n),
            error_stage=_column([""] * n),
            detail=_column([""] * n),
            source_caption=_column([""] * n),
        )
        result["t_decode"] = np.full(n, (time.perf_counter() - t0) / max(1, n))
        return result
