"""Picture similarity for albedo and images: PSNR, SSIM and LPIPS, each per image, through torchmetrics.

PSNR and SSIM (11x11 Gaussian window, sigma 1.5, as Wang et al. 2004) run on [0, 1] RGB with data range 1.
LPIPS (Zhang et al. 2018) is torchmetrics' port of `lpips`: an ImageNet backbone from torchvision (AlexNet by
default, as the `lpips` package recommends for a forward metric) plus the calibrated linear heads that ship
inside torchmetrics. The backbone weights are downloaded by torchvision on first use; offline that fails,
and `Lpips` says so in one line. `backbone="random"` builds the same network with a random backbone (the
library's `pnet_rand` switch), for tests and smoke runs only: its numbers mean nothing.
"""

from __future__ import annotations

import numpy as np
import torch


class MetricWeightsUnavailableError(RuntimeError):
    """A metric's pretrained network could not be loaded (one line says which and how to get it)."""


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 (or HxW grey) pictures of one size -> float (N, 3, H, W) in [0, 1]."""
    arrays = []
    for a in images:
        a = np.asarray(a)
        a = np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a
        arrays.append(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of one picture pair (uint8 or [0, 1] float); identical pictures give inf."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(to_batch([pred]), to_batch([ref]), data_range=1.0))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of one picture pair (uint8 or [0, 1] float), Gaussian window 11, sigma 1.5."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(to_batch([pred]), to_batch([ref]), data_range=1.0))


class Lpips:
    """LPIPS distance per picture pair (lower = more similar). Build once, call many times."""

    def __init__(self, net: str = "alex", backbone: str = "pretrained", device: str = "cpu"):
        from torchmetrics.functional.image.lpips import _NoTrainLpips

        if backbone not in ("pretrained", "random"):
            raise ValueError(f"backbone={backbone!r}; choose pretrained or random")
        # `pretrained=True` loads the linear heads bundled with torchmetrics; `pnet_rand` skips torchvision's download
        try:
            self.net = _NoTrainLpips(net=net, pretrained=True, pnet_rand=backbone == "random").to(device).eval()
        except (OSError, RuntimeError) as exc:  # urllib's URLError is an OSError
            raise MetricWeightsUnavailableError(
                f"LPIPS: torchvision could not load the ImageNet {net} backbone ({type(exc).__name__}); run once "
                "where download.pytorch.org is reachable, or copy the file into ~/.cache/torch/hub/checkpoints"
            ) from exc
        self.device, self.backbone = device, backbone

    @torch.no_grad()
    def __call__(self, pred: list[np.ndarray], ref: list[np.ndarray]) -> list[float]:
        """Lists of same-size pictures -> one distance per pair."""
        from torchmetrics.functional.image.lpips import _lpips_update

        a, b = to_batch(pred).to(self.device), to_batch(ref).to(self.device)
        return _lpips_update(a, b, net=self.net, normalize=True).reshape(-1).tolist()


def image_metrics(pred: np.ndarray, ref: np.ndarray, lpips: Lpips | None = None) -> dict[str, float]:
    """PSNR, SSIM and (with a network) LPIPS of one picture pair."""
    out = {"psnr": psnr(pred, ref), "ssim": ssim(pred, ref)}
    if lpips is not None:
        out["lpips"] = lpips([pred], [ref])[0]
    return out


def summarize_image(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Per-image mean of each metric; PSNR of identical pairs (inf) is capped at 100 dB before averaging."""
    rows = [r for r in per_image if r]
    if not rows:
        return {"images": 0}
    out = {k: float(np.mean([min(r[k], 100.0) for r in rows if k in r])) for k in rows[0]}
    return {**out, "images": len(rows)}
