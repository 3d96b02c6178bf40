"""Annotators: one batched interface over depth, normal, edge, segmentation, lineart, albedo, pose and captions."""

from annotators.base import AnnotationError, Annotator, AnnotatorConfig, NumpyAnnotator
from annotators.loading import ModelUnavailableError
from annotators.registry import DOMAIN_DEFAULTS, OFFLINE_DEFAULTS, REGISTRY, SUITES, build, licences_for, resolve, suite

__all__ = [
    "DOMAIN_DEFAULTS",
    "OFFLINE_DEFAULTS",
    "REGISTRY",
    "SUITES",
    "AnnotationError",
    "Annotator",
    "AnnotatorConfig",
    "ModelUnavailableError",
    "NumpyAnnotator",
    "build",
    "licences_for",
    "resolve",
    "suite",
]
