"""LoRA fine-tuning of Jodi / MMGen through `peft` (Hu et al., arXiv 2106.09685).

Targets: the linears of self-attention (`attn.qkv`, `attn.proj`), of cross-attention (`q_linear`,
`kv_linear`, `proj`) and the two 1x1 convolutions of the Mix-FFN (`inverted_conv`, `point_conv`; a 1x1
conv is a per-token linear). The depthwise 3x3 conv is left frozen: with one filter per channel it has
~9 parameters per channel, less than a rank-r adapter would add. Per-domain patch embedders and final
layers can be fully trained alongside (`train_heads`), which is what a new label domain needs.

An adapter file is a safetensors file holding only the adapter tensors (and the fully trained heads), with
the LoRA settings in its metadata, so it loads onto the released checkpoint by itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|cross_attn\.(q_linear|kv_linear|proj)|mlp\.(inverted_conv|point_conv)\.conv)"
HEADS = ("x_embedders", "final_layers")
ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: float | None = None  # None = rank: LoRA's scale alpha / r is 1
    dropout: float = 0.0
    train_heads: bool = True


def add_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap the target layers of `model` in place with LoRA adapters; freeze everything but the adapters
    (and the per-domain heads with `train_heads`). Returns `model`."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha or settings.rank, lora_dropout=settings.dropout,
        target_modules=LORA_TARGETS,
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or (settings.train_heads and name.startswith(HEADS))
    model.lora_settings = settings
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: every LoRA matrix, plus the heads when they were trained."""
    settings: LoraSettings = model.lora_settings
    return {
        name: p.detach().cpu().contiguous()
        for name, p in model.state_dict().items()
        if "lora_" in name or (settings.train_heads and name.startswith(HEADS))
    }


def save_adapter(model: nn.Module, path: str) -> None:
    """Write the adapter alone as safetensors, its settings in the file's metadata."""
    from safetensors.torch import save_file

    save_file(adapter_state_dict(model), path, metadata={"jodi_lora": json.dumps(asdict(model.lora_settings))})


def load_adapter(model: nn.Module, path: str) -> nn.Module:
    """Add the adapter of `path` to `model` (e.g. the released Jodi) and load its tensors; strict: every
    tensor of the file must find its place and every adapter tensor of the model must be in the file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = (f.metadata() or {}).get("jodi_lora")
    if meta is None:
        raise ValueError(f"{path} is not a Jodi LoRA adapter (no 'jodi_lora' metadata)")
    settings = LoraSettings(**json.loads(meta))
    add_lora(model, settings)
    tensors = load_file(path)
    expected = set(adapter_state_dict(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{path} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    # assign: a model built on the meta device (the 1.6B preset) adopts the file's tensors directly
    model.load_state_dict(tensors, strict=False, assign=True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer (W + scale * B A) and put the plain layer back, so the model
    has the original parameter names again and runs at the base model's speed. Returns `model`."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    return model
