"""Annotators: one batched interface over depth, normal, edge, segmentation, lineart, albedo, pose and captions."""

from annotators.base import AnnotationError, Annotator, AnnotatorConfig, NumpyAnnotator
from annotators.loading import ModelUnavailableError
from annotators.registry import DOMAIN_DEFAULTS, OFFLINE_DEFAULTS, REGISTRY, build, resolve

__all__ = [
    "DOMAIN_DEFAULTS",
    "OFFLINE_DEFAULTS",
    "REGISTRY",
    "AnnotationError",
    "Annotator",
    "AnnotatorConfig",
    "ModelUnavailableError",
    "NumpyAnnotator",
    "build",
    "resolve",
]
