"""How one Jodi block's cost grows with the token count: ReLU linear attention vs softmax attention (SDPA).

Times forward + backward of one `JodiBlock` at N tokens (D domains of s x s latents) and at 4N (side 2s)
and prints the 4N / N time ratio for each attention. Linear attention is O(N d^2), so its ratio should
stay near 4 (target <= 5); softmax attention is O(N^2 d) and tends to 16 once attention dominates.

    .venv/bin/python bench/attention_scaling.py                      # CPU defaults
    .venv/bin/python bench/attention_scaling.py --device cuda --hidden 2240 --heads 20 --side 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from jodi.blocks import JodiBlock  # noqa: E402


class SoftmaxAttention(nn.Module):
    """The baseline: the same qkv / proj projections with full softmax attention through SDPA."""

    def __init__(self, hidden_size: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, c // self.head_dim, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # keep is all-True here; no mask keeps fused kernels
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


def make_block(kind: str, hidden: int, heads: int, head_dim: int) -> JodiBlock:
    block = JodiBlock(hidden, heads, mlp_ratio=2.5, linear_head_dim=head_dim, fp32_attention=True)
    if kind == "softmax":
        block.attn = SoftmaxAttention(hidden, head_dim)
    return block


def time_block(block: JodiBlock, domains: int, side: int, text_len: int, repeats: int, device: str) -> float:
    """Fastest of `repeats` forward + backward passes on a batch of 1. On the CPU this is process CPU time,
    which other processes on a shared machine do not inflate (use --threads 1); on CUDA, synchronised wall time."""
    hidden = block.norm1.normalized_shape[0]
    n = side * side
    x = torch.randn(1, domains, n, hidden, device=device, requires_grad=True)
    y = torch.randn(1, text_len, hidden, device=device)
    adaln = torch.randn(1, domains, 6 * hidden, device=device) * 0.1
    keep = torch.ones(1, domains, dtype=torch.bool, device=device)
    cuda = device.startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time
    times = []
    for i in range(repeats + 1):  # the first run warms up kernels and allocators
        if cuda:
            torch.cuda.synchronize()
        start = clock()
        block(x, y, adaln, None, keep, (side, side)).square().mean().backward()
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(clock() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8, help="cross-attention heads")
    parser.add_argument("--head-dim", type=int, default=32, help="self-attention head dim (Sana: 32)")
    parser.add_argument("--domains", type=int, default=8, help="1 + K domains (Jodi: 8)")
    parser.add_argument("--side", type=int, default=12, help="latent side s for N = domains * s^2 tokens")
    parser.add_argument("--text-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 gives steadier timings)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n = args.domains * args.side**2
    print(f"one JodiBlock, hidden {args.hidden}, {args.domains} domains, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'attention':<10} {'N=' + str(n):>12} {'4N=' + str(4 * n):>12} {'ratio':>7}")
    ratios = {}
    for kind in ("linear", "softmax"):
        block = make_block(kind, args.hidden, args.heads, args.head_dim).to(args.device)
        small = time_block(block, args.domains, args.side, args.text_len, args.repeats, args.device)
        large = time_block(block, args.domains, 2 * args.side, args.text_len, args.repeats, args.device)
        ratios[kind] = large / small
        print(f"{kind:<10} {small * 1e3:>10.1f}ms {large * 1e3:>10.1f}ms {ratios[kind]:>6.2f}x")
    verdict = "OK" if ratios["linear"] <= 5 else "ABOVE TARGET"
    print(f"linear attention 4x tokens -> {ratios['linear']:.2f}x time (target <= 5x): {verdict}; "
          f"softmax -> {ratios['softmax']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
