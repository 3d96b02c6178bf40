"""Resolving model weights: hub id + pinned revision, or a local folder, with one clear line on failure.

The hub constants several model families share live here, pinned once.
"""

from __future__ import annotations

import os
from pathlib import Path

from schemas.checkpoint import load_torch_file

# lllyasviel/Annotators holds controlnet_aux's checkpoints (table5_pidinet.pth, ControlNetHED.pth,
# sk_model*.pth, netG.pth, body_pose_model.pth, hand_pose_model.pth, facenet.pth, scannet.pt),
# pinned at the commit that comfyui_controlnet_aux download manifests use.
ANNOTATORS_REPO = "lllyasviel/Annotators"
ANNOTATORS_REVISION = "982e7edaec38759d914a963c48c4726685de7d96"
CONTROLNET_AUX_HINT = "pip install 'controlnet-aux==0.0.10'"


class ModelUnavailableError(RuntimeError):
    """Weights for an annotator could not be found locally or downloaded."""


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def missing_model_message(annotator: str, model_id: str | None, revision: str | None) -> str:
    """The one line a user sees when weights are missing: which model, and how to provide it."""
    pinned = f"{model_id}@{revision}" if revision else f"{model_id}"
    return (
        f"{annotator}: model '{pinned}' is not in the local Hugging Face cache and could not be downloaded"
        f"{' (HF_HUB_OFFLINE=1)' if is_offline() else ''}; run `huggingface-cli download {model_id}"
        f"{f' --revision {revision}' if revision else ''}` on a machine with network access (then copy the cache), "
        f"or pass a local folder with `--model {annotator}=/path/to/model`"
    )


def load_pretrained(loader, annotator: str, model_id: str | None, revision: str | None, **kwargs):
    """Call `loader(model_id, revision=..., **kwargs)` (any `from_pretrained`), turning
    "weights not found" failures into a ModelUnavailableError with the one-line message.

    A local folder is passed through unchanged (no revision: it is whatever the folder holds).
    """
    if model_id is None:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/model`")
    local = Path(model_id).expanduser()
    if local.exists():
        return loader(str(local), **kwargs)
    if model_id.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"{annotator}: local model folder '{model_id}' does not exist")
    try:
        return loader(model_id, revision=revision, **kwargs)
    except (OSError, ValueError) as exc:  # transformers/diffusers raise OSError for missing repos/files
        if _looks_like_missing_weights(exc):
            raise ModelUnavailableError(missing_model_message(annotator, model_id, revision)) from exc
        raise


def hub_file(annotator: str, repo_id: str, filename: str, revision: str | None) -> str:
    """Path of one file of a hub repo (or of a local folder named by `repo_id`), same error contract."""
    local = Path(repo_id).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.exists():
            raise ModelUnavailableError(f"{annotator}: '{filename}' not found in local folder '{repo_id}'")
        return str(path)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors are many classes; all mean "not available"
        raise ModelUnavailableError(missing_model_message(annotator, f"{repo_id}/{filename}", revision)) from exc


def load_torch_checkpoint(annotator: str, repo_id: str | None, filename: str, revision: str | None) -> dict:
    """A .pth state dict from a hub repo (or local folder): weights_only, on CPU, `module.` prefixes stripped.

    Checkpoints saved as `{"state_dict": ...}` (PiDiNet's training script) or `{"model": ...}`
    (NormalBae's scannet.pt) are unwrapped.
    """
    if not repo_id:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/folder`")
    path = hub_file(annotator, repo_id, filename, revision)
    state = load_torch_file(path)  # weights only; a pickle is refused in one line
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {k.removeprefix("module."): v for k, v in state.items()}


def require(annotator: str, module: str, install: str):
    """Import an optional package at construction, or fail with the command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{annotator} needs the `{module.split('.')[0]}` package: run `{install}`") from exc


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
