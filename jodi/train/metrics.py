"""Training metrics: running loss overall and per task type, throughput, learning rate; the loss curve.

Losses are averaged over the samples of a logging window (per task over the samples
of that task), throughput counts every domain's latent tokens the model processed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from jodi.roles import TASKS


@dataclass
class MetricsWindow:
    """Accumulates per-sample losses between two log lines (one per worker; reduce before logging)."""

    loss_sum: float = 0.0
    samples: int = 0
    tokens: int = 0
    task_sum: dict[str, float] = field(default_factory=lambda: {t: 0.0 for t in TASKS})
    task_count: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASKS})
    started: float = field(default_factory=time.perf_counter)

    def add(self, per_sample_loss: list[float], tasks: tuple[str, ...], tokens: int) -> None:
        for loss, task in zip(per_sample_loss, tasks):
            self.loss_sum += loss
            self.task_sum[task] += loss
            self.task_count[task] += 1
        self.samples += len(per_sample_loss)
        self.tokens += tokens

    def as_vector(self) -> list[float]:
        """Sums for an all-reduce across workers: [loss, samples, tokens, task sums..., task counts...]."""
        return [self.loss_sum, self.samples, self.tokens, *self.task_sum.values(), *self.task_count.values()]

    def summary(self, totals: list[float], step: int, epoch: int, lr: float, world_size: int) -> dict:
        """One metrics record from all-reduced sums (`totals` = summed `as_vector()` of all workers)."""
        seconds = max(time.perf_counter() - self.started, 1e-9)
        loss_sum, samples, tokens = totals[:3]
        k = len(TASKS)
        sums, counts = totals[3 : 3 + k], totals[3 + k :]
        record = {
            "step": step,
            "epoch": epoch,
            "loss": loss_sum / max(samples, 1),
            "lr": lr,
            "samples_per_s": samples / seconds,
            "tokens_per_s": tokens / seconds,
            "samples": int(samples),
            "workers": world_size,
        }
        for task, s, c in zip(TASKS, sums, counts):
            record[f"loss_{task}"] = s / c if c else None
        return record


def format_line(record: dict, max_steps: int) -> str:
    tasks = " ".join(f"{t[:4]}={record[f'loss_{t}']:.4f}" for t in TASKS if record.get(f"loss_{t}") is not None)
    return (
        f"step {record['step']}/{max_steps} epoch {record['epoch']} loss {record['loss']:.4f} ({tasks}) "
        f"lr {record['lr']:.2e} {record['samples_per_s']:.1f} samples/s {record['tokens_per_s']:.0f} tokens/s"
    )


def plot_loss_curve(history: list[dict], path: str) -> None:
    """Loss overall and per task against step, written as a PNG (local path or fsspec URI)."""
    import fsspec
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], label="all", linewidth=2, color="black")
    for task in TASKS:
        pts = [(h["step"], h[f"loss_{task}"]) for h in history if h.get(f"loss_{task}") is not None]
        if pts:
            ax.plot(*zip(*pts), label=task, linewidth=1, alpha=0.8, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (generated domains)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with fsspec.open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
