"""The one Annotator interface: shared pre/post-processing once, the model call in subclasses.

An annotator loads its model once in `__init__(config, device)` and labels a
Ray-style batch: `__call__({"image": [HxWx3 uint8, ...]}) -> {domain: [label | None, ...]}`.
Inputs may have different sizes; each label comes back at its input's own size
(controlnet_aux silently rounds to multiples of 64; we do not).

The base class does, once for every annotator: resize to the model's working
resolution keeping aspect, group same-size inputs into real batches, device and
dtype placement, autocast on GPU, `torch.inference_mode()`, channels_last on
CPU (and, for models that gain from it, a call's images side by side on threads),
and resizing the output back. A subclass writes only `forward()` (a batched
tensor call), or overrides `annotate()` when its model is not a tensor program
(OpenCV, a detector that renders skeletons).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class AnnotationError(Exception):
    """A per-image failure an annotator reports in place of a label (e.g. an empty caption).

    Annotators return it inside their output list instead of raising, so one bad
    image does not fail its batch; the pipeline turns it into an error record
    with stage `annotate:<name>`, error `reason` and detail `str(self)`.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class AnnotatorConfig:
    """Settings shared by every annotator. Presets subclass or `dataclasses.replace` this; nothing mutates it.

    `resolution` is the working short side (0 = the input's own size); `multiple_of`
    rounds the working size for models with strided backbones. `model_id` is a hub id
    or a local folder; `revision` pins the hub commit.
    """

    model_id: str | None = None
    revision: str | None = None
    resolution: int = 512
    multiple_of: int = 8
    max_batch: int = 8
    dtype: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "float32"/"float16"/"bfloat16"
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


class Annotator:
    """Base class of every annotator. Subclasses set `domain` and implement `forward` or `annotate`."""

    domain: ClassVar[str]
    # "bilinear" for continuous labels; "nearest" for class maps (segmentation).
    resize_back: ClassVar[str] = "bilinear"
    # Number of output channels of `forward` (1 for HxW labels, 3 for HxWx3).
    out_channels: ClassVar[int] = 1
    # On CPU, the most working-size pixels in one `forward` call (None: `max_batch` images). A
    # convolution stack that is compute-bound on CPU gains nothing from a batch there, and a batch's
    # activations outgrow the cache (docs/benchmarks.md, "the three annotators below 1.0x").
    cpu_batch_pixels: ClassVar[int | None] = None
    # On CPU, label the images of a call concurrently, one intra-op thread each, instead of one
    # batch at a time on every thread. Set where it measured faster: a model whose kernels scale
    # badly across threads (small convolutions, norms, upsampling) keeps every core busier this
    # way; one made of large convolutions gains nothing (docs/benchmarks.md, "images in parallel").
    cpu_image_parallel: ClassVar[bool] = False

    def __init__(self, config: AnnotatorConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device
        self.name = type(self).__name__

    # ----- what subclasses implement -----------------------------------------------------------
    def forward(self, x):  # pragma: no cover - interface
        """Batched model call. x: float32 Bx3xhxw in [0, 1] on `self.device`; returns BxCxh'xw' float.

        Output may be at any resolution (it is resized back); C = `out_channels`.
        """
        raise NotImplementedError

    def postprocess(self, label: np.ndarray) -> np.ndarray | None:
        """Per-image hook on the label at full resolution (float HxW or HxWxC). Default: identity."""
        return label

    # ----- the shared machinery --------------------------------------------------------------
    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        images = list(batch["image"])
        return {self.domain: self.annotate(images)}

    def annotate(self, images: Sequence[np.ndarray]) -> list[np.ndarray | AnnotationError | None]:
        """Label a list of uint8 HxWx3 images of any sizes; returns one label (or None) per image."""
        import torch

        out: list[np.ndarray | None] = [None] * len(images)
        work = list(self.batches(images))
        threads = torch.get_num_threads()
        if self.cpu_image_parallel and torch.device(self.device).type == "cpu" and threads > 1 and len(images) > 1:
            # One image per task, largest first (so the last tasks are short and no thread idles long).
            tasks = sorted(((size, [i]) for size, chunk in work for i in chunk), key=lambda t: -t[0][0] * t[0][1])
            _in_threads(lambda task: self._label(images, *task, out), tasks, threads)
        else:
            for size, chunk in work:
                self._label(images, size, chunk, out)
        return out

    def _label(self, images: Sequence[np.ndarray], size: tuple[int, int], chunk: list[int], out: list) -> None:
        """Run one same-size batch (`chunk`, indices into `images`) at `size` and store its labels in `out`."""
        import torch

        with torch.inference_mode(), self._autocast():  # both are thread-local: entered by whoever runs this
            y = self.forward(self._to_tensor([images[i] for i in chunk], size))
            for j, i in enumerate(chunk):
                h, w = images[i].shape[:2]
                out[i] = self.postprocess(self._back_to_numpy(y[j : j + 1], (h, w)))

    def batches(self, images: Sequence[np.ndarray]) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """Validate the inputs, then yield (working size, input indices): same-size groups of at most `max_batch`."""
        for img in images:
            check_image(img)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[working_size(img.shape[:2], self.config.resolution, self.config.multiple_of)].append(i)
        for size, idx in groups.items():
            step = self.config.max_batch
            if self.cpu_batch_pixels and str(self.device).startswith("cpu"):
                step = max(1, min(step, self.cpu_batch_pixels // (size[0] * size[1])))
            for start in range(0, len(idx), step):
                yield size, idx[start : start + step]

    def _autocast(self):
        import contextlib

        import torch

        dtype = self.autocast_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def autocast_dtype(self):
        """The autocast dtype: bf16 on CUDA under "auto", none on CPU (fp32 is faster there)."""
        import torch

        on_cuda = torch.device(self.device).type == "cuda"
        if self.config.dtype == "auto":
            return torch.bfloat16 if on_cuda else None
        if self.config.dtype == "float32":
            return None
        return getattr(torch, self.config.dtype)

    def _to_tensor(self, images: list[np.ndarray], size: tuple[int, int]):
        """Stack uint8 HxWx3 images into float Bx3xhxw in [0, 1] at `size` (antialiased bilinear).

        On CPU the resize runs on the uint8 pixels, before the float conversion: torch's
        uint8 antialiased bilinear kernel on channels_last (the one torchvision's resize
        uses) is ~15x cheaper than the float one and differs by at most one grey level
        (tests/test_fast_paths.py). On CUDA one host->device copy of the uint8 batch, then
        the resize and normalisation run on the device.
        """
        import torch

        on_cpu = torch.device(self.device).type == "cpu"
        groups = [images] if _same_shape(images) else [[im] for im in images]
        parts = []
        for group in groups:
            # np.require copies only read-only or non-contiguous inputs (torch refuses to wrap those silently).
            batch = np.stack(group) if len(group) > 1 else np.require(group[0], requirements=["C", "W"])[None]
            # NHWC memory viewed as NCHW: a channels_last tensor, no copy.
            x = torch.from_numpy(batch).permute(0, 3, 1, 2)
            if on_cpu:
                x = _resize(x, size).float().div_(255.0)
            else:
                x = _resize(x.to(self.device, non_blocking=True).float().div_(255.0), size)
            parts.append(x)
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        if on_cpu:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.clamp_(0.0, 1.0)

    def _back_to_numpy(self, y, size: tuple[int, int]) -> np.ndarray:
        import torch.nn.functional as F

        y = y.float()
        if tuple(y.shape[-2:]) != size:
            if self.resize_back == "nearest":
                y = F.interpolate(y, size=size, mode="nearest-exact")
            else:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        arr = y[0].cpu().numpy()
        return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)

    def provenance(self) -> dict[str, str | None]:
        return {
            "domain": self.domain,
            "annotator": self.name,
            "model_id": self.config.model_id,
            "revision": self.config.revision,
            "parameters": self.config.to_json(),
        }


class NumpyAnnotator(Annotator):
    """Base for annotators that are not tensor programs (OpenCV filters): implement `label_one`."""

    def annotate(self, images: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        out = []
        for img in images:
            check_image(img)
            out.append(self.label_one(img))
        return out

    def label_one(self, image: np.ndarray) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError


def check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"annotators take uint8 HxWx3 RGB arrays, got {getattr(img, 'dtype', type(img))} {shape}")
    if min(img.shape[:2]) < 1:
        raise ValueError(f"empty image of shape {img.shape}")


def working_size(hw: tuple[int, int], short_side: int, multiple_of: int) -> tuple[int, int]:
    """(h, w) at which the model runs: short side = `short_side` keeping aspect (0 = unchanged),
    each side rounded to the nearest multiple of `multiple_of` (at least one multiple)."""
    h, w = hw
    if short_side > 0:
        scale = short_side / min(h, w)
        h, w = h * scale, w * scale
    m = max(1, multiple_of)
    return max(m, int(math.floor(h / m + 0.5)) * m), max(m, int(math.floor(w / m + 0.5)) * m)


def _in_threads(fn, tasks: list, threads: int) -> None:
    """fn(task) for every task on up to `threads` pool threads that share the caller's `threads` torch
    intra-op threads (one each when there are at least as many tasks); the caller's count is restored
    afterwards. torch releases the GIL inside its kernels, so the pool threads' kernels run on separate
    cores; the first exception is raised here."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    workers = min(threads, len(tasks))
    share = max(1, threads // workers)  # 8 images on 16 threads: 8 at once with 2 threads each

    def one(task):
        # Per thread for OpenMP (the pool's threads); MKL's count is process-wide, so it is restored below.
        torch.set_num_threads(share)
        fn(task)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="annotate") as pool:
            for result in [pool.submit(one, t) for t in tasks]:
                result.result()
    finally:
        torch.set_num_threads(threads)


def _resize(x, size: tuple[int, int]):
    """Antialiased bilinear resize of a Bx3xhxw tensor (uint8 or float) to `size`; a no-op at that size."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _same_shape(images: list[np.ndarray]) -> bool:
    return len({im.shape for im in images}) == 1

