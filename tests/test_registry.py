"""The registry: every name resolves and is covered by a random-weight checkpoint and a baseline."""

from __future__ import annotations

import pytest

from annotators import DOMAIN_DEFAULTS, OFFLINE_DEFAULTS, REGISTRY, build, resolve
from annotators.base import NumpyAnnotator
from annotators.random_weights import BASELINES, RANDOM_CHECKPOINTS
from schemas.domains import LABEL_DOMAINS
from tests.builders import new_models

RANDOM_CHECKPOINTS = {**RANDOM_CHECKPOINTS, **new_models.RANDOM}
BASELINES = {**BASELINES, **new_models.BASELINES}


def test_every_label_domain_and_captions_have_a_joint_default():
    assert set(DOMAIN_DEFAULTS) == {*LABEL_DOMAINS, "caption"}
    for domain, name in DOMAIN_DEFAULTS.items():
        assert resolve(domain)[0].domain == domain == resolve(name)[0].domain


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_backed_preset_has_test_weights_and_a_baseline(name):
    cls, config = REGISTRY[name]
    if issubclass(cls, NumpyAnnotator):
        return  # weights-free
    assert name in RANDOM_CHECKPOINTS, f"{name}: no random-weight checkpoint, so no test builds it"
    assert name in BASELINES, f"{name}: no per-image baseline for the benchmark"
    assert config.model_id or name == "alt_text", f"{name}: no hub id"  # alt_text copies input captions


def test_unknown_names_list_the_known_ones_and_presets_are_not_shared_state():
    with pytest.raises(KeyError, match="known annotators: .*canny"):
        resolve("sam2")
    a = build("canny", low_threshold=10)
    b = build("canny")
    assert a.config.low_threshold == 10 and b.config.low_threshold == REGISTRY["canny"][1].low_threshold
    assert set(OFFLINE_DEFAULTS) <= set(REGISTRY)
