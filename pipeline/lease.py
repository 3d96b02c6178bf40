"""One job per output at a time: a lease object `OUT/_lease.json` with the owner and its start time.

Works on any storage (no locking primitive needed): the job writes its lease, reads it back, and
refreshes a heartbeat in it while it runs. A second job finds a live lease and refuses with one line.
A lease is stale, and is taken over, when its heartbeat is older than `STALE_AFTER` seconds or when
its owner ran on this host and that process is gone (a killed driver's rerun on the same head node).
`--takeover` takes a lease over regardless. Before writing a shard's marker, the finaliser checks that
the lease is still this job's, so a job whose output was taken over never marks a shard done.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from schemas.storage import Storage

LEASE = "_lease.json"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER = 600.0  # ten missed heartbeats: the owner is gone (or cut off from the store)
_SETTLE_SECONDS = 0.5  # between writing the lease and reading it back: the last of two racing writers wins


class LeaseHeldError(RuntimeError):
    """Another job holds the output. One line: who, since when, and how to take over."""


class LeaseLostError(RuntimeError):
    """This job's lease was taken over while it ran; it stops without marking anything."""


@dataclass(frozen=True)
class Lease:
    owner: str  # unique per job: host:pid:random
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"job {self.owner} (pid {self.pid} on {self.host}, started {when})"


def read_lease(storage: Storage) -> Lease | None:
    try:
        return Lease(**json.loads(storage.get_text(LEASE)))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # a damaged lease protects nothing


def is_stale(lease: Lease, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if now - lease.heartbeat > STALE_AFTER:
        return True
    return lease.host == socket.gethostname() and not _alive(lease.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(storage: Storage, takeover: bool = False) -> Lease:
    """Take the output's lease or raise `LeaseHeldError` naming the holder and the way out."""
    held = read_lease(storage)
    if held is not None and not takeover and not is_stale(held):
        raise LeaseHeldError(
            f"{storage.uri} is being written by {held.describe()}; wait for it, or if it is dead "
            f"rerun with --takeover (or delete {storage.url(LEASE)})"
        )
    now = time.time()
    host = socket.gethostname()
    mine = Lease(f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}", host, os.getpid(), now, now)
    storage.put_text(LEASE, json.dumps(asdict(mine)))
    time.sleep(_SETTLE_SECONDS)
    check_owner(storage, mine.owner, what=LeaseHeldError)
    return mine


def check_owner(storage: Storage, owner: str, what: type[Exception] = LeaseLostError) -> None:
    current = read_lease(storage)
    if current is None or current.owner != owner:
        holder = current.describe() if current else "nobody"
        raise what(f"{storage.uri} was taken over by {holder} while this job ran; stopped without marking shards")


def release(storage: Storage, owner: str) -> None:
    current = read_lease(storage)
    if current is not None and current.owner == owner:
        storage.delete(LEASE)


class Heartbeat:
    """Refreshes the lease every `HEARTBEAT_SECONDS` on a daemon thread; `lost` is set if it was taken over."""

    def __init__(self, storage: Storage, lease: Lease, every: float = HEARTBEAT_SECONDS) -> None:
        self.storage, self.lease, self.every = storage, lease, every
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jodi-lease", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                check_owner(self.storage, self.lease.owner)
                beat = {**asdict(self.lease), "heartbeat": time.time()}
                self.storage.put_text(LEASE, json.dumps(beat))
            except LeaseLostError as exc:
                self.lost = str(exc)
                return
            except OSError:
                continue  # storage hiccup: the job's own writes will report a lasting outage
