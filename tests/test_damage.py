"""Concurrency and damage: a second job refused by the lease, damaged files found by `jodi validate`,
re-opened by `--repair` and rebuilt by the next run, unreadable staging parts discarded on rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from jobs.cli import main
from pipeline.config import LabelJobConfig
from pipeline.job import run_label_job
from pipeline.lease import LeaseHeldError, acquire, release
from schemas.storage import Storage
from tests.bad_inputs import photo


def job(src: Path, out: Path) -> LabelJobConfig:
    return LabelJobConfig(input=str(src), output=str(out), annotators=("canny",), min_short_side=32,
                          target_short_side=64, shard_size=2)  # fmt: skip


def snapshot(out: Path) -> dict[str, bytes]:
    skip = {"stats.json", "job.json", "preview.png"}
    files = [p for p in sorted(out.rglob("*")) if p.is_file() and p.name not in skip]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, ray_local):
    src = tmp_path_factory.mktemp("dmg_in")
    for i in range(5):
        Image.fromarray(photo((64 + 4 * i, 72))).save(src / f"d{i}.png")
    out = tmp_path_factory.mktemp("dmg") / "out"
    run_label_job(job(src, out), progress=False)
    return src, out, snapshot(out)


def test_a_second_job_on_the_same_output_is_refused(labeled):
    src, out, before = labeled
    holder = acquire(Storage(str(out)))  # another live job (this process) holds the output
    try:
        with pytest.raises(LeaseHeldError, match="is being written by job .* --takeover"):
            run_label_job(job(src, out), progress=False)
    finally:
        release(Storage(str(out)), holder.owner)
    assert snapshot(out) == before


def test_validate_reports_and_repair_rebuilds_damaged_shards(labeled, capsys):
    src, out, before = labeled
    edge = sorted((out / "annotation_edge").iterdir())[0]
    edge.unlink()  # a deleted annotation file
    data = out / "data" / "shard-00002.parquet"
    data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])  # a truncated Parquet shard
    assert main(["validate", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "[damaged_shard]" in printed and "Joint files missing" in printed and "unreadable" in printed
    assert main(["validate", str(out), "--repair"]) == 1
    assert "re-opened 2 shards" in capsys.readouterr().out
    stats = run_label_job(job(src, out), progress=False)
    assert stats["this_run"]["processed"] == 3  # the two re-opened shards (2 + 1 inputs), nothing else
    assert snapshot(out) == before
    assert main(["validate", str(out)]) == 0
    assert "OK: no problems found" in capsys.readouterr().out


def test_rerun_discards_an_unreadable_staging_part(labeled):
    src, out, before = labeled
    (out / "_shards" / "shard-00000.done").unlink()  # shard 0 unfinished again ...
    (out / "_staging" / "shard-00000").mkdir(parents=True)
    (out / "_staging" / "shard-00000" / "part-0000.parquet").write_bytes(b"PAR1 truncated by a crash")
    stats = run_label_job(job(src, out), progress=False)  # ... with a truncated part: no traceback
    assert stats["this_run"]["processed"] == 2
    assert snapshot(out) == before
    assert not (out / "_staging").exists()


def test_the_embedded_ray_goes_away_with_a_killed_driver(tmp_path):
    """kill -9 of a driver that started its own local Ray: none of that Ray's processes outlive it for long."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = "from pipeline.job import _ensure_ray; _ensure_ray(); print('up', flush=True); import time; time.sleep(99)"
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(root)}
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    assert driver.stdout.readline().strip() == "up"
    session = f"_{driver.pid}/"  # Ray names the session folder after the driver's pid
    assert any(session in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline, left = time.time() + 60, ["?"]
    while time.time() < deadline and left:
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if session in " ".join(p.info["cmdline"] or [])]
        time.sleep(1)
    assert not left, f"processes of the killed driver's Ray still alive: {left}"
