"""The import direction: common <- schemas <- annotators <- pipeline; schemas <- jodi; jobs wires everything.

`common/` (hub loading, image resizing) is the bottom layer: it imports nothing of ours, and every package may
import it."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"common", "schemas", "annotators", "pipeline", "jodi", "jobs"}
ALLOWED = {
    "common": set(),
    "schemas": {"common"},
    "annotators": {"common", "schemas"},
    "pipeline": {"common", "schemas", "annotators"},
    "jodi": {"common", "schemas"},
    "jobs": OURS - {"jobs"},
    "bench": OURS - {"jobs"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported_packages(path) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"{package} must not import {bad}"


def test_registry_and_weights_free_annotators_do_not_import_torch():
    """Every Ray stage worker imports the registry: torch (seconds and hundreds of MB per process) must
    wait until a model-backed annotator is built. Checked in a fresh interpreter, where nothing else
    has imported torch yet."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, annotators.registry, annotators\n"
        "assert 'torch' not in sys.modules, 'importing the registry imported torch'\n"
        "import pipeline.stages\n"
        "assert 'torch' not in sys.modules, 'importing the label-job stages imported torch'\n"
        "for name in ('canny', 'lineart_standard'):\n"
        "    label = annotators.build(name).annotate([np.zeros((48, 64, 3), np.uint8)])[0]\n"
        "    assert label.shape == (48, 64), label.shape\n"
        "assert 'torch' not in sys.modules, 'a weights-free annotator imported torch'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
