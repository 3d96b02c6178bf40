"""Weights for annotators: .pth state dicts, and the lllyasviel/Annotators pin that the controlnet_aux
families (edge, lineart, normal_bae, pose) share, with their preset base and loaders.

Hub/local resolution and the one-line "which model, how to provide it" error live in `common/hub.py`
(Jodi's encoders use them too); their names are re-exported here, where annotators and users import them.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotators.base import AnnotatorConfig
from common.hub import (  # noqa: F401 - re-exported: the annotator-facing names
    ModelUnavailableError,
    hub_file,
    load_pretrained,
    require,
)
from schemas.checkpoint import load_torch_file

# lllyasviel/Annotators holds controlnet_aux's checkpoints (table5_pidinet.pth, ControlNetHED.pth,
# sk_model*.pth, netG.pth, body_pose_model.pth, hand_pose_model.pth, facenet.pth, scannet.pt),
# pinned at the commit that comfyui_controlnet_aux download manifests use.
ANNOTATORS_REPO = "lllyasviel/Annotators"
ANNOTATORS_REVISION = "982e7edaec38759d914a963c48c4726685de7d96"
CONTROLNET_AUX_HINT = "pip install 'controlnet-aux==0.0.10'"


def load_torch_checkpoint(annotator: str, repo_id: str | None, filename: str, revision: str | None) -> dict:
    """A .pth state dict from a hub repo (or local folder): weights_only, on CPU, `module.` prefixes stripped.

    Checkpoints saved as `{"state_dict": ...}` (PiDiNet's training script) or `{"model": ...}`
    (NormalBae's scannet.pt) are unwrapped.
    """
    if not repo_id:
        raise ModelUnavailableError(f"{annotator}: no model_id configured; pass `--model {annotator}=/path/to/folder`")
    path = hub_file(annotator, repo_id, filename, revision)
    state = load_torch_file(path)  # weights only; a pickle is refused in one line
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {k.removeprefix("module."): v for k, v in state.items()}


# ----- controlnet_aux networks with lllyasviel/Annotators checkpoints (edge, lineart, normal_bae, pose) -----


@dataclass(frozen=True)
class AnnotatorsRepoConfig(AnnotatorConfig):
    """A preset whose weights are a controlnet_aux checkpoint in lllyasviel/Annotators, at the pinned commit."""

    model_id: str | None = ANNOTATORS_REPO
    revision: str | None = ANNOTATORS_REVISION


def controlnet_aux(name: str, module: str):
    """controlnet_aux's `module` (its network code), or an ImportError with the install line."""
    return require(name, module, CONTROLNET_AUX_HINT)


def annotators_checkpoint(name: str, config: AnnotatorConfig, filename: str) -> dict:
    """The state dict `filename` of the config's repo (lllyasviel/Annotators or a local folder)."""
    return load_torch_checkpoint(name, config.model_id, filename, config.revision)
