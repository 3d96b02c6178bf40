"""pipeline/runtime.py: `jodi label` starts its own Ray and the terminal shows only our output; --verbose
shows Ray's. Run as a user runs it (`python -m jobs.label` in a subprocess with an embedded Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.bad_inputs import photo

ROOT = Path(__file__).resolve().parents[1]
# What Ray prints by itself (Ray 2.x): its token-auth notice, the C++ core worker's ERROR lines, Ray Data's
# per-dataset INFO lines and its progress-bar warning.
RAY_LINES = ("Token authentication", "core_worker.cc", "Starting execution", "Execution plan", "execution finished",
             "Progress bars disabled", "Traceback")  # fmt: skip


def _label(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "JODI_RAY_LOGS")}
    cmd = [sys.executable, "-m", "jobs.label", str(src), str(out), "-a", "canny", "--min-short-side", "32",
           "--target-short-side", "64", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)


def test_jodi_label_keeps_rays_logs_off_the_terminal_unless_verbose(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo((64 + 4 * i, 80))).save(src / f"p{i}.png")
    quiet = _label(src, tmp_path / "out")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    terminal = quiet.stdout + quiet.stderr
    assert "labeled 2 of 2 inputs" in quiet.stdout
    assert [marker for marker in RAY_LINES if marker in terminal] == [], terminal[-3000:]

    verbose = _label(src, tmp_path / "out_verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "labeled 2 of 2 inputs" in verbose.stdout
    assert "Starting execution" in verbose.stdout + verbose.stderr  # Ray Data's own INFO line, as Ray prints it
