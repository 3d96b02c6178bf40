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
def tiny_overrides(name: str) -> dict:
    """build() overrides of `name`'s tiny random checkpoint (written on first use) and test sizes."""
    from annotators.caption import CaptionerConfig, QwenVLConfig
    from annotators.registry import REGISTRY

    entry = REGISTRY[name]
    if name not in RANDOM_CHECKPOINTS:  # weights-free
        return {}
    folder = _folder(name)
    kwargs = {"write": not (folder / "model_index.json").exists()} if name.startswith("lotus") else {}
    overrides = dict(RANDOM_CHECKPOINTS[name](folder, **kwargs))
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
