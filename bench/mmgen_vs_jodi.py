"""Grouped-token MMGen vs Jodi at the same width and depth, and REPA on vs off.

    .venv/bin/python bench/mmgen_vs_jodi.py [--depth 4] [--width 256] [--latent 16] [--batch 2] [--repeats 3]
                                             [--repa-steps 60] [--threads 2]

1. Training-step throughput (forward + backward, all 8 domains generated) and memory of the two
   architectures built from the same blocks with the same width, depth, heads, batch and latents. Jodi
   runs (1 + K) * N tokens per sample, MMGen N. Models and inputs are built outside the timed region; the
   two are timed alternately in one process (A B A B ...), the best repeat of each is printed. Memory is
   the bytes autograd keeps for the backward pass (saved-tensor hooks), plus parameters; on CUDA also the
   peak allocation.
2. A tiny MMGen trained twice on the same real photographs (tiny random DC-AE latents, tiny random DINOv2
   features), with the same seed: REPA weight 0.5 vs 0. Alignment = mean cosine similarity between the
   projected tokens of the REPA block and the DINOv2 features on held-out images at a fixed noise level.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from jodi.mmgen import MMGEN_PRESETS, MMGenConfig  # noqa: E402
from jodi.model import JodiConfig, build_model  # noqa: E402
from jodi.train.config import DataSource, TrainConfig  # noqa: E402
from jodi.train.data import Batch  # noqa: E402
from jodi.train.loop import build_optimizer, build_scheduler, flow_loss, train_step  # noqa: E402


def _step_inputs(batch: int, side: int, device: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 8, 32, side, side, generator=g).to(device)
    y = torch.randn(batch, 16, 32, generator=g).to(device)
    return x, torch.rand(batch, generator=g).to(device) * 1000, y, torch.zeros(batch, 8, dtype=torch.long, device=device)


def _saved_bytes(model, inputs) -> int:
    """Bytes of the tensors autograd saves for backward in one training forward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*inputs).float().pow(2).mean()
    return total


def _step_seconds(model, inputs) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(*inputs).float().pow(2).mean().backward()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_architectures(args) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    common = dict(depth=args.depth, hidden_size=args.width, num_heads=max(1, args.width // 64), caption_channels=32,
                  model_max_length=16, sample_size=args.latent)
    models = {"jodi": build_model(JodiConfig(**common)).to(device),
              "mmgen": build_model(MMGenConfig(**common)).to(device)}
    inputs = _step_inputs(args.batch, args.latent, device)
    for m in models.values():  # warm-up: allocator, kernels, lazy inits
        _step_seconds(m, inputs)
    best = {k: float("inf") for k in models}
    for _ in range(args.repeats):
        for name, m in models.items():
            best[name] = min(best[name], _step_seconds(m, inputs))
    print(f"## architecture: depth {args.depth}, width {args.width}, 8 domains, latent {args.latent}x{args.latent}, "
          f"batch {args.batch}, {device}, {torch.get_num_threads()} threads")
    print("| model | tokens/sample | params (M) | train step s | samples/s | autograd saved MiB | peak CUDA MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, m in models.items():
        tokens = args.latent**2 * (8 if name == "jodi" else 1)
        saved = _saved_bytes(m, inputs) / 2**20
        peak = "-"
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            _step_seconds(m, inputs)
            peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"
        params = sum(p.numel() for p in m.parameters()) / 1e6
        print(f"| {name} | {tokens} | {params:.1f} | {best[name]:.3f} | {args.batch / best[name]:.2f} | {saved:.0f} | {peak} |")
    print(f"speed-up of grouped tokens: {best['jodi'] / best['mmgen']:.2f}x; saved-activation ratio "
          f"{_saved_bytes(models['jodi'], inputs) / _saved_bytes(models['mmgen'], inputs):.2f}x\n")


def _repa_data(n: int, folder: Path):
    """Latents (n, 8, 32, 4, 4) of real photos (image + 7 simple per-image labels) and DINOv2 features (n, 16, 32)."""
    from skimage import data
    from transformers import Dinov2Config, Dinov2Model

    from jodi.codecs import LatentCodec
    from jodi.features import DinoFeatures

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=56)).save_pretrained(folder / "dino")
    dino = DinoFeatures.from_pretrained(str(folder / "dino"))
    codec = LatentCodec.tiny(folder / "vae", seed=0)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    crops = []
    for k in range(n):
        p = photos[k % len(photos)]
        top, left = rng.integers(0, p.shape[0] - 256), rng.integers(0, p.shape[1] - 256)
        crops.append(p[top:top + 256:2, left:left + 256:2])  # 128 x 128
    images = np.stack(crops)
    pix = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    domains = [pix, pix.flip(-1), pix.mean(1, keepdim=True).expand_as(pix), -pix, pix.roll(8, -1), pix.roll(8, -2),
               pix.clamp(min=0), pix.clamp(max=0)]  # stand-in labels: fixed functions of the image
    with torch.no_grad():
        lat = torch.stack([codec.encode(d) for d in domains], dim=1).float()
        feats = dino(images, (lat.shape[-2], lat.shape[-1]))
    return lat, feats


def _alignment(model, lat, feats) -> float:
    role = torch.zeros(lat.shape[0], 8, dtype=torch.long)
    g = torch.Generator().manual_seed(123)
    sigma = 0.5
    x_t = (1 - sigma) * lat + sigma * torch.randn(lat.shape, generator=g)
    with torch.no_grad():
        _, proj = model(x_t, torch.full((lat.shape[0],), sigma * 1000), torch.zeros(lat.shape[0], dtype=torch.long),
                        role, return_repa=True)
    return torch.nn.functional.cosine_similarity(proj, feats, dim=-1).mean().item()


def compare_repa(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lat, feats = _repa_data(48, Path(tmp))
    train, held = slice(0, 40), slice(40, 48)
    cfg_model = dataclasses.replace(MMGEN_PRESETS["mmgen_tiny"], num_classes=1, repa_dim=feats.shape[-1])
    print(f"## REPA: mmgen_tiny (depth {cfg_model.depth}, width {cfg_model.hidden_size}, REPA block "
          f"{cfg_model.repa_block}), 40 train / 8 held-out photos, batch 8, {args.repa_steps} steps, lr 1e-3")
    print("| REPA weight | alignment at step 0 | alignment at end | held-out flow loss at step 0 | at end |")
    print("|---|---|---|---|---|")
    for weight in (0.5, 0.0):
        torch.manual_seed(0)
        model = build_model(cfg_model)
        cfg = TrainConfig(data=(DataSource("in-memory"),), lr=1e-3, grad_clip=1.0, repa_weight=weight, bf16=False)
        opt = build_optimizer(cfg, model.parameters())
        sched = build_scheduler(cfg, opt)
        gen = torch.Generator().manual_seed(0)
        before = _alignment(model.eval(), lat[held], feats[held]), _held_flow(model, lat[held], feats[held])
        model.train()
        for step in range(args.repa_steps):
            idx = torch.arange(8) + (step * 8) % 40
            train_step(model, opt, sched, _batch(lat[train][idx], feats[train][idx]), gen, cfg)
        after = _alignment(model.eval(), lat[held], feats[held]), _held_flow(model, lat[held], feats[held])
        print(f"| {weight} | {before[0]:.3f} | {after[0]:.3f} | {before[1]:.4f} | {after[1]:.4f} |")


def _batch(lat, feats) -> Batch:
    n = lat.shape[0]
    zeros = torch.zeros(n, dtype=torch.long)
    return Batch(x0=lat, role=torch.zeros(n, 8, dtype=torch.long), y=zeros, y_mask=None,
                 drop_text=torch.zeros(n, dtype=torch.bool), tasks=("joint",) * n, ids=("",) * n, labels=zeros,
                 dino=feats)


def _held_flow(model, lat, feats) -> float:
    """Flow-matching loss alone on held-out images with fixed noise: the same number for both runs."""
    with torch.no_grad():
        return flow_loss(model.eval(), _batch(lat, feats), torch.Generator().manual_seed(7), 3.0).mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--latent", type=int, default=16, help="latent side (16 = 512 px with DC-AE f32)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--repa-steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    compare_architectures(args)
    compare_repa(args)


if __name__ == "__main__":
    main()
