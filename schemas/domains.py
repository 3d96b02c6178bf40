"""Label domains of Joint-1.6M and how each is stored on disk.

The order is the one the released Jodi checkpoint indexes its per-domain
embedders with (reference: Jodi `configs/train_*.yaml`, `conditions:`); index 0
is always the image. Never reorder it: `jodi/` relies on it to load `Jodi.pth`.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE = "image"
# Label domains in checkpoint order (Jodi training config `conditions`).
LABEL_DOMAINS: tuple[str, ...] = (
    "lineart",
    "edge",
    "depth",
    "normal",
    "albedo",
    "seg_12colors",
    "openpose",
)
ALL_DOMAINS: tuple[str, ...] = (IMAGE, *LABEL_DOMAINS)
CAPTION = "caption"

# The inference config calls the segmentation domain "segmentation"; accept both.
DOMAIN_ALIASES = {"segmentation": "seg_12colors", "seg": "seg_12colors", "pose": "openpose"}


@dataclass(frozen=True)
class DomainFormat:
    """How one domain is stored in the Joint layout (observed on the official samples)."""

    name: str
    file_suffix: str  # appended to the record id
    image_mode: str  # PIL mode of the stored file
    codec: str  # "jpeg" or "png"


FORMATS: dict[str, DomainFormat] = {
    IMAGE: DomainFormat(IMAGE, ".jpg", "RGB", "jpeg"),
    "lineart": DomainFormat("lineart", ".jpg", "RGB", "jpeg"),
    "edge": DomainFormat("edge", ".jpg", "RGB", "jpeg"),
    "depth": DomainFormat("depth", ".jpg", "L", "jpeg"),
    "normal": DomainFormat("normal", ".jpg", "RGB", "jpeg"),
    "albedo": DomainFormat("albedo", ".jpg", "RGB", "jpeg"),
    # Joint names segmentation files `<id>.jpg.png`: lossless so only palette colours occur.
    "seg_12colors": DomainFormat("seg_12colors", ".jpg.png", "RGB", "png"),
    "openpose": DomainFormat("openpose", ".jpg", "RGB", "jpeg"),
}


def canonical_domain(name: str) -> str:
    """Return the canonical domain name for `name` (accepting the inference-config aliases)."""
    name = DOMAIN_ALIASES.get(name, name)
    if name not in ALL_DOMAINS and name != CAPTION:
        known = ", ".join((*ALL_DOMAINS, CAPTION))
        raise ValueError(f"unknown domain {name!r}; known domains: {known}")
    return name


def annotation_key(domain: str) -> str:
    """The metadata.jsonl / Parquet column for a label domain, e.g. `annotation_depth`."""
    domain = canonical_domain(domain)
    if domain not in LABEL_DOMAINS:
        raise ValueError(f"{domain!r} is not a label domain")
    return f"annotation_{domain}"


def relative_path(domain: str, record_id: str) -> str:
    """Relative path of a record's file in the Joint layout: `image/<id>.jpg`, `annotation_depth/<id>.jpg`, ..."""
    fmt = FORMATS[canonical_domain(domain)]
    folder = IMAGE if domain == IMAGE else annotation_key(domain)
    return f"{folder}/{record_id}{fmt.file_suffix}"
