"""Role sampling for Jodi training: which domains are generated, given, or ignored.

Pure functions on numpy arrays with an explicit `numpy.random.Generator`, so a
training run that saves the generator state reproduces its draws after resume.

The rules follow the reference `JodiDataset`
(docs/jodi-training-recipe.md#role-sampling): one of three task types with
probability 1/3 each, then a role pattern drawn uniformly over the patterns
allowed for that task, over the labels the record actually has. Missing labels
are always ignored ([X]).
"""

from __future__ import annotations

import numpy as np

# Role codes as in the released model (`model/nets/jodi.py`: "0: generated, 1: condition, 2: null"); the model,
# the sampler and the trainer all import them from here.
GENERATE, CONDITION, IGNORE = 0, 1, 2
TASKS: tuple[str, ...] = ("joint", "controllable", "perception")


def truth_table(n: int) -> np.ndarray:
    """All 2**n binary patterns over n positions, row r = the bits of r, most significant first.

    Returns int64 (2**n, n). Same row order as the reference `get_combinition(n)`.
    """
    rows = np.arange(2**n, dtype=np.int64)[:, None]
    return (rows >> np.arange(n - 1, -1, -1, dtype=np.int64)) & 1


def task_patterns(task: str, count: int) -> np.ndarray:
    """The role patterns allowed for `task` over `count` available labels: int64 (P, count).

    - controllable: every pattern over {condition, ignore} (2**count rows; all-ignore is text-to-image);
    - perception: every pattern over {generate, ignore} except all-ignore (2**count - 1 rows);
    - joint: the single all-generate row.
    """
    bits = truth_table(count)
    if task == "joint":
        return np.zeros((1, count), dtype=np.int64)
    if task == "controllable":
        return bits + 1  # 0 -> condition (1), 1 -> ignore (2)
    if task == "perception":
        return (bits * 2)[:-1]  # 0 -> generate, 1 -> ignore; the last row (all ignore) is excluded
    raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")


def sample_roles(available: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Draw a task and a role vector for one record.

    `available`: bool (D,), domain 0 is the image (always available), the rest are labels
    in checkpoint order. A missing openpose should already be marked available by the
    caller when it is replaced by a black image, as the reference does.
    Returns (task name, int64 (D,) roles). A record with no label at all cannot be a
    perception sample (the reference would index an empty table); it becomes joint,
    which for an image alone is plain text-to-image.
    """
    available = np.asarray(available, dtype=bool)
    if not available[0]:
        raise ValueError("the image (domain 0) must be available")
    labels = np.flatnonzero(available[1:]) + 1
    task = TASKS[int(rng.integers(len(TASKS)))]
    if task == "perception" and labels.size == 0:
        task = "joint"
    patterns = task_patterns(task, int(labels.size))
    roles = np.full(available.shape[0], IGNORE, dtype=np.int64)
    roles[0] = CONDITION if task == "perception" else GENERATE
    roles[labels] = patterns[int(rng.integers(patterns.shape[0]))]
    return task, roles


def drop_modalities(roles: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """MMGen's modality dropout (arXiv 2503.20644 §3.2): each label domain that takes part ([G] or [C]) becomes
    [X] with probability `p`, so the model learns every subset. One [G] domain always remains; the image
    (domain 0) is never dropped. Draws nothing when p = 0, so runs without it keep their random stream."""
    roles = np.asarray(roles, dtype=np.int64).copy()
    if p <= 0:
        return roles
    drop = rng.random(roles.shape[0]) < p
    drop[0] = False
    out = np.where(drop & (roles != IGNORE), IGNORE, roles)
    if not (out == GENERATE).any():  # keep the generated domains rather than leave nothing to learn
        out = np.where(roles == GENERATE, GENERATE, out)
    return out


def drops_text(task: str) -> bool:
    """Perception never sees the caption (reference `force_drop_ids = role[:, 0] == 1`, paper App. B)."""
    return task == "perception"


def choose_caption(
    captions: list[str], weights: dict[str, float], rng: np.random.Generator
) -> int | None:
    """Index of the caption to train on, or None when the record has none.

    `captions` are the caption model names of a record (e.g. "BLIP2-OPT-2.7b"). With
    `weights` (the reference's per-source `caption_model_probs`) the choice is weighted
    over the names the record has; names without a weight get 0; without any usable
    weight it is uniform, as the reference does for sources with no probabilities.
    """
    if not captions:
        return None
    w = np.array([float(weights.get(name, 0.0)) for name in captions], dtype=np.float64)
    if not weights or w.sum() <= 0:
        w = np.ones(len(captions), dtype=np.float64)
    return int(rng.choice(len(captions), p=w / w.sum()))
