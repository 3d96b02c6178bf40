"""Annotators whose one forward pass labels several domains (Depth Pro / MoGe-2: depth and normals).

A multi-domain annotator runs its model once per image and returns every domain from
that one pass: `__call__` gives `{"depth": [...], "normal": [...]}`, one list per domain in
`domains`. It stacks its domains' channels into one tensor in `forward` (depth: 1 channel,
normal: 3), so the base class resizes them back together, and `__call__` splits the
channels. `domain` stays the first domain, so code that reads one domain keeps working;
code that writes labels asks `label_domains(cls)` for all of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from annotators.base import AnnotationError, Annotator

# Channels of each domain's float label (HxW for 1, HxWxC otherwise), as pipeline.stages.LABEL_NDIM.
DOMAIN_CHANNELS = {"depth": 1, "normal": 3, "edge": 1, "lineart": 1, "albedo": 3, "openpose": 3, "seg_12colors": 1}


def label_domains(cls_or_annotator) -> tuple[str, ...]:
    """Every domain one call of this annotator labels: `domains` for a multi-domain one, else `(domain,)`."""
    return tuple(getattr(cls_or_annotator, "domains", ())) or (cls_or_annotator.domain,)


class MultiDomainAnnotator(Annotator):
    """Base of annotators that label `domains` from one forward. `forward` returns the domains'
    channels stacked in `domains` order (B x sum(channels) x h x w); `postprocess_domain` may
    finish each domain's label at full resolution."""

    domains: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "domains" in cls.__dict__:
            cls.domain = cls.domains[0]
            cls.out_channels = sum(DOMAIN_CHANNELS[d] for d in cls.domains)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        stacked = self.annotate(list(batch["image"]))
        out: dict[str, list] = {d: [] for d in self.domains}
        for label in stacked:
            parts = self.split(label)
            for d in self.domains:
                out[d].append(parts[d])
        return out

    def split(self, label: np.ndarray | AnnotationError | None) -> dict[str, Any]:
        """One stacked HxWxC label -> {domain: label}; a None or an error stands for every domain."""
        if label is None or isinstance(label, Exception):
            return {d: label for d in self.domains}
        parts, start = {}, 0
        for d in self.domains:
            c = DOMAIN_CHANNELS[d]
            part = label[..., start : start + c]
            parts[d] = self.postprocess_domain(d, part[..., 0] if c == 1 else part)
            start += c
        return parts

    def postprocess_domain(self, domain: str, label: np.ndarray) -> np.ndarray | None:
        """Per-domain hook on the full-resolution label. Default: identity."""
        return label
