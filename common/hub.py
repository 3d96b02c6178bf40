"""Model files from the Hugging Face Hub (a hub id at a pinned revision) or from a local folder, with one
line on failure that names the model and how to provide it.

Annotators (`annotators/loading.py`) and Jodi's encoders (`jodi/codecs.py`, `jodi/features.py`, Jodi's own
weights in `jodi/model.py`) all load through these functions, so "weights missing" reads the same everywhere
and `HF_HUB_OFFLINE=1` (huggingface_hub's offline switch) is honoured the same way.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path


class ModelUnavailableError(RuntimeError):
    """Weights could not be found locally or downloaded (one line says which and how to get them)."""


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def missing_model_message(name: str, model_id: str | None, revision: str | None, filename: str | None = None,
                          provide: str | None = None) -> str:
    """The one line a user sees when weights are missing: which model, and how to provide it.

    `provide` says how to pass local weights instead; the default is the `jodi label` flag.
    """
    what = f"{model_id}/{filename}" if filename else f"{model_id}"
    pinned = f"{what}@{revision}" if revision else what
    command = f"huggingface-cli download {model_id}{f' {filename}' if filename else ''}"
    provide = provide or f"pass a local folder with `--model {name}=/path/to/model`"
    return (
        f"{name}: model '{pinned}' is not in the local Hugging Face cache and could not be downloaded"
        f"{' (HF_HUB_OFFLINE=1)' if is_offline() else ''}; run `{command}"
        f"{f' --revision {revision}' if revision else ''}` on a machine with network access (then copy the cache), "
        f"or {provide}"
    )


def load_pretrained(loader, name: str, model_id: str | None, revision: str | None, provide: str | None = None,
                    **kwargs):
    """Call `loader(model_id, revision=..., **kwargs)` (any `from_pretrained`), turning
    "weights not found" failures into a ModelUnavailableError with the one-line message.

    A local folder is passed through unchanged (no revision: it is whatever the folder holds).
    """
    if model_id is None:
        raise ModelUnavailableError(f"{name}: no model_id configured; pass `--model {name}=/path/to/model`")
    local = Path(model_id).expanduser()
    if local.exists():
        return loader(str(local), **kwargs)
    if model_id.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"{name}: local model folder '{model_id}' does not exist")
    try:
        return loader(model_id, revision=revision, **kwargs)
    except (OSError, ValueError) as exc:  # transformers/diffusers raise OSError for missing repos/files
        if _looks_like_missing_weights(exc):
            raise ModelUnavailableError(missing_model_message(name, model_id, revision, provide=provide)) from exc
        raise


def hub_file(name: str, repo_id: str, filename: str, revision: str | None, provide: str | None = None) -> str:
    """Path of one file of a hub repo (or of a local folder named by `repo_id`), same error contract."""
    local = Path(repo_id).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.exists():
            raise ModelUnavailableError(f"{name}: '{filename}' not found in local folder '{repo_id}'")
        return str(path)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors are many classes; all mean "not available"
        message = missing_model_message(name, repo_id, revision, filename=filename, provide=provide)
        raise ModelUnavailableError(message) from exc


def require(name: str, module: str, install: str):
    """Import an optional package at construction, or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{name} needs the `{module.split('.')[0]}` package: run `{install}`") from exc


def _looks_like_missing_weights(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    needles = (
        "offline",
        "couldn't connect",
        "could not connect",
        "not a local folder",
        "does not appear to have",
        "repository not found",
        "is not a valid model identifier",
        "localentrynotfound",
        "cannot find the requested files",
        "connection",
        "not found in cache",
        "we couldn't",
        "not fully cached",  # diffusers DiffusionPipeline.from_pretrained with HF_HUB_OFFLINE=1
    )
    return any(n in text for n in needles)
