"""Artefact storage under one root, local or s3://, through fsspec.

Layout, readable by people and by polars/duckdb:
    <root>/<asset>/<layer>/<range>.parquet
Every write is atomic: locally a temp file in the same directory is renamed over
the target; on S3 a single PUT (or completed multipart upload) becomes visible
whole, so the object is written straight to its key from an in-memory buffer.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import polars as pl
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


class ArtifactStore:
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **self.storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # -- paths ---------------------------------------------------------------------
    def _full(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    def uri(self, rel: str) -> str:
        """The URI polars/duckdb can read directly."""
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._full(rel))

    def list(self, rel: str) -> list[str]:
        """Relative paths of files directly under `rel` (empty when missing), sorted."""
        full = self._full(rel)
        if not self.fs.exists(full):
            return []
        prefix = self._base + "/"
        names = [e["name"] for e in self.fs.ls(full, detail=True) if e["type"] == "file"]
        return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in names)

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
        return self.fs.cat_file(self._full(rel))

    # -- typed helpers -------------------------------------------------------------------
    def write_parquet(self, rel: str, df: pl.DataFrame, compression: str = "zstd") -> None:
        buf = io.BytesIO()
        df.write_parquet(buf, compression=compression, statistics=True)
        self.write_bytes(rel, buf.getvalue())

    def read_parquet(self, rel: str) -> pl.DataFrame:
        return pl.from_arrow(pq.read_table(io.BytesIO(self.read_bytes(rel))))  # type: ignore[return-value]

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=1, sort_keys=True).encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def walk_files(self, rel: str) -> Iterator[str]:
        full = self._full(rel)
        if not self.fs.exists(full):
            return
        prefix = self._base + "/"
        for path in sorted(self.fs.find(full)):
            yield path[len(prefix):] if path.startswith(prefix) else path


def partition_path(asset: str, layer: str, name: str, ext: str = "parquet") -> str:
    """<asset>/<layer>/<name>.<ext>: the one layout rule."""
    return f"{asset}/{layer}/{name}.{ext}"
