"""One storage abstraction for datasets: a local folder or any URI pyarrow / fsspec resolve (s3://, gs://, ...).

`Storage(uri)` addresses files by paths relative to a root, so the label job, the dataset tools and
the trainer share one code path for local disks and object stores. Credentials are never handled
here: pyarrow's S3 and GCS file systems read the standard environment and config files themselves
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL / ~/.aws, GOOGLE_APPLICATION_CREDENTIALS),
and messages only ever name the URI.

Atomicity: on object stores a PUT is atomic per object but there is no rename, so every file is
written in one PUT (`put`, `write_table`); on a local disk a file is written under a temporary name
and renamed into place. Either way a reader sees a file whole or not at all.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

ROW_GROUP_SIZE = 100  # rows per Parquet row group: ~100 images keeps random access cheap (Hub convention)
# Concurrent PUTs of one `put_many` on an object store. A small object's PUT is one round trip, so a writer
# putting a batch's Joint files one by one waits on latency, not bandwidth; 16 in flight stays under the AWS
# SDK's default connection pool (25, `ClientConfiguration::maxConnections`, which pyarrow's S3 client keeps).
REMOTE_PUT_THREADS = 16
# What to set for each scheme when the store cannot be reached or refuses us (one line per failure).
CREDENTIAL_HINT = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile), and AWS_ENDPOINT_URL "
    "for an S3-compatible store",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (or STORAGE_EMULATOR_HOST for "
    "a GCS emulator)",
}
CREDENTIAL_HINT["gcs"] = CREDENTIAL_HINT["gs"]
# Google Cloud Storage: how long the client retries a failing request before it gives up (pyarrow's
# GcsFileSystem `retry_time_limit`; google-cloud-cpp's own default is 15 minutes, so an unreachable endpoint
# or a missing credential would look like a hang instead of an error).
GCS_RETRY_SECONDS = 15
# Where Google's client libraries find credentials without GOOGLE_APPLICATION_CREDENTIALS: the gcloud ADC file,
# and, on Google Compute Engine / GKE, the metadata server (google-auth detects GCE from this DMI product name).
GCLOUD_ADC = os.path.join("~", ".config", "gcloud", "application_default_credentials.json")
GCE_PRODUCT_NAME = "/sys/class/dmi/id/product_name"


class StorageError(OSError):
    """A store that cannot be used: missing bucket, wrong endpoint, missing credential, full disk.
    The message is one line naming the URI and what to set or free."""


class StorageLostError(OSError):
    """The store failed while a job ran (unreachable, refused, full): one line naming the URI and saying that
    the data written so far is safe and a rerun resumes. A failed run, not a usage error (exit 1, not 2)."""


# Schemes pyarrow.fs.FileSystem.from_uri handles natively (pyarrow docs, "Filesystem Interface"); every
# other scheme fsspec knows (hf:// through huggingface_hub's HfFileSystem, memory://) is wrapped.
NATIVE = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
# The environment a native store's client reads its endpoint and credentials from: a digest of it is part of
# the cache key (never the values themselves), so a process that changes them gets a fresh client.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
               "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")  # fmt: skip


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def scheme(uri: str) -> str:
    return str(uri).split("://", 1)[0] if is_remote(uri) else "file"


def split_uri(uri: str) -> tuple[str, str]:
    """Scheme and rest of a URI: s3://b/k -> ("s3", "b/k"); a plain or file:// path -> ("", absolute path)."""
    head, sep, rest = str(uri).partition("://")
    if not sep or head == "file":
        return "", os.path.abspath(rest if sep else str(uri))
    return head, rest


def to_uri(scheme_: str, path: str) -> str:
    """Inverse of `resolve`: the URI a worker can reopen (local paths stay plain absolute paths)."""
    return path if not scheme_ else f"{scheme_}://{path}"


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow FileSystem, path inside it) for any URI: the one place a URI becomes a file system.
    pyarrow's own file systems for local, s3://, gs://, hdfs://...; fsspec's, wrapped, for every other scheme.
    Clients are cached per store (and its environment), so a worker reading thousands of objects builds its
    S3 client once."""
    head, rest = split_uri(uri)
    if not head:
        return pafs.LocalFileSystem(), rest
    env = hashlib.sha256("\0".join(os.environ.get(k, "") for k in _CLIENT_ENV).encode()).hexdigest()
    if head in NATIVE:
        authority = rest.split("/", 1)[0]
        return _filesystem(head, authority, env), rest.rstrip("/") or authority
    return _filesystem(head, "", env), _fsspec(head)._strip_protocol(uri)


@functools.lru_cache(maxsize=32)
def _filesystem(head: str, authority: str, env: str) -> pafs.FileSystem:
    if head in ("gs", "gcs"):
        return _gcs_filesystem()
    if head in NATIVE:
        return pafs.FileSystem.from_uri(f"{head}://{authority}")[0]
    return pafs.PyFileSystem(pafs.FSSpecHandler(_fsspec(head)))


def _gcs_filesystem() -> pafs.FileSystem:
    """pyarrow's GcsFileSystem with a bounded retry time; STORAGE_EMULATOR_HOST (the variable Google's client
    libraries read for an emulator, e.g. fake-gcs-server) points it at another endpoint, anonymously."""
    from datetime import timedelta

    retry = timedelta(seconds=GCS_RETRY_SECONDS)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return pafs.GcsFileSystem(retry_time_limit=retry)
    scheme_, _, host = emulator.rpartition("://")
    return pafs.GcsFileSystem(anonymous=True, endpoint_override=host.rstrip("/"), scheme=scheme_ or "http",
                              retry_time_limit=retry)  # fmt: skip


def gcs_credentials_problem(uri: str) -> str | None:
    """One line when a gs:// URI has no credentials Google's client could find (checked without any request:
    the client would otherwise retry for GCS_RETRY_SECONDS first). Names variables and paths, never contents."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return None
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key and not os.path.isfile(key):
        return f"{uri}: GOOGLE_APPLICATION_CREDENTIALS names {key}, which is not a file"
    if key:
        return None
    if os.path.isfile(os.path.expanduser(GCLOUD_ADC)):
        return None
    try:
        with open(GCE_PRODUCT_NAME, encoding="utf-8") as f:
            if "Google" in f.read():
                return None  # the metadata server supplies the VM's service account
    except OSError:
        pass
    return f"{uri}: no Google Cloud credentials found; {CREDENTIAL_HINT['gs']}"


def _fsspec(head: str):
    import fsspec

    return fsspec.filesystem(head)


class Storage:
    """Files under one root (`uri`), addressed by relative POSIX paths such as `data/shard-00000.parquet`."""

    def __init__(self, uri: str | os.PathLike) -> None:
        self.uri = str(uri).rstrip("/") or "/"
        self.fs, self.base = resolve(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def __reduce__(self):  # Ray ships a Storage to workers: rebuild the file system there (its credentials too)
        return (Storage, (self.uri,))

    def path(self, rel: str) -> str:
        return posixpath.join(self.base, rel) if rel else self.base

    def url(self, rel: str = "") -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    # ----- reading --------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def get(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise FileNotFoundError(self.url(rel)) from None
            raise

    def get_text(self, rel: str) -> str:
        return self.get(rel).decode("utf-8")

    def list(self, rel: str = "", suffix: str = "", recursive: bool = False) -> list[str]:
        """Sorted relative paths of the files under `rel` ending in `suffix` ([] when `rel` is absent)."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=recursive)
        prefix = self.base.rstrip("/") + "/"
        out = [
            info.path[len(prefix) :] if info.path.startswith(prefix) else info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(suffix)
        ]
        return sorted(p for p in out if not posixpath.basename(p).startswith("."))

    def open_input(self, rel: str):
        """A seekable file for readers such as `pyarrow.parquet.ParquetFile` or PIL."""
        return self.fs.open_input_file(self.path(rel))

    def read_table(self, rels: str | list[str], columns: list[str] | None = None, schema=None) -> pa.Table:
        paths = [self.path(r) for r in ([rels] if isinstance(rels, str) else rels)]
        if not paths:
            return (schema or pa.schema([])).empty_table()
        return pq.read_table(paths, columns=columns, filesystem=self.fs, schema=schema)

    # ----- writing (whole files, atomically) ------------------------------------------------------
    def put(self, rel: str, data: bytes) -> None:
        with self._guard(rel, len(data)):
            if self.local:
                target = self.path(rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                tmp = posixpath.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{uuid.uuid4().hex[:8]}")
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                with self.fs.open_output_stream(self.path(rel)) as f:  # one PUT: atomic per object
                    f.write(data)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Several whole files; on an object store their PUTs run concurrently (each still one atomic PUT).
        Returns once every file is stored; the first failure is raised after the others have settled."""
        if self.local or len(items) < 2:
            for rel, data in items:
                self.put(rel, data)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(REMOTE_PUT_THREADS, len(items))) as pool:
            futures = [pool.submit(self.put, rel, data) for rel, data in items]
        for future in futures:
            future.result()

    def put_text(self, rel: str, text: str) -> None:
        self.put(rel, text.encode("utf-8"))

    def write_table(self, rel: str, table: pa.Table, row_group_size: int = ROW_GROUP_SIZE) -> None:
        """A Parquet file written in memory and put whole: never a half-written footer under the final name."""
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd")
        self.put(rel, sink.getvalue())

    @contextmanager
    def streaming(self, rel: str) -> Iterator:
        """Write a large file piece by piece in constant memory; it appears under `rel` only when complete.
        Local: a temporary file renamed into place. Object stores: a temporary object (multipart upload)
        copied to `rel` by the server (CopyObject is atomic) and then deleted."""
        tmp = posixpath.join(posixpath.dirname(rel), f".{posixpath.basename(rel)}.tmp-{uuid.uuid4().hex[:8]}")
        if self.local:
            os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        try:
            with self._guard(rel, 0):
                with self.fs.open_output_stream(self.path(tmp)) as out:
                    yield out
                if self.local:
                    os.replace(self.path(tmp), self.path(rel))
                else:
                    self.fs.copy_file(self.path(tmp), self.path(rel))
        finally:
            self.delete(tmp)

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except (FileNotFoundError, OSError):
            pass  # absent already: deleting is idempotent

    def delete_dir(self, rel: str) -> None:
        if self.is_dir(rel):
            self.fs.delete_dir(self.path(rel))

    def remove_empty_dir(self, rel: str) -> None:
        """Local disks keep empty folders; object stores have none to remove."""
        path = self.path(rel)
        if self.local and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)

    @contextmanager
    def _guard(self, rel: str, size: int) -> Iterator[None]:
        """A full disk becomes one line naming the path and the space the write needed."""
        try:
            yield
        except OSError as exc:
            if exc.errno == errno.ENOSPC or "No space left" in str(exc):
                free = shutil.disk_usage(self.base).free if self.local else 0
                raise StorageError(
                    f"no space left writing {self.url(rel)} ({_mb(size)} needed for this file, {_mb(free)} free); "
                    "free some space and rerun the same command to resume"
                ) from None
            raise

    # ----- checks ---------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail before any work, in one line, when the root cannot be written: missing bucket, wrong endpoint,
        missing or refused credential. Writes and deletes one small probe object."""
        if self.local:
            probe = self.path(f".jodi-probe-{uuid.uuid4().hex[:8]}")
            try:
                os.makedirs(self.base, exist_ok=True)
                with open(probe, "wb"):
                    pass
                os.unlink(probe)
            except OSError as exc:
                raise StorageError(f"output {self.uri} is not writable: {exc.strerror or exc}") from None
            return
        self._check_credentials()
        bucket = self.base.split("/", 1)[0]
        probe = f".jodi-probe-{uuid.uuid4().hex[:8]}"
        try:
            if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StorageError(f"{self.uri}: bucket {bucket!r} does not exist; create it first")
            self.put(probe, b"")
            self.delete(probe)
        except StorageError:
            raise
        except (OSError, pa.ArrowException) as exc:  # GCS reports a refused credential as ArrowInvalid
            raise StorageError(describe_failure(self.uri, exc)) from None

    def check_readable(self) -> None:
        """One line when the root cannot be read (missing, unreachable, refused)."""
        self._check_credentials()
        try:
            if not self.exists(""):
                raise StorageError(f"{self.uri} does not exist")
        except StorageError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(describe_failure(self.uri, exc)) from None

    def _check_credentials(self) -> None:
        if scheme(self.uri) in ("gs", "gcs") and (line := gcs_credentials_problem(self.uri)) is not None:
            raise StorageError(line)


def describe_failure(uri: str, exc: BaseException) -> str:
    """An object-store exception -> one line naming the URI and what to set (never a credential value)."""
    text = str(exc)
    kind = scheme(uri)
    hint = CREDENTIAL_HINT.get(kind, "check the URI and your credentials")
    if "NETWORK_CONNECTION" in text or "Could not connect" in text or "curlCode" in text or "resolve host" in text:
        variable = "STORAGE_EMULATOR_HOST" if kind in ("gs", "gcs") else "AWS_ENDPOINT_URL"
        where = os.environ.get(variable) or ("storage.googleapis.com" if kind in ("gs", "gcs") else None)
        endpoint = f" at {where}" if where else ""
        return f"{uri}: cannot reach the storage service{endpoint}; check {variable} / the network"
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "InvalidAccessKeyId" in text or "403" in text:
        return f"{uri}: access denied; {hint}"
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return f"{uri}: bucket does not exist; create it first"
    if "credential" in text.lower() or "access token" in text.lower():
        return f"{uri}: credentials refused or unusable; {hint}"
    return f"{uri}: storage error ({text.splitlines()[0][:200]}); {hint}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
