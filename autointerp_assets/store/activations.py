"""Activations on disk: latent-major buckets under one directory per run, committed by a manifest.

    activations/<layer>/manifest.json                              the commit (store.commit)
    activations/<layer>/<run>/<bucket>/<chunk>.parquet             rows of the bucket's latents

A bucket is a range of `bucket_width` latents (the config's `latent_range_width` when the run
started), named like a latent range (`00000-00063`). As chunks stream out, each chunk's rows
are split by bucket, so a latent range reads only the files of the buckets it overlaps: all
the ranges of a layer together read its activation bytes once, whatever their number. Rows
within a file keep the stream's order (token-major); `latent_shards` sorts its own slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .commit import Dataset, VersionGoneError, new_version
from .store import ArtifactStore


def bucket_key(lo: int, hi: int) -> str:
    """Inclusive latent bounds, zero-padded like a latent range key."""
    return f"{lo:05d}-{hi:05d}"


def activations_dataset(store: ArtifactStore, layer: str) -> Dataset:
    return Dataset(store, f"activations/{layer}", f"activations[{layer}]")


@dataclass
class ActivationRunWriter:
    """One run's files for one layer. `write_chunk` hands the chunk to a background thread and
    returns (at most `max_pending` chunks wait, so memory stays bounded); the bucket files of a
    chunk are written by `io_threads` in parallel; `commit` waits for every write first."""

    store: ArtifactStore
    layer: str
    n_latents: int
    bucket_width: int
    version: str = field(default_factory=new_version)
    # Parquet encoding releases the GIL: on a GPU host's many cores, buckets are written in parallel.
    io_threads: int = field(default_factory=lambda: max(1, min(8, (os.cpu_count() or 1) // 2)))
    max_pending: int = 2
    buckets: dict[str, list[list[Any]]] = field(default_factory=dict)  # bucket -> [[file, bytes, rows], ...]

    def __post_init__(self) -> None:
        self.dataset = activations_dataset(self.store, self.layer)
        self._pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="parquet") if self.io_threads > 1 else None
        self._chunks = ThreadPoolExecutor(1, thread_name_prefix="chunks")
        self._slots = threading.BoundedSemaphore(self.max_pending)
        self._pending: list[Future] = []

    def write_chunk(self, index: int, rows: pl.DataFrame) -> None:
        """Queue one chunk: its rows split by latent bucket, one lz4 parquet file per bucket.
        (lz4: intermediate files on the hot path, where zstd takes three times as long.)"""
        for done in [f for f in self._pending if f.done()]:
            done.result()  # a failed write surfaces at the next chunk, not only at commit
            self._pending.remove(done)
        self._slots.acquire()
        future = self._chunks.submit(self._write_chunk, index, rows)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def _write_chunk(self, index: int, rows: pl.DataFrame) -> None:
        bucket = rows["latent"].to_numpy() // self.bucket_width
        if bucket.size and bucket.max() < 2**16:
            bucket = bucket.astype(np.uint16)  # numpy's stable sort of 16-bit keys is a radix sort: O(n)
        order = np.argsort(bucket, kind="stable")  # rows keep their stream order within a bucket
        bounds = np.searchsorted(bucket[order], np.arange(int(bucket.max(initial=0)) + 2)) if bucket.size else [0]
        rows = rows[order]  # one gather; each bucket is then a zero-copy slice
        jobs = []
        for b in range(len(bounds) - 1):
            if bounds[b + 1] == bounds[b]:
                continue
            lo = b * self.bucket_width
            key = bucket_key(lo, min(lo + self.bucket_width, self.n_latents) - 1)
            jobs.append((key, f"{key}/{index:05d}.parquet", rows.slice(bounds[b], bounds[b + 1] - bounds[b])))

        def write(job: tuple[str, str, pl.DataFrame]) -> list[Any]:
            key, name, part = job
            return [key, name, self.store.write_parquet(self.dataset.path(self.version, name), part, "lz4"),
                    part.height]

        written = list(self._pool.map(write, jobs)) if self._pool else [write(j) for j in jobs]
        for key, name, nbytes, nrows in written:
            self.buckets.setdefault(key, []).append([name, nbytes, nrows])

    def commit(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Wait for every chunk, then swap the layer's manifest to this run; returns the manifest."""
        for future in self._pending:
            future.result()
        self._chunks.shutdown()
        if self._pool:
            self._pool.shutdown()
        total = sum(f[1] for files in self.buckets.values() for f in files)
        return self.dataset.commit(self.version, {}, has_files=bool(self.buckets), meta={
            **meta, "bucket_width": self.bucket_width, "n_latents": self.n_latents,
            "buckets": {k: self.buckets[k] for k in sorted(self.buckets)}, "total_bytes": total})


def range_files(manifest: dict[str, Any], latents: range) -> list[tuple[str, int, bool]]:
    """(path relative to the layer directory, bytes, whole bucket inside `latents`) of every file
    holding rows of `latents`."""
    width, version = manifest["bucket_width"], manifest["version"]
    out = []
    for b in range(latents.start // width, (latents.stop - 1) // width + 1):
        lo = b * width
        hi = min(lo + width, manifest["n_latents"]) - 1
        inside = latents.start <= lo and hi < latents.stop
        for name, nbytes, _ in manifest["buckets"].get(bucket_key(lo, hi), []):
            out.append((f"{version}/{name}", nbytes, inside))
    return out


def read_latent_range(store: ArtifactStore, layer: str, manifest: dict[str, Any], latents: range
                      ) -> Iterator[pl.DataFrame]:
    """The committed rows of `latents`, one file at a time; reads nothing of other buckets."""
    dataset = activations_dataset(store, layer)
    in_range = pl.col("latent").is_between(latents.start, latents.stop - 1)
    for rel, _, inside in range_files(manifest, latents):
        try:
            frame = store.read_parquet(f"{dataset.dir}/{rel}")
        except FileNotFoundError:
            raise VersionGoneError(
                f"{store.uri(f'{dataset.dir}/{rel}')} vanished: activations run {manifest['version']} was replaced "
                "and garbage-collected while this step read it; re-run this step") from None
        yield frame if inside else frame.filter(in_range)
