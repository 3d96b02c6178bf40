"""`JodiPipeline`: text and/or labels in, image and/or labels out, in the Joint-1.6M encodings.

One call covers the paper's three tasks (arXiv 2505.19084 §3): joint generation (text -> image + every
label), controllable generation (some labels as conditions -> image + the other labels) and perception
(image -> labels, no text, CFG 1). Sizes snap to the nearest of the 15 aspect-ratio buckets and outputs
are resized back to the requested size (docs/jodi-reference.md#inference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jodi.buckets import nearest_bucket
from jodi.codecs import TEXT_ID, TEXT_REVISION, VAE_ID, VAE_REVISION, LatentCodec, TextEncoder
from jodi.loading import load_model
from jodi.model import Jodi, build_model
from jodi.sampling import PERCEPTION, SamplerConfig, roles_for, sample
from schemas import ALL_DOMAINS, IMAGE, canonical_domain
from schemas.domains import EXTRA_FORMATS
from schemas.encoding import (
    decode_seg,
    encode_albedo,
    encode_depth,
    encode_edge,
    encode_grey,
    encode_lineart,
    encode_normal,
    encode_openpose,
    encode_seg,
)

# The released weights (Jodi model card: VIPL-GENUN/Jodi, file Jodi.pth); revision not pinned ("main").
JODI_WEIGHTS = "hf://VIPL-GENUN/Jodi/Jodi.pth"


def to_tensor(array: np.ndarray) -> Tensor:
    """uint8 HxW / HxWx3 (or float in [0, 1]) -> (3, H, W) float in [-1, 1]; grey becomes 3 equal channels,
    as Jodi's loader does with `.convert("RGB")`."""
    a = np.asarray(array)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {a.shape}")
    return torch.from_numpy(a).permute(2, 0, 1) * 2 - 1


def cover_crop(x: Tensor, height: int, width: int) -> Tensor:
    """(3, h, w) -> (3, height, width): bilinear resize to cover the target, then centre crop (Jodi inference)."""
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (nh - height) // 2, (nw - width) // 2
    return x[:, top:top + height, left:left + width]


def postprocess(domain: str, x: Tensor) -> np.ndarray:
    """Decoded (3, H, W) in [-1, 1] -> the uint8 array Joint-1.6M stores for `domain` (Jodi `model/postprocess`).

    depth: channel mean, per-image min-max (near = bright); edge / lineart: channel mean of the stored grey
    picture; normal: per-pixel unit length; seg: nearest palette colour; image / albedo / openpose: (x+1)/2.
    """
    a = x.float().clamp(-1, 1).permute(1, 2, 0).cpu().numpy()  # HxWx3 in [-1, 1]
    unit = (a + 1) / 2
    if domain == "depth":
        return encode_depth(unit.mean(axis=-1))
    if domain == "edge":
        return encode_edge(unit.mean(axis=-1))
    if domain == "lineart":  # stored black-on-white, so ink = 1 - brightness
        return encode_lineart(1 - unit.mean(axis=-1))
    if domain == "normal":
        return encode_normal(a)
    if domain == "seg_12colors":
        return encode_seg(decode_seg(np.clip(np.rint(unit * 255), 0, 255).astype(np.uint8)))
    if domain == "openpose":
        return encode_openpose(np.clip(np.rint(unit * 255), 0, 255).astype(np.uint8))
    if domain in (IMAGE, "albedo"):
        return encode_albedo(unit)
    if domain in EXTRA_FORMATS and EXTRA_FORMATS[domain].image_mode == "L":  # a grey domain beyond Joint
        return encode_grey(unit.mean(axis=-1))
    if domain not in ALL_DOMAINS:  # a grown domain: stored as the RGB picture its labels were cached from
        return np.clip(np.rint(unit * 255), 0, 255).astype(np.uint8)
    raise ValueError(f"no post-processing for domain {domain!r}")


def class_conditioned(model) -> bool:
    """True for a model conditioned on class ids (MMGen with `num_classes`) rather than a caption."""
    return getattr(model.cfg, "num_classes", 0) > 0


class JodiPipeline:
    """Model + latent codec + text encoder, and the three Jodi tasks on top of `jodi.sampling.sample`."""

    def __init__(self, model: Jodi, codec: LatentCodec, text_encoder: TextEncoder | None):
        """`text_encoder` may be None for a class-conditioned model (MMGen with `num_classes`), which has no text."""
        if text_encoder is None and not class_conditioned(model):
            raise ValueError("a text-conditioned model needs a text encoder")
        self.model, self.codec, self.text_encoder = model.eval(), codec, text_encoder

    @classmethod
    def from_pretrained(
        cls,
        weights: str = JODI_WEIGHTS,
        preset: str = "jodi_1600m",
        vae: str = VAE_ID,
        vae_revision: str | None = VAE_REVISION,
        text_encoder: str = TEXT_ID,
        text_revision: str | None = TEXT_REVISION,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        lora: str | None = None,
        merge_lora: bool = False,
    ) -> JodiPipeline:
        """Released (or fine-tuned) weights + DC-AE + Gemma-2. `weights=None` keeps random init (smoke runs);
        `vae` / `text_encoder` "tiny" are the random stand-ins of tests and smoke runs.
        A trainer checkpoint is rebuilt from its model.json; `lora` adds an adapter, merged on request."""
        model = load_model(weights, preset, lora=lora, merge=merge_lora)
        te_dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        length = model.cfg.model_max_length
        # "tiny": the seeded random stand-ins `jodi cache-latents --vae tiny --text-encoder tiny` encodes with.
        if class_conditioned(model):
            text = None  # class ids are its only condition: no 2B text encoder to load
        elif text_encoder == "tiny":
            text = TextEncoder.tiny(max_length=length).to(device)
        else:
            text = TextEncoder.from_pretrained(text_encoder, text_revision, dtype=te_dtype, max_length=length)
            text = text.to(device)
        codec = LatentCodec.tiny() if vae == "tiny" else LatentCodec.from_pretrained(vae, vae_revision)
        codec = codec.to(device)
        return cls(model.to(device, dtype), codec, text).with_null_caption()

    @classmethod
    def tiny(cls, preset: str = "tiny", folder: str | Path | None = None, seed: int = 0) -> JodiPipeline:
        """Random tiny model, tiny DC-AE and tiny Gemma-2 (CPU tests and demos), loaded like the real ones."""
        folder = Path(folder) if folder else None
        codec = LatentCodec.tiny(folder / "vae" if folder else None, seed=seed)
        text = TextEncoder.tiny(folder / "text" if folder else None, seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(preset)
        return cls(model, codec, text).with_null_caption()

    def with_null_caption(self) -> JodiPipeline:
        """Store the text encoder's encoding of "" as the model's null caption, as Jodi does at load time.
        A class-conditioned model has a null class instead: nothing to store."""
        if self.text_encoder is None:
            return self
        emb, _ = self.text_encoder.null_embedding()
        buf = self.model.y_embedder.y_embedding
        buf.copy_(emb[0, : buf.shape[0]].to(buf))
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def domains(self) -> tuple[str, ...]:
        return self.model.cfg.domains

    @property
    def resolution(self) -> int:
        """Base resolution the model was trained at: latent side x autoencoder factor (1024 for Jodi)."""
        return self.model.cfg.sample_size * self.codec.factor

    @torch.no_grad()
    def __call__(
        self,
        prompt: str = "",
        conditions: dict[str, np.ndarray] | None = None,
        generate: list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        sampler: SamplerConfig = SamplerConfig(),
        seed: int = 0,
        negative_prompt: str = "",
        class_label: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Generate the `generate` domains (default: every domain not given) from `prompt` and `conditions`.

        conditions: domain -> uint8 HxW(x3) picture in the Joint encoding. Returns domain -> uint8 array in
        the Joint encoding at (height, width), which default to the first condition's size or the base
        resolution. Deterministic for a given seed. A class-conditioned model takes `class_label` (0 ..
        num_classes - 1; None = unconditional, the null class) instead of a prompt.
        """
        canon = lambda d: d if d in self.domains else canonical_domain(d)  # noqa: E731 - grown domains as named
        conditions = {canon(k): v for k, v in (conditions or {}).items()}
        if generate is None:
            generate = [d for d in self.domains if d not in conditions]
        generate = [canon(d) for d in generate]
        role = roles_for(self.domains, set(conditions), set(generate))
        if height is None or width is None:
            first = next(iter(conditions.values()), None)
            height, width = first.shape[:2] if first is not None else (self.resolution, self.resolution)
        bh, bw = nearest_bucket(height, width, self.resolution, self.codec.factor * self.model.cfg.patch_size)

        latent_hw = (bh // self.codec.factor, bw // self.codec.factor)
        clean = torch.zeros(1, len(self.domains), self.model.cfg.in_channels, *latent_hw)
        for i, d in enumerate(self.domains):
            if d in conditions:
                pixels = cover_crop(to_tensor(conditions[d]), bh, bw)
                clean[0, i] = self.codec.encode(pixels[None]).cpu()[0]

        if IMAGE in conditions:  # perception: labels are independent of text given the image (paper App. B)
            prompt, class_label = "", None
        text, null = self._condition(prompt, negative_prompt, class_label)
        generator = torch.Generator().manual_seed(seed)
        latents = sample(self.model, role[None], clean.to(self.device), text, null, sampler, generator)

        idx = [self.domains.index(d) for d in generate]
        pixels = self.codec.decode(latents[0, idx])  # (G, 3, bh, bw)
        pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False)
        return {d: postprocess(d, p) for d, p in zip(generate, pixels)}

    def _condition(self, prompt: str, negative_prompt: str, class_label: int | None) -> tuple[tuple, tuple]:
        """(condition, null condition) for `jodi.sampling.sample`: caption embeddings and masks, or class ids."""
        if class_conditioned(self.model):
            null_id = self.model.cfg.num_classes
            if prompt or negative_prompt:
                raise ValueError("this model is class-conditioned: pass class_label, not a prompt")
            if class_label is not None and not 0 <= int(class_label) < null_id:
                raise ValueError(f"class_label={class_label} is outside the model's classes 0..{null_id - 1}")
            ids = torch.tensor([null_id if class_label is None else int(class_label)])
            return (ids, None), (self.model.null_condition(ids), None)  # CFG against the null class (DiT)
        if class_label is not None:
            raise ValueError("this model is text-conditioned: pass a prompt, not class_label")
        text = self.text_encoder.encode([prompt])
        # Jodi's sampler gives both CFG branches the prompt's mask; only the embeddings differ.
        return text, (self.text_encoder.null_embedding(1, negative_prompt)[0], text[1])

    def joint(self, prompt: str, **kwargs) -> dict[str, np.ndarray]:
        """Text -> image + every label."""
        return self(prompt, conditions=None, **kwargs)

    def control(self, prompt: str, conditions: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
        """Labels (any subset) + text -> image and the remaining labels."""
        return self(prompt, conditions=conditions, **kwargs)

    def perceive(self, image: np.ndarray, labels: list[str] | None = None,
                 sampler: SamplerConfig = PERCEPTION, **kwargs) -> dict[str, np.ndarray]:
        """Image -> labels (default: all). No text; the model also forces the null caption for this task."""
        labels = [d for d in self.domains if d != IMAGE] if labels is None else labels
        return self("", conditions={IMAGE: image}, generate=labels, sampler=sampler, **kwargs)
