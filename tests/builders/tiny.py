"""Tiny random-weight annotators of every registry entry, written and built once per test process.

`tiny_overrides(name)` writes the entry's random checkpoint (RANDOM_CHECKPOINTS) into a temp
folder the first time it is asked for, and returns the `build()` overrides that load it plus the
small working sizes tests run at. `tiny_annotator(name)` builds it once. Test modules share both,
so a model used by the contract test and a family test is written and loaded once per session.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from tests.builders import RANDOM_CHECKPOINTS

TEST_RESOLUTION = 64  # working short side of the edge/lineart tests
CAPTION_TOKENS = 4  # new tokens per caption: enough to see text, cheap to generate
# Tiny pixel budget for the tiny Qwen vision towers: 4..12 merged image tokens per image.
QWEN_TEST_PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": 12 * 28 * 28}

_ROOT = Path(tempfile.mkdtemp(prefix="jodi-tiny-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _folder(name: str) -> Path:
    # Lotus depth and normal share one architecture, and openpose/openpose_full one folder of nets.
    shared = {"lotus_depth": "lotus_normal", "openpose_full": "openpose"}
    return _ROOT / shared.get(name, name)


@functools.cache
def tiny_checkpoint(name: str) -> tuple[Path, dict]:
    """(folder, build() overrides) of `name`'s tiny random checkpoint as its builder returns them, without
    the test sizes; written on first use (treat the dict as read-only)."""
    folder = _folder(name)
    return folder, RANDOM_CHECKPOINTS[name](folder)


@functools.cache
def tiny_overrides(name: str) -> dict:
    """build() overrides of `name`'s tiny random checkpoint (written on first use) and test sizes."""
    from annotators.caption import CaptionerConfig, QwenVLConfig
    from annotators.registry import REGISTRY

    entry = REGISTRY[name]
    if name not in RANDOM_CHECKPOINTS:  # weights-free
        return {}
    if name.startswith("lotus"):  # depth and normal share one folder: the second only points at it
        folder = _folder(name)
        overrides = dict(RANDOM_CHECKPOINTS[name](folder, write=not (folder / "model_index.json").exists()))
    else:
        overrides = dict(tiny_checkpoint(name)[1])
    if entry.domain in ("edge", "lineart"):
        overrides.setdefault("resolution", TEST_RESOLUTION)
    if isinstance(entry.preset, CaptionerConfig):
        overrides.setdefault("max_new_tokens", CAPTION_TOKENS)
    if isinstance(entry.preset, QwenVLConfig):
        overrides = {**QWEN_TEST_PIXELS, **overrides}
    return overrides


@functools.cache
def tiny_annotator(name: str):
    """The registry entry `name` built once on its tiny checkpoint (treat as read-only)."""
    from annotators.registry import build

    return build(name, **tiny_overrides(name))


def label_photos(tmp_path: Path, name: str, overrides: dict, sizes: list[tuple[int, int]]) -> tuple[dict, Path]:
    """A real label job with annotator `name` over synthetic photos of `sizes` (H, W), written under
    `tmp_path/in`, output in `tmp_path/out` (short side 64) -> (stats, output folder)."""
    from PIL import Image

    from pipeline.config import LabelJobConfig
    from pipeline.job import run_label_job
    from tests.bad_inputs import photo

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, size in enumerate(sizes):
        Image.fromarray(photo(size)).save(src / f"p{i}.png")
    cfg = LabelJobConfig(input=str(src), output=str(out), annotators=(name,), min_short_side=32,
                         target_short_side=64, shard_size=4, overrides={name: overrides})
    return run_label_job(cfg, progress=False), out
