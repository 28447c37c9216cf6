"""Artefact storage under one root, local or s3://, through fsspec.

Layout, readable by people and by polars/duckdb:
    <root>/<asset>/<layer>/<range>.parquet
Every write is atomic: locally a temp file in the same directory is renamed over
the target; on S3 a single PUT (or completed multipart upload) becomes visible
whole, so the object is written straight to its key from an in-memory buffer.

`update_json` is the one read-modify-write: a compare-and-swap that two writers,
even on two hosts, cannot interleave (an exclusive `flock` locally, a conditional
PUT with If-Match / If-None-Match on S3). `bytes_read` counts every byte fetched,
so a stage can report what it read.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import fsspec
import numpy as np
import polars as pl
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .arrays import RowArray, mapped_rows, remote_rows


class ConflictError(RuntimeError):
    """A compare-and-swap kept losing to other writers."""


# How long a replaced version stays readable, and how long an uncommitted one may sit unwritten
# before garbage collection removes it (see store.commit).
DEFAULT_RETENTION_S = 3600.0
DEFAULT_ORPHAN_AFTER_S = 86400.0


class ArtifactStore:
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None,
                 retention_s: float = DEFAULT_RETENTION_S, orphan_after_s: float = DEFAULT_ORPHAN_AFTER_S):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or {}
        self.retention_s = retention_s
        self.orphan_after_s = orphan_after_s
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **self.storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.bytes_read = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.bytes_read += n

    # -- paths ---------------------------------------------------------------------
    def _full(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    def _rel(self, full: str) -> str:
        prefix = self._base + "/"
        return full[len(prefix):] if full.startswith(prefix) else full

    def uri(self, rel: str) -> str:
        """The URI polars/duckdb can read directly."""
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._full(rel))

    def list(self, rel: str) -> list[str]:
        """Relative paths of files directly under `rel` (empty when missing), sorted."""
        return [p for p, kind in self._entries(rel) if kind == "file"]

    def list_dirs(self, rel: str) -> list[str]:
        """Relative paths of directories directly under `rel` (empty when missing), sorted."""
        return [p for p, kind in self._entries(rel) if kind == "directory"]

    def _entries(self, rel: str) -> list[tuple[str, str]]:
        full = self._full(rel)
        self.fs.invalidate_cache(full)
        try:
            entries = self.fs.ls(full, detail=True)
        except FileNotFoundError:
            return []
        return sorted((self._rel(e["name"]), e["type"]) for e in entries if self._rel(e["name"]) != rel)

    def newest_mtime(self, rel: str) -> float | None:
        """Unix time of the newest file under `rel` (None when there is none)."""
        full = self._full(rel)
        self.fs.invalidate_cache(full)
        times = []
        for info in self.fs.find(full, detail=True).values():
            when = info.get("mtime", info.get("LastModified"))
            times.append(when.timestamp() if isinstance(when, datetime) else float(when))
        return max(times) if times else None

    def delete(self, rel: str) -> None:
        full = self._full(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    # -- bytes -----------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        full = self._full(rel)
        if self.is_local:
            directory = os.path.dirname(full)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{os.path.basename(full)}.{uuid.uuid4().hex}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, full)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            self.fs.pipe_file(full, data)

    def read_bytes(self, rel: str) -> bytes:
        data = self.fs.cat_file(self._full(rel))
        self._count(len(data))
        return data

    # -- typed helpers -------------------------------------------------------------------
    def write_parquet(self, rel: str, df: pl.DataFrame, compression: str = "zstd") -> int:
        """Write `df` atomically; returns the file's size in bytes."""
        buf = io.BytesIO()
        df.write_parquet(buf, compression=compression, statistics=True)
        self.write_bytes(rel, buf.getvalue())
        return buf.tell()

    def read_parquet(self, rel: str) -> pl.DataFrame:
        return pl.from_arrow(pq.read_table(io.BytesIO(self.read_bytes(rel))))  # type: ignore[return-value]

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=1, sort_keys=True).encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_npy(self, rel: str, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.write_bytes(rel, buf.getvalue())

    def open_array(self, rel: str) -> RowArray:
        """A .npy file without reading it: a read-only memory map locally, ranged reads on S3.
        Either way indexing fetches only the rows asked for, and counts them in `bytes_read`."""
        full = self._full(rel)
        if self.is_local:
            return mapped_rows(full, self._count)
        return remote_rows(self.fs.open(full, "rb", block_size=1 << 16, cache_type="blockcache"), self._count)

    def walk_files(self, rel: str) -> Iterator[str]:
        full = self._full(rel)
        if not self.fs.exists(full):
            return
        for path in sorted(self.fs.find(full)):
            yield self._rel(path)

    # -- compare-and-swap ------------------------------------------------------------------
    def update_json(self, rel: str, change: Callable[[Any | None], Any], attempts: int = 30) -> Any:
        """Replace the JSON at `rel` with `change(current)` (current None when absent), atomically
        against every other writer; `change` may run more than once. Returns what was written."""
        if self.is_local:
            return self._update_local(rel, change)
        for attempt in range(attempts):
            full = self._full(rel)
            self.fs.invalidate_cache(full)
            try:
                etag = self.fs.info(full)["ETag"]
                current = self.read_json(rel)
            except FileNotFoundError:
                etag, current = None, None
            new = change(current)
            body = json.dumps(new, indent=1, sort_keys=True).encode()
            try:
                if etag is None:
                    self.fs.pipe_file(full, body, mode="create")  # If-None-Match: *
                else:
                    self.fs.pipe_file(full, body, IfMatch=etag)
                self.fs.invalidate_cache(full)
                return new
            except (FileExistsError, OSError) as e:
                if not _is_conflict(e):
                    raise
            time.sleep(min(2.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        raise ConflictError(f"{self.uri(rel)}: {attempts} conflicting updates in a row; retry the run")

    def _update_local(self, rel: str, change: Callable[[Any | None], Any]) -> Any:
        full = self._full(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        # The lock file is never deleted: deleting it would let two writers lock different inodes.
        with open(f"{os.path.dirname(full)}/.{os.path.basename(full)}.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                current = self.read_json(rel) if os.path.exists(full) else None
                new = change(current)
                self.write_json(rel, new)
                return new
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _is_conflict(e: Exception) -> bool:
    """S3 answers a lost conditional PUT with 412 PreconditionFailed (s3fs: FileExistsError for
    If-None-Match, OSError(EINVAL) for If-Match) or 409 ConditionalRequestConflict."""
    text = str(e)
    return (isinstance(e, FileExistsError) or getattr(e, "errno", None) == errno.EINVAL
            or "PreconditionFailed" in text or "ConditionalRequestConflict" in text)


def partition_path(asset: str, layer: str, name: str, ext: str = "parquet") -> str:
    """<asset>/<layer>/<name>.<ext>: the one layout rule for single-file partitions."""
    return f"{asset}/{layer}/{name}.{ext}"
