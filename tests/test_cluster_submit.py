"""`ray start --head` on loopback + `ray job submit --working-dir .`: the documented cluster path, for real."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.bad_inputs import photo

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def head(tmp_path):
    """A real Ray head node on 127.0.0.1 with its own ports and temp dir, stopped after the test."""
    if not os.path.exists(RAY):
        pytest.skip("ray CLI not installed next to this interpreter")
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"rayt{port}"  # short: Ray's socket paths must stay under 108 bytes
    # As on a real cluster, the nodes' environment is the one with the dependencies: `python` in the
    # job's entrypoint resolves through the head's PATH.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=2",
            f"--temp-dir={temp}",
            "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--min-worker-port={20000 + port % 1000 * 10}",
            f"--max-worker-port={20000 + port % 1000 * 10 + 200}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited: {proc.stdout.read()[-2000:]}")
        ok = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, timeout=60)
        if ok.returncode == 0:
            break
        time.sleep(2)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("the Ray head's job server did not come up")
    yield address, env
    # Not `ray stop`: it would stop every Ray on the machine, the test session's own included.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the node is still in its process group
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_labels_a_folder(head, tmp_path):
    address, env = head
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate([(64, 80), (80, 64), (72, 72)]):
        Image.fromarray(photo(size)).save(src / f"c{i}.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    cmd = [
        RAY,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(ROOT),
        "--",
        "python",
        "-m",
        "jobs.label",
        str(src),
        str(out),
        "--annotators",
        "canny,lineart_standard",
        "--quiet",
        "--min-short-side",
        "32",
        "--target-short-side",
        "64",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    if done.returncode != 0:
        pytest.fail(f"ray job submit failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}", pytrace=False)
    assert "labeled 3 of 4 inputs" in done.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_out"] == 3 and stats["errors"] == 1
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all("annotation_edge" in ln for ln in lines)
