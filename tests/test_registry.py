"""The registry table, its suites and weight licences: every fact about the registry is checked here once."""

from __future__ import annotations

import dataclasses

import pytest

from annotators import registry
from annotators.base import AnnotatorConfig, NumpyAnnotator
from annotators.licences import dataset_allows_commercial
from annotators.registry import DOMAIN_DEFAULTS, OFFLINE_DEFAULTS, REGISTRY, SUITES, build, resolve
from schemas.domains import EXTRA_DOMAINS, LABEL_DOMAINS
from tests.builders import BASELINES, RANDOM_CHECKPOINTS


def test_every_label_domain_and_captions_have_one_joint_default():
    assert set(DOMAIN_DEFAULTS) == {*LABEL_DOMAINS, "caption"}
    assert sum(e.default for e in REGISTRY.values()) == len(DOMAIN_DEFAULTS)
    assert DOMAIN_DEFAULTS == {
        "edge": "pidinet", "lineart": "informative_drawings", "depth": "depth_anything_v2_large",
        "normal": "lotus_normal", "albedo": "rgbx_albedo", "seg_12colors": "oneformer_ade20k",
        "openpose": "openpose", "caption": "blip2_opt_2_7b",
    }  # fmt: skip
    for domain, name in DOMAIN_DEFAULTS.items():
        assert resolve(domain)[0].domain == domain == resolve(name)[0].domain


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_is_consistent_frozen_and_covered(name):
    entry = REGISTRY[name]
    assert entry.cls.domain == entry.domain
    assert isinstance(entry.preset, AnnotatorConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.preset.resolution = 1  # type: ignore[misc]
    assert entry.licence.name and entry.licence.source
    if issubclass(entry.cls, NumpyAnnotator):
        return  # weights-free
    assert name in RANDOM_CHECKPOINTS, f"{name}: no random-weight checkpoint, so no test builds it"
    assert name in BASELINES, f"{name}: no per-image baseline for the benchmark"
    assert entry.preset.model_id or name == "alt_text", f"{name}: no hub id"  # alt_text copies input captions
    assert entry.preset.revision or name == "alt_text", f"{name}: no pinned revision"


def test_offline_entries_and_suites():
    assert set(OFFLINE_DEFAULTS) == {"hed_bsds", "canny", "lineart_standard"}
    for suite_name, names in SUITES.items():
        domains = [REGISTRY[n].domain for n in names]
        assert len(domains) == len(set(domains)), f"{suite_name}: two annotators for one domain"
    assert SUITES["joint"] == tuple(DOMAIN_DEFAULTS.values())
    assert set(SUITES["offline"]) <= set(OFFLINE_DEFAULTS)


def test_permissive_suite_uses_only_weights_that_allow_commercial_use():
    for name in registry.suite("permissive"):
        assert REGISTRY[name].licence.commercial is True, name
    # Every Joint domain left out has no registered annotator with a permissive licence (the suites are
    # Joint's; domains beyond it, schemas.domains.EXTRA_FORMATS, are asked for by name).
    covered = {REGISTRY[n].domain for n in SUITES["permissive"]}
    for name, entry in REGISTRY.items():
        if entry.domain not in covered and entry.domain not in EXTRA_DOMAINS:
            assert not entry.licence.permissive, f"{name} is permissive: add its domain to the suite"


def test_licences_as_model_cards_state_them():
    lic = {n: e.licence for n, e in REGISTRY.items()}
    assert (lic["depth_anything_v2_small"].name, lic["depth_anything_v2_small"].commercial) == ("Apache-2.0", True)
    assert lic["depth_anything_v2_base"].commercial is False and lic["depth_anything_v2_large"].name == "CC-BY-NC-4.0"
    assert lic["openpose"].commercial is False and lic["openpose_full"].commercial is False
    assert lic["rgbx_albedo"].commercial is False and lic["qwen2_5_vl_3b"].commercial is False
    assert lic["lotus_normal"].name == "unknown" and lic["lotus_normal"].commercial is None  # card is silent
    assert lic["pidinet"].name == "other" and lic["pidinet"].commercial is None  # lllyasviel/Annotators card


def test_licence_notice_and_publish_refusal():
    line = registry.licence_notice(["depth", "edge", "hed_bsds"])
    assert line.count("\n") == 0
    assert "depth_anything_v2_large (CC-BY-NC-4.0)" in line and "pidinet (other)" in line and "hed_bsds" not in line
    assert registry.licence_notice(SUITES["permissive"]) is None
    assert registry.licence_refusal("other", ["openpose"]) is None  # the dataset licence is not commercial
    assert registry.licence_refusal("cc-by-nc-4.0", ["openpose"]) is None
    refusal = registry.licence_refusal("cc-by-4.0", ["openpose", "hed_bsds"])
    assert "openpose" in refusal and "hed_bsds" not in refusal and "--i-have-checked-licences" in refusal
    assert registry.licence_refusal("apache-2.0", SUITES["permissive"]) is None
    assert dataset_allows_commercial("CC-BY-4.0") and not dataset_allows_commercial("cc-by-nc-sa-4.0")
    table = registry.licence_table([("depth", "depth_anything_v2_small"), ("openpose", "openpose")])
    assert table[2] == (
        "| depth | depth_anything_v2_small | Apache-2.0 | yes | "
        "huggingface.co/depth-anything/Depth-Anything-V2-Small-hf model card |"
    )
    assert "| openpose | openpose | OpenPose academic non-commercial | no |" in table[3]
    # A name from another engine version is "unknown", not an error.
    assert registry.licences_for(["hed"])["hed"]["name"] == "unknown"


def test_unknown_names_list_the_valid_ones_and_presets_are_not_shared_state():
    with pytest.raises(KeyError, match="known annotators: .*canny"):
        resolve("sam2")
    with pytest.raises(KeyError, match="valid suites: joint, offline, permissive"):
        registry.suite("everything")
    a = build("canny", low_threshold=10)
    b = build("canny")
    assert a.config.low_threshold == 10 and b.config.low_threshold == REGISTRY["canny"].preset.low_threshold


def test_missing_optional_package_fails_at_construction_with_the_install_command(monkeypatch):
    import sys

    from annotators.loading import require

    monkeypatch.setitem(sys.modules, "controlnet_aux.open_pose", None)  # as if controlnet_aux were absent
    with pytest.raises(ImportError, match=r"openpose needs the `controlnet_aux` package: run `pip install"):
        require("openpose", "controlnet_aux.open_pose", "pip install 'controlnet-aux==0.0.10'")
    with pytest.raises(ImportError, match="pip install 'controlnet-aux"):
        build("openpose", model_id="/nonexistent")
