"""Bucketed batching and batch collation (jodi/train_data.py) on hand-built cache rows."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy.stats import binomtest

from jodi.train.data import Collator, _pad_tokens, bucketed_batches

D, C, CT, L = 8, 4, 6, 5
SIZES = {"0.5": (1, 2), "1.0": (2, 2), "2.0": (2, 1)}


def _row(i: int, bucket: str, captions=("BLIP2-OPT-2.7b", "Qwen2-VL-7b-Instruct"), source_index=0) -> dict:
    h, w = SIZES[bucket]
    present = np.array([1, 1, 0, 1, 0, 0, 0, 1], np.uint8)
    z = np.full((D, C, h, w), i, np.float16)
    embs = [np.full((k + 2, CT), 10 * k + 1, np.float16).tobytes() for k in range(len(captions))]
    return {"id": f"r{i}", "bucket": bucket, "latent_h": h, "latent_w": w, "present": present.tobytes(),
            "latents": z.tobytes(), "caption_models": list(captions), "caption_embs": embs,
            "source_index": source_index}


ROWS = [_row(i, b) for i, b in enumerate(["1.0"] * 23 + ["0.5"] * 11 + ["2.0"] * 6)]


def test_batches_share_one_bucket_and_drop_leftovers():
    batches = list(bucketed_batches(ROWS, 4, seed=0, epoch=0, rank=0, shuffle_buffer=8))
    assert all(len({r["bucket"] for r in b}) == 1 for b in batches)
    assert all(len(b) == 4 for b in batches)
    per_bucket = Counter(b[0]["bucket"] for b in batches)
    assert per_bucket == {"1.0": 5, "0.5": 2, "2.0": 1}  # floor(23/4), floor(11/4), floor(6/4)
    ids = [r["id"] for b in batches for r in b]
    assert len(ids) == len(set(ids)) == 32


def test_order_is_seeded_per_epoch_and_rank():
    def order(**kw):
        args = {"seed": 0, "epoch": 0, "rank": 0, **kw}
        return [r["id"] for b in bucketed_batches(ROWS, 4, shuffle_buffer=8, **args) for r in b]

    assert order() == order()  # deterministic: a resumed run can skip batches it already trained on
    assert order() != order(epoch=1) and order() != order(rank=1) and order() != order(seed=1)


def _collator(**kw) -> Collator:
    null = _pad_tokens(np.full((1, CT), -1.0, np.float32), L)
    base = dict(latent_channels=C, text_channels=CT, max_tokens=L, null_text=null, caption_dropout=0.1,
                caption_weights=({"BLIP2-OPT-2.7b": 4.0, "Qwen2-VL-7b-Instruct": 1.0}, {}))
    return Collator(**{**base, **kw})


def test_collated_batch_shapes_and_values():
    batch = _collator(caption_dropout=0.0)([_row(3, "1.0"), _row(5, "1.0")], np.random.default_rng(0))
    assert batch.x0.shape == (2, D, C, 2, 2) and (batch.x0[1] == 5).all()
    assert batch.role.shape == (2, D) and batch.y.shape == (2, L, CT) and batch.y_mask.shape == (2, L)
    assert (batch.role[:, [2, 4, 5, 6]] == 2).all()  # absent labels ignored
    for k in range(2):
        n = int(batch.y_mask[k].sum())
        if batch.drop_text[k]:
            assert batch.tasks[k] == "perception"
        else:
            assert n in (2, 3) and (batch.y[k, n:] == 0).all()  # the chosen caption, zero-padded


def test_weighted_caption_choice_per_source():
    """Source 0 weights BLIP2:Qwen 4:1 (reference pexels-photos); source 1 has no weights (uniform)."""
    rng = np.random.default_rng(1)
    collate = _collator()
    blip = {0: 0, 1: 0}
    kept = {0: 0, 1: 0}
    for _ in range(300):
        batch = collate([_row(0, "1.0"), _row(1, "1.0", source_index=1)], rng)
        for k in range(2):
            is_null = bool((batch.y[k, 0] == -1).all())
            if batch.tasks[k] == "perception":
                assert batch.drop_text[k]  # perception never sees the caption
                continue
            assert is_null == bool(batch.drop_text[k])  # dropped captions are the null text
            if not is_null:
                kept[k] += 1
                blip[k] += int(batch.y_mask[k].sum()) == 2  # the BLIP2 embedding has 2 tokens
    assert binomtest(blip[0], kept[0], 0.8).pvalue > 1e-3, (blip, kept)
    assert binomtest(blip[1], kept[1], 0.5).pvalue > 1e-3, (blip, kept)


def test_dropout_statistics_binomial():
    rng = np.random.default_rng(2)
    collate = _collator(caption_dropout=0.1)
    drops = trials = 0
    for _ in range(400):
        batch = collate([_row(0, "1.0")], rng)
        if batch.tasks[0] != "perception":
            trials += 1
            drops += bool(batch.drop_text[0])
    assert binomtest(drops, trials, 0.1).pvalue > 1e-3, (drops, trials)


def test_record_without_caption_uses_null_text():
    batch = _collator(caption_dropout=0.0)([_row(0, "1.0", captions=())], np.random.default_rng(0))
    assert batch.drop_text[0] and (batch.y[0, 0] == -1).all()


def test_joint_folder_rows_prepare_to_buckets(joint_example):
    """The cache job's CPU stage on the official Joint samples: bucket from info, labels as present."""
    from jodi.latents import bucket_sizes, joint_items, prepare_row, read_joint_files

    items = joint_items(joint_example)
    assert len(items) == 3
    with_pose = [it["annotation_openpose"] is not None for it in items]
    assert sum(with_pose) == 1  # only the image with a person has an openpose file
    for item, has_pose in zip(items, with_pose):
        for empty_openpose in (True, False):
            out = prepare_row(read_joint_files(item), resolution=64, empty_openpose=empty_openpose)
            present = np.frombuffer(out["present"], np.uint8)
            assert present[:7].tolist() == [1] * 7  # image + 6 labels always present in the samples
            assert present[7] == int(has_pose or empty_openpose)
            h, w = bucket_sizes(64)[out["bucket"]]
            pixels = np.frombuffer(out["pixels"], np.uint8).reshape(out["shape"])
            assert pixels.shape == (8, h, w, 3) and pixels[0].std() > 10
            if not has_pose:
                assert (pixels[7] == 0).all()  # the black "no person" image
        assert set(out["caption_models"]) == set(json.loads(
            (joint_example / "metadata.jsonl").read_text().splitlines()[items.index(item)])["caption"])


def test_metrics_window_per_task_means_and_curve(tmp_path):
    from jodi.train.metrics import MetricsWindow, format_line, plot_loss_curve

    w = MetricsWindow()
    w.add([1.0, 3.0], ("joint", "perception"), tokens=64)
    w.add([2.0], ("joint",), tokens=32)
    totals = [a + b for a, b in zip(w.as_vector(), w.as_vector())]  # two identical workers, all-reduced
    rec = w.summary(totals, step=5, epoch=0, lr=1e-4, world_size=2)
    assert rec["loss"] == pytest.approx(2.0) and rec["loss_joint"] == pytest.approx(1.5)
    assert rec["loss_perception"] == pytest.approx(3.0) and rec["loss_controllable"] is None
    assert rec["samples"] == 6 and rec["tokens_per_s"] > rec["samples_per_s"] > 0
    assert "step 5/10" in format_line(rec, 10)
    plot_loss_curve([rec, {**rec, "step": 6, "loss": 1.0}], str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
