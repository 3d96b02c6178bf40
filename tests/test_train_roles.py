"""Role sampling (jodi/roles.py) against the reference rules, with statistical tests on many draws."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from jodi.roles import CONDITION, GENERATE, IGNORE, TASKS, choose_caption, drops_text, sample_roles, task_patterns, truth_table

# image, lineart, edge present; depth..seg missing; openpose present (black = "no person")
AVAILABLE = np.array([1, 1, 1, 0, 0, 0, 0, 1], dtype=bool)
DRAWS = 24_000


def test_truth_table_matches_reference_order():
    t = truth_table(3)
    assert t.shape == (8, 3)
    assert t[0].tolist() == [0, 0, 0] and t[1].tolist() == [0, 0, 1] and t[-1].tolist() == [1, 1, 1]
    assert len({tuple(r) for r in t}) == 8


def test_task_patterns_counts_and_values():
    assert task_patterns("controllable", 3).shape == (8, 3)  # 2**cnt, all-absent included
    assert set(np.unique(task_patterns("controllable", 3))) == {CONDITION, IGNORE}
    p = task_patterns("perception", 3)
    assert p.shape == (7, 3)  # all-absent excluded
    assert not (p == IGNORE).all(axis=1).any()
    assert task_patterns("joint", 3).tolist() == [[GENERATE] * 3]
    with pytest.raises(ValueError, match="known tasks"):
        task_patterns("edit", 2)


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(0)
    return [sample_roles(AVAILABLE, rng) for _ in range(DRAWS)]


def test_missing_labels_always_ignored_and_image_role(draws):
    for task, roles in draws:
        assert (roles[~AVAILABLE] == IGNORE).all()
        assert roles[0] == (CONDITION if task == "perception" else GENERATE)
        if task == "joint":
            assert (roles[AVAILABLE] == GENERATE).all()
        if task == "perception":
            assert (roles[AVAILABLE][1:] != CONDITION).all() and (roles[AVAILABLE][1:] == GENERATE).any()
        if task == "controllable":
            assert (roles[AVAILABLE][1:] != GENERATE).all()


def test_task_distribution_is_one_third_each(draws):
    counts = Counter(task for task, _ in draws)
    observed = [counts[t] for t in TASKS]
    assert chisquare(observed).pvalue > 1e-3, observed


@pytest.mark.parametrize("task,n_patterns", [("controllable", 8), ("perception", 7)])
def test_patterns_uniform_within_task(draws, task, n_patterns):
    labels = np.flatnonzero(AVAILABLE[1:]) + 1
    counts = Counter(tuple(roles[labels]) for t, roles in draws if t == task)
    assert len(counts) == n_patterns
    assert chisquare(list(counts.values())).pvalue > 1e-3, counts


def test_record_without_labels_is_text_to_image():
    rng = np.random.default_rng(1)
    only_image = np.array([1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    for _ in range(200):
        task, roles = sample_roles(only_image, rng)
        assert task in ("joint", "controllable")
        assert roles.tolist() == [GENERATE] + [IGNORE] * 7


def test_text_dropped_only_for_perception():
    assert drops_text("perception") and not drops_text("joint") and not drops_text("controllable")


def test_weighted_caption_choice():
    rng = np.random.default_rng(2)
    names = ["BLIP2-OPT-2.7b", "Qwen2-VL-7b-Instruct"]
    picks = Counter(choose_caption(names, {"BLIP2-OPT-2.7b": 4, "Qwen2-VL-7b-Instruct": 1}, rng) for _ in range(5000))
    assert chisquare([picks[0], picks[1]], [4000, 1000]).pvalue > 1e-3  # reference pexels-photos 80/20
    uniform = Counter(choose_caption(names, {}, rng) for _ in range(4000))
    assert chisquare([uniform[0], uniform[1]]).pvalue > 1e-3
    assert choose_caption([], {}, rng) is None
    # a record whose captions have no weight falls back to uniform rather than failing
    assert choose_caption(["Pexels"], {"BLIP2-OPT-2.7b": 1}, rng) == 0
