"""Multi-worker data split: disjoint, complete, and the same after a kill, so resume is exact per worker."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jodi.train.data import bucketed_batches, cache_files, worker_rows


def _cache(root, sizes: list[int]) -> str:
    (root / "latents").mkdir(parents=True)
    n = 0
    for f, size in enumerate(sizes):
        ids = [f"r{n + i:03d}" for i in range(size)]
        buckets = ["1.0" if (n + i) % 3 else "0.75" for i in range(size)]
        pq.write_table(pa.table({"id": ids, "bucket": buckets}), root / "latents" / f"part-{f:02d}.parquet")
        n += size
    return str(root)


@pytest.mark.parametrize("sizes", [[7, 6, 8, 5], [21]], ids=["files_round_robin", "rows_round_robin"])
def test_workers_split_the_cache_disjointly_and_completely(tmp_path, sizes):
    files = cache_files([_cache(tmp_path, sizes)])
    shares = [[r["id"] for r in worker_rows(files, rank, 2)] for rank in range(2)]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == [f"r{i:03d}" for i in range(sum(sizes))]
    assert min(len(s) for s in shares) >= sum(sizes) // 2 - max(sizes)
    assert all(r["source_index"] == 0 for r in worker_rows(files, 0, 2))


def test_a_resumed_worker_continues_with_exactly_the_rows_it_would_have_seen(tmp_path):
    """What `run_training` does on resume: rebuild the worker's batches from scratch and skip the ones already
    trained. Per rank, the batches after the skip equal those of the uninterrupted run, row for row."""
    root = _cache(tmp_path, [9, 7, 8, 6])
    for rank in range(2):
        def batches():
            rows = worker_rows(cache_files([root]), rank, 2)
            return [[r["id"] for r in b] for b in bucketed_batches(rows, 2, seed=4, epoch=1, rank=rank, shuffle_buffer=4)]

        uninterrupted = batches()
        done = 3  # batches trained before the kill
        resumed = batches()[done:]  # a new process: new file listing, new iterator
        assert len(uninterrupted) > done and resumed == uninterrupted[done:]
    assert [r["id"] for r in worker_rows(cache_files([root]), 0, 2)] != [
        r["id"] for r in worker_rows(cache_files([root]), 1, 2)]


def test_several_caches_keep_their_source_index(tmp_path):
    a, b = _cache(tmp_path / "a", [3]), _cache(tmp_path / "b", [2])
    rows = list(worker_rows(cache_files([a, b]), 0, 1))
    assert [r["source_index"] for r in rows] == [0, 0, 0, 1, 1]
