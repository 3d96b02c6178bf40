"""Ray Data tuning of the label job (pure functions) and one real job that must not trip Ray's memory warnings."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from pipeline import tuning
from pipeline.config import LabelJobConfig, StageResources
from tests.bad_inputs import jpeg_bytes, photo


def test_light_batches_follow_a_pixel_budget():
    assert tuning.light_batch_size(1024) == 8  # Joint images: 8 per batch, as before
    assert tuning.light_batch_size(256) == 128  # small images: far above Ray's per-batch overhead
    assert tuning.light_batch_size(16) == tuning.LIGHT_BATCH_RANGE[1]


def test_memory_comes_from_the_measured_table_with_ray_data_headroom():
    mib = tuning.MiB
    assert tuning.stage_memory_bytes("hed") == int(np.ceil(tuning.STAGE_MEMORY_MB["hed"] * 1.25)) * mib
    assert tuning.stage_memory_bytes("unknown_model") == tuning.UNMEASURED_MODEL_MB * 1.25 * mib
    assert tuning.stage_memory_bytes("canny", weights_free=True) == tuning.stage_memory_bytes("decode")
    assert tuning.stage_memory_bytes("hed", measured_mb=100) == 125 * mib


def test_stage_plans_fit_the_cluster_and_colocated_models_add_up():
    cfg = LabelJobConfig(input="x", output="y", annotators=("canny", "pidinet", "hed"),
                         resources={"pidinet": StageResources(batch_size=4)}, target_short_side=256)
    plans = tuning.plan_stages(cfg, [["canny"], ["pidinet", "hed"]], cluster_memory=64 * 2**30)
    assert plans["canny"].batch_size == 128  # weights-free: light batches
    assert plans["pidinet"].batch_size == 4  # model stages keep the job's batch size
    assert plans["pidinet"].memory == tuning.stage_memory_bytes("pidinet") + tuning.stage_memory_bytes("hed")
    assert plans["canny"].memory == tuning.stage_memory_bytes("decode")
    small = tuning.plan_stages(cfg, [["canny"], ["pidinet", "hed"]], cluster_memory=2 * 2**30)
    assert sum(p.memory for p in small.values()) <= 0.8 * 2 * 2**30 + len(small)
    assert small["pidinet"].memory > small["canny"].memory


def test_a_model_stage_gets_the_cores_a_loop_would_and_a_weights_free_one_leaves_two_writers(ray_local):
    from pipeline.job import ENCODE_WRITE_CPUS, _annotate_args

    cfg = LabelJobConfig(input="x", output="y", annotators=("canny", "pidinet"))
    plans = tuning.plan_stages(cfg, [["canny"], ["pidinet"]], cluster_memory=64 * 2**30)
    hed = _annotate_args(cfg, ["pidinet"], plans, cluster_cpus=2.0, n_groups=1)
    assert hed["num_cpus"] == 2.0 - ENCODE_WRITE_CPUS  # 1.5 CPUs: torch runs round(1.5) = 2 threads
    assert hed["memory"] == plans["pidinet"].memory
    assert _annotate_args(cfg, ["canny"], plans, cluster_cpus=2.0, n_groups=1)["num_cpus"] == 1.0
    assert _annotate_args(cfg, ["pidinet"], plans, cluster_cpus=3.0, n_groups=2)["num_cpus"] == 1.25
    assert _annotate_args(cfg, ["pidinet"], plans, cluster_cpus=64.0, n_groups=1)["num_cpus"] == 2.0  # one node's
    pinned = dataclasses.replace(cfg, resources={"pidinet": StageResources(num_cpus=0.5)})
    assert _annotate_args(pinned, ["pidinet"], plans, cluster_cpus=2.0, n_groups=1)["num_cpus"] == 0.5


def test_data_context_keeps_the_terminal_ours():
    import ray.data

    ctx = dataclasses.replace(ray.data.DataContext.get_current())
    tuning.configure_data_context(ctx)
    assert not ctx.enable_progress_bars and not ctx.print_on_execution_start
    assert ctx.target_max_block_size == 256 * tuning.MiB


def test_a_job_at_default_settings_raises_no_high_memory_warning(ray_local, tmp_path, caplog):
    from pipeline.job import run_label_job

    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.jpg").write_bytes(jpeg_bytes(photo((40 + i, 56))))
    cfg = LabelJobConfig(input=str(src), output=str(tmp_path / "out"), annotators=("canny",),
                         min_short_side=32, target_short_side=40, shard_size=4)
    with caplog.at_level(logging.WARNING, logger="ray.data"):
        stats = run_label_job(cfg, progress=False)
    assert stats["records_out"] == 6
    assert not [r for r in caplog.records if "memory=" in r.getMessage()]
