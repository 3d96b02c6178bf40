"""The driver's side of finalisation: counts and ids per shard, and a Ray task per shard once it is staged.

The driver never sees file bytes: the writers return one small status row per input (source, shard,
id, error). `ShardTracker` counts them per shard and keeps, per record id, the first (shard, source)
that produced it, which decides exact duplicates the same way whatever order batches arrive in.
`Finaliser` submits `pipeline.finalize.finalize_shard` as a Ray task for each shard as soon as all of
its inputs and those of every earlier unfinished shard are staged (dedup needs the earlier ids), so
shards are finished while the rest of the corpus is still being labeled.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.finalize import ShardPlan, finalize_shard
from pipeline.writer import OutputLayout
from schemas.record import Provenance


class ShardTracker:
    """Per pending shard: its expected sources, how many are staged, and (source, id) of its good rows."""

    def __init__(self, expected: dict[int, list[str]]) -> None:
        self.expected = {s: len(v) for s, v in expected.items()}
        self.sources = {s: tuple(v) for s, v in expected.items()}
        self.count = dict.fromkeys(expected, 0)
        self.good: dict[int, list[tuple[str, str]]] = {s: [] for s in expected}
        self.first: dict[str, tuple[int, str]] = {}  # record id -> (shard, source) of its first input
        self._seen: dict[int, set[str]] = {s: set() for s in expected}

    def known(self, shard: int, records: pa.Table) -> None:
        """A finished shard's records: their ids are taken, later inputs with the same bytes are duplicates."""
        for rid, src in zip(records.column("id").to_pylist(), records.column("source").to_pylist(), strict=True):
            self._claim(rid, shard, src)

    def staged(self, shard: int, rows: pa.Table) -> set[str]:
        """Rows an earlier run staged (columns source, id, error); returns their sources."""
        columns = (rows.column(c).to_pylist() for c in ("source", "id", "error"))
        self.add(shard, *columns)
        return self._seen[shard]

    def add(self, shard: int, sources: list[str], ids: list[str], errors: list[str]) -> None:
        seen = self._seen[shard]
        for src, rid, err in zip(sources, ids, errors, strict=True):
            if src in seen or src is None:
                continue  # a retried batch reports its rows again
            seen.add(src)
            self.count[shard] += 1
            if not err:
                self.good[shard].append((src, rid))
                self._claim(rid, shard, src)

    def _claim(self, rid: str, shard: int, src: str) -> None:
        if rid not in self.first or (shard, src) < self.first[rid]:
            self.first[rid] = (shard, src)

    def complete(self, shard: int) -> bool:
        return self.count[shard] >= self.expected[shard]

    def duplicates(self, shard: int) -> dict[str, str]:
        """source -> the earlier source with the same bytes, for the shard's good rows that are not first."""
        out = {}
        for src, rid in self.good[shard]:
            if self.first[rid] != (shard, src):
                out[src] = self.first[rid][1]
        return out

    def release(self, shard: int) -> None:
        """After submission only the ids stay (needed to dedup later shards)."""
        self.good[shard] = []
        self._seen[shard] = set()


class Finaliser:
    """Submits one finalisation task per shard, in shard order, as soon as the shards up to it are staged."""

    def __init__(
        self,
        layout: OutputLayout,
        tracker: ShardTracker,
        annotators: list[str],
        provenance: list[Provenance],
        owner: str | None,
    ) -> None:
        self.layout, self.tracker, self.owner = layout, tracker, owner
        self.annotators, self.provenance = tuple(annotators), tuple(provenance)
        self.queue = sorted(tracker.expected)
        self.futures = []

    def observe(self, batch: dict) -> None:
        """A batch of writer status rows (numpy columns source, shard, id, error)."""
        by_shard: dict[int, list[int]] = {}
        for i, s in enumerate(batch["shard"]):
            by_shard.setdefault(int(s), []).append(i)
        for s, rows in by_shard.items():
            if s in self.tracker.expected:
                self.tracker.add(
                    s,
                    [str(batch["source"][i]) for i in rows],
                    [str(batch["id"][i]) for i in rows],
                    [str(batch["error"][i]) for i in rows],
                )
        self.submit_ready()

    def submit_ready(self) -> None:
        import ray

        task = ray.remote(num_cpus=0.25, max_retries=3)(finalize_shard)
        while self.queue and self.tracker.complete(self.queue[0]):
            s = self.queue.pop(0)
            plan = ShardPlan(
                shard=s,
                sources=self.tracker.sources[s],
                annotators=self.annotators,
                provenance=self.provenance,
                duplicates=self.tracker.duplicates(s),
                lease_owner=self.owner,
            )
            self.tracker.release(s)
            self.futures.append(task.remote(self.layout, plan))

    def wait(self) -> list[dict]:
        import ray

        if self.queue:
            s = self.queue[0]
            raise RuntimeError(
                f"shard-{s:05d}: {self.tracker.expected[s] - self.tracker.count[s]} inputs were never staged"
            )
        out = ray.get(self.futures)
        self.futures = []
        return out
