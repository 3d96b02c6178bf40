"""Label domains of Joint-1.6M, the domains beyond them, and how each is stored on disk.

The Joint order is the one the released Jodi checkpoint indexes its per-domain
embedders with (reference: Jodi `configs/train_*.yaml`, `conditions:`); index 0
is always the image. Never reorder it: `jodi/` relies on it to load `Jodi.pth`.

Domains beyond Joint's seven (`EXTRA_FORMATS`) are first-class outputs of the label
job: an annotator declares `domain = "<name>"`, and the row of `EXTRA_FORMATS` says how
its label is stored (file suffix, PIL mode, codec) and encoded to uint8 (a pure function
of `schemas.encoding.EXTRA_ENCODERS`). The label job then writes `annotation_<name>/`,
the Parquet column and the metadata.jsonl key exactly as for a Joint domain; the
latent cache stores it after the Joint domains, and `jodi/` grows a model by it.
A user's own domain is one row here plus their Annotator subclass in the registry
(docs/training.md, "A new label domain").
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
    # Raw label -> uint8, for domains beyond Joint: a key of `schemas.encoding.EXTRA_ENCODERS`
    # ("grey": float HxW in [0, 1]; "rgb": float HxWx3 in [0, 1]; "log_depth": float HxW metres).
    # Joint's domains keep their own encoders (`schemas.encoding.ENCODERS`).
    encoding: str = ""


JOINT_FORMATS: dict[str, DomainFormat] = {
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

# Domains beyond Joint's seven, one literal row each (add a row for a domain of your own).
# metric_depth: metric depth in metres on a fixed log scale (schemas.encoding.encode_log_depth), so
# values compare across images, unlike Joint's per-image min-max depth. Lossless PNG: a JPEG step
# would move depth by several quantisation steps at edges.
EXTRA_FORMATS: dict[str, DomainFormat] = {
    "metric_depth": DomainFormat("metric_depth", ".png", "L", "png", "log_depth"),
}
EXTRA_DOMAINS: tuple[str, ...] = tuple(EXTRA_FORMATS)
# Every label domain a label job can write, in column order: Joint's (checkpoint order), then the extra ones.
STORED_DOMAINS: tuple[str, ...] = (*LABEL_DOMAINS, *EXTRA_DOMAINS)
FORMATS: dict[str, DomainFormat] = {**JOINT_FORMATS, **EXTRA_FORMATS}


def canonical_domain(name: str) -> str:
    """Return the canonical domain name for `name` (accepting the inference-config aliases)."""
    name = DOMAIN_ALIASES.get(name, name)
    if name not in ALL_DOMAINS and name not in EXTRA_FORMATS and name != CAPTION:
        known = ", ".join((*ALL_DOMAINS, *EXTRA_DOMAINS, CAPTION))
        raise ValueError(f"unknown domain {name!r}; known domains: {known}")
    return name


def annotation_key(domain: str) -> str:
    """The metadata.jsonl / Parquet column for a label domain, e.g. `annotation_depth`."""
    domain = canonical_domain(domain)
    if domain not in STORED_DOMAINS:
        raise ValueError(f"{domain!r} is not a label domain")
    return f"annotation_{domain}"


def relative_path(domain: str, record_id: str) -> str:
    """Relative path of a record's file in the Joint layout: `image/<id>.jpg`, `annotation_depth/<id>.jpg`, ..."""
    fmt = FORMATS[canonical_domain(domain)]
    folder = IMAGE if domain == IMAGE else annotation_key(domain)
    return f"{folder}/{record_id}{fmt.file_suffix}"
