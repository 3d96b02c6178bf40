"""Loading checkpoint files without running code from them: every `.pth`/`.pt`/`.safetensors` read in
jodi/ and annotators/ goes through `load_torch_file`.

A PyTorch pickle can execute arbitrary code when unpickled, so only `torch.load(weights_only=True)` is
used (tensors, containers and plain types; PyTorch docs, "torch.load" / weights_only). A file that
holds other Python objects is refused with one line saying how to convert it to safetensors, the
format that cannot carry code (huggingface.co/docs/safetensors). The check is never switched off.
"""

from __future__ import annotations

import os
import pickle
import re


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as tensors (not a checkpoint, truncated)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint that would run Python code when loaded."""


def unsafe_checkpoint_message(path: str, detail: str = "") -> str:
    found = re.search(r"GLOBAL ([\w.]+)", detail)
    what = f" (it references {found.group(1)})" if found else ""
    return (
        f"{path} is not a safe checkpoint: it holds pickled Python objects{what} that would run code when "
        "loaded, and only tensors are loaded here; where you trust its source, save its tensors with "
        "safetensors.torch.save_file(state_dict, 'model.safetensors') and pass that file instead"
    )


def load_torch_file(path: str | os.PathLike, map_location: str = "cpu"):
    """Tensors (possibly nested in dicts/lists) of a `.safetensors` file or a weights-only PyTorch file."""
    import torch

    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device=map_location)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error classes for bad headers
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a Python object outside torch's weights-only allowlist
            raise UnsafeCheckpointError(unsafe_checkpoint_message(path, str(exc))) from None
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        detail = found.group(1).strip() if found else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError) as exc:  # not a zip/pickle file, truncated
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first})") from None
