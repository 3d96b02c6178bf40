"""A measurement taken every `interval` seconds in a background thread while a `with` block runs.

Subclasses implement `sample()` (and `open()`/`close()` for a library the thread must initialise, such
as NVML); the block's work runs undisturbed in the main thread. One last sample is taken on exit, so a
peak reached just before the block ends is not missed.
"""

from __future__ import annotations

import threading


class Sampler:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def open(self) -> None:
        """Called once in the sampling thread before the first sample."""

    def sample(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Called once in the sampling thread after the last sample."""

    def _run(self) -> None:
        self.open()
        try:
            while not self._stop.wait(self.interval):
                self.sample()
            self.sample()
        finally:
            self.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
