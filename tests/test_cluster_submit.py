"""A real two-node Ray cluster on loopback (`ray start --head` + `ray start --address`), jobs submitted with
`ray job submit --working-dir .`, output in the real S3 server, and faults: kill -9 of an annotator actor's
worker process (the job recovers by itself), of the worker node's raylet (a fresh node replaces it; the job
recovers or is stopped, and the rerun finishes) and of the job's driver (the rerun finishes). Every run must
give the same dataset as an uninterrupted in-process run: same metadata lines, same ids, nothing lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from pipeline.config import LabelJobConfig
from pipeline.job import run_label_job
from schemas.storage import Storage
from tests.bad_inputs import photo

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
N_IMAGES = 32
ARGS = ["-a", "canny,lineart_standard", "--quiet", "--min-short-side", "32", "--target-short-side", "64",
        "--shard-size", "4", "--batch-size", "2"]  # fmt: skip


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000:
            return port


def _node(args: list[str], env: dict, temp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the node is still in its session


@dataclass
class Cluster:
    """The running test cluster: the job server's address, the nodes' environment, Ray's temp dir, the head's
    GCS port and the worker node's `ray start --block` process (replaced when a test restarts the node)."""

    address: str
    env: dict
    temp: Path
    port: int
    head: subprocess.Popen
    worker: subprocess.Popen | None = None


def start_worker(c: Cluster) -> None:
    """(Re)start the worker node (2 CPUs) with the same arguments, first stopping whatever is left of the old
    one; the head then schedules on it as before."""
    if c.worker is not None:
        _stop(c.worker)
    c.worker = _node(
        [f"--address=127.0.0.1:{c.port}", "--num-cpus=2", f"--dashboard-agent-listen-port={free_port()}",
         f"--min-worker-port={30000 + c.port % 1000 * 10}", f"--max-worker-port={30000 + c.port % 1000 * 10 + 200}"],
        c.env, c.temp,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(s3):
    """Head (1 CPU) + one worker node (2 CPUs), each a `ray start --block` in its own session, so the test can
    tell its processes apart and stop them by process group. The nodes get the AWS_* variables, as a user
    exports them on every node before `ray start`."""
    if not os.path.exists(RAY):
        pytest.skip("ray CLI not installed next to this interpreter")
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"rayc{port}"  # short: Ray's socket paths must stay under 108 bytes
    env = {
        **os.environ,
        **s3.env(),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    head = _node(
        ["--head", f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--num-cpus=1",
         "--include-dashboard=true", f"--ray-client-server-port={free_port()}",
         f"--dashboard-agent-listen-port={free_port()}", f"--min-worker-port={20000 + port % 1000 * 10}",
         f"--max-worker-port={20000 + port % 1000 * 10 + 200}"],
        env, temp,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited: {head.stdout.read()[-2000:]}")
        if subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(2)
    else:
        _stop(head)
        pytest.fail("the Ray head's job server did not come up")
    c = Cluster(address, env, temp, port, head)
    start_worker(c)
    yield c
    for pid in _cluster_pids(temp, "jobs.label"):  # a job left behind by a failed test: the driver has its own session
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _stop(c.worker)
    _stop(head)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    src = tmp_path_factory.mktemp("cluster_in")
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        a = np.clip(photo((64, 80)).astype(int) + rng.integers(-20, 20, (64, 80, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(src / f"img{i:03d}.png")
    return src


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory, ray_local):
    """The uninterrupted run, in-process: what every faulted cluster run must equal."""
    out = tmp_path_factory.mktemp("ref") / "out"
    cfg = LabelJobConfig(input=str(corpus), output=str(out), annotators=("canny", "lineart_standard"),
                         min_short_side=32, target_short_side=64, shard_size=4)  # fmt: skip
    run_label_job(cfg, progress=False)
    return dataset(Storage(str(out)))


def dataset(storage: Storage) -> dict:
    lines = sorted(storage.get_text("metadata.jsonl").splitlines())
    data = storage.read_table(storage.list("data", ".parquet"), columns=["id", "source"])
    sources = [Path(s).name for s in data.column("source").to_pylist()]
    return {"lines": lines, "ids": sorted(data.column("id").to_pylist()), "sources": sorted(sources)}


def submit(
    address: str, env: dict, out: str, corpus: Path, wait: bool = True, job_id: str | None = None
) -> subprocess.CompletedProcess:
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT)]
    cmd += [] if wait else ["--no-wait"]
    cmd += [f"--submission-id={job_id}"] if job_id else []
    cmd += ["--", "python", "-m", "jobs.label", str(corpus), out, *ARGS]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)


def _wait_for(storage: Storage, rel: str, suffix: str, at_least: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(storage.list(rel, suffix, recursive=True)) >= at_least:
            return
        time.sleep(0.2)
    pytest.fail(f"no progress in {storage.url(rel)}")


def _cluster_pids(temp: Path, needle: str) -> list[int]:
    """Processes whose command line holds `needle` and that belong to this test's cluster: they, or a parent
    (the raylet that started a worker), name the cluster's temp dir."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if needle not in " ".join(proc.info["cmdline"] or []):
                continue
            chain = [proc, *proc.parents()[:3]]
            if any(str(temp) in " ".join(p.cmdline()) for p in chain):
                out.append(proc.pid)
    return out


def _wait_for_actor_pids(address: str, needle: str, storage: Storage, timeout: float = 300) -> list[int]:
    """PIDs of the cluster's live actors whose name holds `needle` (Ray's state API on the head: only
    this cluster's actors, named once constructed), as soon as one exists."""
    from ray.util.state import list_actors

    deadline = time.time() + timeout
    while time.time() < deadline:
        actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True, timeout=10)
        pids = [a.pid for a in actors if needle in (a.repr_name or "") and a.pid]
        if pids:
            return pids
        if storage.exists("stats.json"):
            pytest.fail(f"the job finished before a {needle} actor could be killed")
        time.sleep(0.2)
    pytest.fail(f"no {needle} actor found on the cluster")


def test_job_survives_a_killed_annotator_worker(cluster, s3, corpus, reference):
    address, env = cluster.address, cluster.env
    out = f"s3://{s3.new_bucket()}/labels"
    storage = Storage(out)
    assert submit(address, env, out, corpus, wait=False).returncode == 0
    # Kill as soon as an annotator actor exists, not after a shard is done: on a fast machine the annotators
    # may have finished every batch by then and been released.
    victims = _wait_for_actor_pids(address, "AnnotateStage", storage)
    os.kill(victims[0], signal.SIGKILL)  # Ray restarts the actor and retries its batch
    deadline = time.time() + 400
    while time.time() < deadline and not storage.exists("stats.json"):
        time.sleep(1)
    assert storage.exists("stats.json"), "the job did not finish after losing an annotator worker"
    assert not storage.list("_staging", recursive=True)
    assert dataset(storage) == reference


def test_rerun_after_a_killed_driver_gives_the_same_dataset(cluster, s3, corpus, reference):
    address, env, temp = cluster.address, cluster.env, cluster.temp
    out = f"s3://{s3.new_bucket()}/labels"
    storage = Storage(out)
    assert submit(address, env, out, corpus, wait=False).returncode == 0
    _wait_for(storage, "_shards", ".done", 2)
    drivers = _cluster_pids(temp, out)  # the job's entrypoint names the output URI
    assert drivers, "the job's driver process was not found"
    for pid in drivers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not storage.exists("stats.json"), "the job finished before its driver could be killed"
    done = submit(address, env, out, corpus)  # the rerun takes over the dead driver's lease and resumes
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"labeled {len(reference['ids'])} of {N_IMAGES} inputs" in done.stdout
    assert dataset(storage) == reference
    assert not storage.list("_staging", recursive=True) and not storage.exists("_lease.json")


def _wait_for_raylet(c: Cluster, storage: Storage, timeout: float = 300) -> int:
    """The PID of the worker node's raylet (a child of its `ray start --block`), once labeling is under way: a
    staging part or a shard marker written (staging parts live only until their shard is finalised)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        children = psutil.Process(c.worker.pid).children(recursive=True)
        raylets = [p.pid for p in children if p.name() == "raylet"]
        if raylets and (storage.list("_staging", ".parquet", recursive=True) or storage.list("_shards", ".done")):
            return raylets[0]
        if storage.exists("stats.json"):
            pytest.fail("the job finished before the worker node's raylet could be killed")
        time.sleep(0.1)
    pytest.fail("no raylet found on the worker node")


def _wait_while_progressing(address: str, job_id: str, storage: Storage, quiet_for: float = 45) -> bool:
    """Wait while the job makes progress (new staging parts or shard markers); True once it has ended
    (finished, failed or stopped), False when nothing changed for `quiet_for` seconds: it hangs."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    seen, since = None, time.time()
    while time.time() - since < quiet_for:
        if client.get_job_status(job_id).is_terminal():
            return True
        now = (len(storage.list("_staging", recursive=True)), len(storage.list("_shards", ".done")))
        if now != seen:
            seen, since = now, time.time()
        time.sleep(1)
    return False


def test_rerun_after_a_killed_worker_raylet_gives_the_same_dataset(cluster, s3, corpus, reference):
    out = f"s3://{s3.new_bucket()}/labels"
    storage = Storage(out)
    job_id = f"raylet-kill-{uuid.uuid4().hex[:8]}"
    assert submit(cluster.address, cluster.env, out, corpus, wait=False, job_id=job_id).returncode == 0
    raylet = _wait_for_raylet(cluster, storage)
    os.kill(raylet, signal.SIGKILL)  # the whole node goes: its workers, its object store, its staged blocks
    start_worker(cluster)  # a fresh node in its place, as a cluster's autoscaler would bring one
    # The job may recover by itself on the new node, or fail, or hang on its lost objects: stop it if it hangs.
    if not _wait_while_progressing(cluster.address, job_id, storage):
        stop = [RAY, "job", "stop", "--address", cluster.address, job_id]
        subprocess.run(stop, env=cluster.env, capture_output=True, text=True, timeout=120)
    done = submit(cluster.address, cluster.env, out, corpus)  # finished shards are skipped, the rest resumes
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"labeled {len(reference['ids'])} of {N_IMAGES} inputs" in done.stdout
    assert dataset(storage) == reference  # 0 lost, 0 duplicated
    assert not storage.list("_staging", recursive=True) and not storage.exists("_lease.json")
