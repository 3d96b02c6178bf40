"""`jodi label --plan`: the split keeps every stage up with the slowest one; calibration on real tiny models."""

from __future__ import annotations

import argparse

import pytest
import yaml

from pipeline.plan import LIGHT_STAGES, Calibration, Hardware, PlanError, split
from tests.bad_inputs import jpeg_bytes, photo


def capacities(plan) -> dict[str, float]:
    return {s.name: s.images_per_second for s in plan.stages}


def test_gpu_split_makes_the_most_expensive_stage_the_bottleneck():
    # Joint's shape: RGB-X (50 diffusion steps) >> captioner > depth; Canny and the light stages on CPUs.
    cals = [
        Calibration("rgbx_albedo", 4.0, on_gpu=True, memory_mb=9000),
        Calibration("blip2_opt_2_7b", 1.0, on_gpu=True, memory_mb=16000),
        Calibration("depth_anything_v2_large", 0.1, on_gpu=True, memory_mb=2000),
        Calibration("canny", 0.01, on_gpu=False),
        Calibration(LIGHT_STAGES, 0.05, on_gpu=False),
    ]
    plan = split(cals, Hardware(cpus=32, gpus=8, gpu_memory_mb=80_000), corpus_images=1_600_000)
    cap = capacities(plan)
    assert plan.bottleneck == "rgbx_albedo"
    assert all(c >= cap["rgbx_albedo"] for c in cap.values())
    stages = {s.name: s for s in plan.stages}
    assert sum(s.pool * s.per_actor for s in plan.stages if s.on_gpu) <= 8
    assert stages["rgbx_albedo"].pool >= 5 and stages["rgbx_albedo"].per_actor == 1.0
    # Depth needs a fraction of one GPU; the captioner at least its memory share (16000/80000 -> 1/4).
    assert stages["depth_anything_v2_large"].pool == 1 and stages["depth_anything_v2_large"].per_actor < 1
    assert stages["blip2_opt_2_7b"].units >= 0.25
    # Projection: the corpus at the bottleneck's rate.
    assert plan.hours == pytest.approx(1_600_000 / cap["rgbx_albedo"] / 3600)


def test_equal_split_would_starve_the_expensive_stage_the_plan_does_not():
    cals = [Calibration("slow", 1.0, True, 0), Calibration("fast", 0.1, True, 0)]
    plan = split(cals, Hardware(cpus=16, gpus=4, gpu_memory_mb=80_000), corpus_images=1000)
    equal = 2 / 1.0  # two GPUs each: the slow stage makes 2 img/s
    assert plan.images_per_second > equal
    assert {s.name: s.units for s in plan.stages} == {"slow": 3.0, "fast": 0.375}


def test_split_refuses_hardware_without_room_for_one_actor_per_stage():
    with pytest.raises(PlanError, match="not enough devices"):
        split([Calibration(f"s{i}", 1.0, False) for i in range(9)], Hardware(cpus=2), corpus_images=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan_corpus")
    for i, size in enumerate([(64, 80), (80, 64), (72, 72)]):
        (folder / f"p{i}.jpg").write_bytes(jpeg_bytes(photo(size)))
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory):
    """Overrides of a tiny random-weight Depth Anything V2 (its real architecture), saved once per module."""
    from tests.builders import RANDOM_CHECKPOINTS

    return RANDOM_CHECKPOINTS["depth_anything_v2_small"](tmp_path_factory.mktemp("plan_da") / "da")


def test_plan_calibrates_tiny_models_and_writes_a_job_file_the_real_run_reads(corpus, tiny_depth, tmp_path, capsys):
    from jobs.label import add_arguments, build_config, main

    da = tiny_depth
    out, job_file, user_file = tmp_path / "out", tmp_path / "plan.yaml", tmp_path / "job.yaml"
    user_file.write_text(yaml.safe_dump({"overrides": {"depth_anything_v2_small": da}}))
    argv = [str(corpus), str(out), "-a", "canny,depth_anything_v2_small", "--min-short-side", "32",
            "--target-short-side", "64", "--config", str(user_file),
            "--plan", "--plan-images", "3", "--plan-yaml", str(job_file)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert not out.exists()  # a plan labels nothing
    assert "canny" in printed and "depth_anything_v2_small" in printed and "hours" in printed

    data = yaml.safe_load(job_file.read_text())
    assert data["annotators"] == ["canny", "depth_anything_v2_small"]
    # The file is a job config the real run accepts unchanged.
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = build_config(p.parse_args([str(corpus), str(out), "--config", str(job_file)]))
    assert cfg.annotators == ("canny", "depth_anything_v2_small")
    for name in cfg.annotators:
        assert cfg.resources_for(name).pool_max == data["resources"][name]["pool_max"]
    assert cfg.overrides["depth_anything_v2_small"] == da


def test_calibrated_split_feeds_the_slowest_stage_on_cpu(corpus, tiny_depth, tmp_path):
    from pipeline.config import LabelJobConfig
    from pipeline.plan import plan_label_job

    da = tiny_depth
    cfg = LabelJobConfig(input=str(corpus), output=str(tmp_path / "never"), annotators=("canny", "depth_anything_v2_small"),
                         overrides={"depth_anything_v2_small": da}, min_short_side=32, target_short_side=64)
    plan, _ = plan_label_job(cfg, sample_images=3, hardware=Hardware(cpus=6))
    stages = {s.name: s for s in plan.stages}
    # A transformer depth model costs far more per image than Canny: it gets the CPUs and sets the pace.
    assert stages["depth_anything_v2_small"].seconds_per_image > stages["canny"].seconds_per_image
    assert plan.bottleneck == max(plan.stages, key=lambda s: s.seconds_per_image).name
    assert stages["depth_anything_v2_small"].units > stages["canny"].units
    assert sum(s.units for s in plan.stages) <= 6
