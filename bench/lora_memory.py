"""Trainable parameters and optimizer-state memory of the 1.6B preset: full fine-tuning vs LoRA.

    .venv/bin/python bench/lora_memory.py [--preset jodi_1600m] [--ranks 8,16,32,64]

Everything is built on the meta device (no memory, no random init), with the real `jodi.lora.add_lora`, so
the counts are those of an actual run. AdamW keeps two fp32 tensors per trainable parameter (exp_avg,
exp_avg_sq: 8 bytes); gradients add 4 bytes (fp32) per trainable parameter. Frozen weights still sit in
memory (2 bytes each in bf16), but need neither gradients nor optimizer state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from jodi.lora import LoraSettings, add_lora  # noqa: E402
from jodi.model import build_model  # noqa: E402

GIB = 2**30


def counts(preset: str, settings: LoraSettings | None) -> tuple[int, int]:
    """(all parameters, trainable parameters) of `preset`, with LoRA `settings` or fully trained."""
    with torch.device("meta"):
        model = build_model(preset)
        if settings is not None:
            add_lora(model, settings)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


def row(name: str, total: int, trainable: int) -> str:
    adam = trainable * 8 / GIB
    grads = trainable * 4 / GIB
    return (f"| {name} | {total / 1e6:,.1f} | {trainable / 1e6:,.2f} | {100 * trainable / total:.2f}% | "
            f"{adam:.2f} | {grads:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="jodi_1600m")
    p.add_argument("--ranks", default="8,16,32,64")
    args = p.parse_args()
    print(f"## {args.preset}: trainable parameters and AdamW memory (meta device)")
    print("| setting | parameters (M) | trainable (M) | trainable share | AdamW state GiB (fp32 m, v) | grads GiB (fp32) |")
    print("|---|---|---|---|---|---|")
    print(row("full fine-tuning", *counts(args.preset, None)))
    for rank in (int(r) for r in args.ranks.split(",")):
        for heads in (False, True):
            name = f"LoRA r={rank}" + (" + per-domain heads" if heads else "")
            print(row(name, *counts(args.preset, LoraSettings(rank=rank, train_heads=heads))))


if __name__ == "__main__":
    main()
