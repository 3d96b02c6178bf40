"""The label job and the dataset tools against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from pyarrow import fs as pafs

from pipeline.config import LabelJobConfig
from pipeline.job import run_label_job
from pipeline.lease import LeaseHeldError, LeaseLostError, acquire, check_owner
from schemas.storage import Storage, StorageError
from tests.bad_inputs import photo


def job(src, out, annotators=("canny",)) -> LabelJobConfig:
    return LabelJobConfig(
        input=str(src), output=str(out), annotators=annotators, min_short_side=32, target_short_side=64, shard_size=3
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("s3corpus")
    for i in range(7):
        Image.fromarray(photo((64 + 3 * i, 80))).save(src / f"p{i}.png")
    (src / "p9_copy.png").write_bytes((src / "p0.png").read_bytes())
    (src / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return src


@pytest.fixture(scope="module")
def on_s3_and_local(corpus, s3, ray_local, tmp_path_factory):
    bucket = s3.new_bucket()
    uri = f"s3://{bucket}/labels/run1"
    local = tmp_path_factory.mktemp("local") / "out"
    remote_stats = run_label_job(job(corpus, uri), progress=False)
    return uri, local, remote_stats, run_label_job(job(corpus, local), progress=False)


def listing(storage: Storage) -> dict[str, bytes]:
    skip = ("stats.json", "job.json", "preview.png")
    return {p: storage.get(p) for p in storage.list(recursive=True) if p not in skip}


def test_s3_output_is_the_same_dataset_as_local_output(on_s3_and_local):
    uri, local, s3_stats, local_stats = on_s3_and_local
    remote, here = listing(Storage(uri)), listing(Storage(str(local)))
    assert set(remote) == set(here)
    assert remote == here  # same ids, same metadata lines, same Parquet bytes, same Joint files
    assert s3_stats["records_out"] == 7 and s3_stats["errors_by_reason"] == {"duplicate": 1, "not_an_image": 1}
    assert not any(p.startswith("_staging/") for p in remote)
    assert Storage(uri).exists("preview.png") and not Storage(uri).exists("_lease.json")


def test_rerun_on_s3_after_losing_a_marker_rebuilds_the_same_shard(on_s3_and_local, corpus):
    uri, _, _, _ = on_s3_and_local
    storage = Storage(uri)
    before = listing(storage)
    storage.delete("_shards/shard-00001.done")  # a crash just before the marker of shard 1
    stats = run_label_job(job(corpus, uri), progress=False)
    assert stats["this_run"]["processed"] == 3 and stats["this_run"]["skipped_finished"] == 6
    assert listing(storage) == before


def test_dataset_tools_read_s3(on_s3_and_local, tmp_path):
    from jobs.cli import main
    from pipeline.validate import validate

    uri, _, _, _ = on_s3_and_local
    report = validate(uri)
    assert report.ok, report.format()
    assert report.records == 7 and report.layouts == ["parquet", "joint"]
    assert main(["preview", uri, "--out", str(tmp_path / "p.png")]) == 0
    assert Image.open(tmp_path / "p.png").width > 64


def test_a_second_job_on_a_leased_output_is_refused_in_one_line(s3):
    storage = Storage(f"s3://{s3.new_bucket()}/out")
    mine = acquire(storage)
    with pytest.raises(LeaseHeldError) as err:
        acquire(storage)
    assert "is being written by job" in str(err.value) and "--takeover" in str(err.value)
    assert "\n" not in str(err.value)
    other = acquire(storage, takeover=True)
    with pytest.raises(LeaseLostError):
        check_owner(storage, mine.owner)
    check_owner(storage, other.owner)


def test_put_many_stores_every_object_concurrently_and_raises_a_failure_after_the_rest(s3, monkeypatch):
    storage = Storage(f"s3://{s3.new_bucket()}/many")
    items = [(f"image/{i:03d}.jpg", bytes([i]) * (i + 1)) for i in range(40)]
    storage.put_many(items)
    assert storage.list("image") == [rel for rel, _ in items]
    assert all(storage.get(rel) == data for rel, data in items)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")  # every PUT is refused: the failure reaches the caller
    refused = Storage(f"s3://{s3.new_bucket()}/many")
    with pytest.raises(OSError, match="(?i)access.?denied|signature"):
        refused.put_many(items[:5])


def test_storage_problems_fail_before_any_work_in_one_line(s3, corpus, monkeypatch, ray_local):
    secret = s3.env()["AWS_SECRET_ACCESS_KEY"]
    missing = "s3://no-such-bucket-jodi/out"
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-jodi' does not exist"):
        run_label_job(job(corpus, missing), progress=False)
    bucket = s3.new_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secret)
    with pytest.raises(StorageError) as denied:
        Storage(f"s3://{bucket}/out").check_writable()
    assert "access denied" in str(denied.value) and "AWS_SECRET_ACCESS_KEY" in str(denied.value)
    assert secret not in str(denied.value) and "\n" not in str(denied.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match="cannot reach the storage service at http://127.0.0.1:9"):
        Storage(f"s3://{bucket}/out").check_writable()
    assert secret.encode() not in pickle.dumps(Storage(f"s3://{bucket}/out"))  # what Ray ships to workers


def test_publish_dry_run_and_cache_latents_read_s3(on_s3_and_local, tmp_path):
    from jodi.latents import CacheConfig, run_cache_job
    from pipeline.publish import PublishConfig, publish

    uri, _, _, _ = on_s3_and_local
    cfg = PublishConfig(source=uri, repo_id="user/labels", staging=str(tmp_path / "hub"), dry_run=True)
    prepared, report = publish(cfg, log=lambda line: None)
    assert report.ok and prepared.records == 7
    assert prepared.errors == {("dedup", "duplicate"): 1, ("decode", "not_an_image"): 1}
    assert "user/labels" not in str(prepared.path) and (tmp_path / "hub" / "README.md").exists()
    counts = run_cache_job(CacheConfig(input=uri, output=str(tmp_path / "latents"), vae="tiny",
                                       text_encoder="tiny", resolution=128, batch_size=4))  # fmt: skip
    assert counts == {"total": 7, "new": 7, "cached": 7}


# ----- the store goes away mid-run ------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
LOST_ARGS = ["-a", "canny", "--quiet", "--min-short-side", "32", "--target-short-side", "64", "--shard-size", "2",
             "--batch-size", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def lost_corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("lost_in")
    for i in range(16):
        Image.fromarray(photo((64 + 2 * i, 80))).save(src / f"q{i:02d}.png")
    return src


def _label(src: Path, out: str, env: dict) -> subprocess.Popen:
    """`python -m jobs.label` as a user runs it: its own embedded Ray, the store's standard environment."""
    return subprocess.Popen([sys.executable, "-m", "jobs.label", str(src), out, *LOST_ARGS], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_storage_lost_mid_run_fails_in_one_line_and_the_rerun_resumes(lost_corpus, tmp_path, monkeypatch, ray_local):
    """A second SeaweedFS (not the session's), stopped while the job writes to it and restarted on the same
    data and port: the job exits 1 with one line naming the URI, and the rerun gives the uninterrupted dataset."""
    from tests.s3server import S3Server

    server = S3Server(tmp_path / "own_s3").start()
    try:
        out = f"s3://{server.new_bucket()}/labels"
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | server.env()
        job_ = _label(lost_corpus, out, env)
        staging = pafs.FileSelector(out[len("s3://") :] + "/_staging", recursive=True, allow_not_found=True)
        while job_.poll() is None and not server.filesystem().get_file_info(staging):
            time.sleep(0.1)  # until the job has written its first staging part
        server.stop()
        _, err = job_.communicate(timeout=400)
        lines = [line for line in err.splitlines() if line.strip()]
        assert job_.returncode == 1, err[-3000:]
        # Refused connections, or the server's errors while it shuts down: either way the store, by its URI.
        assert lines[-1].startswith(f"jodi label: {out}: ") and "\x1b" not in lines[-1], err[-3000:]
        assert lines[-1].endswith("the data written so far is safe: rerun the same command to resume"), lines[-1]
        assert server.env()["AWS_SECRET_ACCESS_KEY"] not in err
        assert not any(word in err for word in ("Traceback", "RayTaskError", "core_worker", "ray.data")), err[-3000:]

        server.start()  # the same data dir and port: the store is back
        rerun = _label(lost_corpus, out, env)
        stdout, err = rerun.communicate(timeout=400)
        assert rerun.returncode == 0, err[-3000:]
        assert "labeled 16 of 16 inputs" in stdout
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)  # this process reads the second store too
        got = listing(Storage(out))
    finally:
        server.stop()
    reference = tmp_path / "reference"
    cfg = job(lost_corpus, reference)
    run_label_job(dataclasses.replace(cfg, shard_size=2), progress=False)
    assert got == listing(Storage(str(reference)))  # same files, same bytes: 0 lost, 0 duplicated
    assert not any(p.startswith("_staging/") or p == "_lease.json" for p in got)


# ----- gs:// (no GCS emulator here: what can fail for real, fails before any work in one line) ---------------
GCS_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")


@pytest.fixture
def no_gcloud(tmp_path, monkeypatch):
    """No Google credentials anywhere the client looks: no variables, no gcloud ADC file, not a GCE VM."""
    import schemas.storage

    for name in GCS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(schemas.storage, "GCE_PRODUCT_NAME", str(tmp_path / "no_dmi"))


def test_gs_output_without_credentials_fails_before_any_work_in_one_line(corpus, no_gcloud, tmp_path, capsys):
    from jobs.cli import main

    uri = "gs://jodi-no-such-bucket/labels"
    assert main(["label", str(corpus), uri, "-a", "canny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"jodi label: {uri}: no Google Cloud credentials found; set GOOGLE_APPLICATION_CREDENTIALS to a " \
                  "service-account key file (or STORAGE_EMULATOR_HOST for a GCS emulator)"  # fmt: skip


def test_gs_output_with_an_unusable_key_never_prints_it(corpus, no_gcloud, tmp_path, monkeypatch, capsys):
    from jobs.cli import main

    key = tmp_path / "key.json"
    pem = "-----BEGIN PRIVATE KEY-----\nSECRET-2\n-----END PRIVATE KEY-----\n"
    key.write_text(json.dumps({"type": "service_account", "private_key_id": "KEYID-SECRET-1", "private_key": pem}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    uri = "gs://jodi-no-such-bucket/labels"
    assert main(["label", str(corpus), uri, "-a", "canny", "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"jodi label: {uri}: ") and "GOOGLE_APPLICATION_CREDENTIALS" in err and "\n" not in err
    assert "SECRET" not in captured.err + captured.out


def test_gs_output_at_an_unreachable_endpoint_names_it(no_gcloud, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    with pytest.raises(StorageError) as err:  # after the client's bounded retries (GCS_RETRY_SECONDS)
        Storage("gs://jodi-bucket/labels").check_writable()
    assert str(err.value) == (
        "gs://jodi-bucket/labels: cannot reach the storage service at http://127.0.0.1:9; "
        "check STORAGE_EMULATOR_HOST / the network"
    )
