"""Record schemas and label encodings of the Jodi data engine. Imports nothing else of ours."""

from schemas.domains import (
    ALL_DOMAINS,
    CAPTION,
    FORMATS,
    IMAGE,
    LABEL_DOMAINS,
    annotation_key,
    canonical_domain,
    relative_path,
)
from schemas.encoding import DECODERS, ENCODERS, encode_label
from schemas.palette import CLASS_NAMES, PALETTE
from schemas.paths import UnsafePathError, resolve_inside
from schemas.record import (
    ERROR_SCHEMA,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    ErrorRecord,
    LabeledRecord,
    Provenance,
)

__all__ = [
    "ALL_DOMAINS",
    "CAPTION",
    "CLASS_NAMES",
    "DECODERS",
    "ENCODERS",
    "ERROR_SCHEMA",
    "FORMATS",
    "IMAGE",
    "LABEL_DOMAINS",
    "PALETTE",
    "RECORD_SCHEMA",
    "SCHEMA_VERSION",
    "ErrorRecord",
    "LabeledRecord",
    "Provenance",
    "UnsafePathError",
    "annotation_key",
    "canonical_domain",
    "encode_label",
    "relative_path",
    "resolve_inside",
]
