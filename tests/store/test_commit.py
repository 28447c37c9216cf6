"""Versioned datasets: the compare-and-swap, garbage collection, latent-range buckets, arrays on S3."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import numpy as np
import polars as pl
import pytest

from autointerp_assets.data.corpus import TokenIndex
from autointerp_assets.store.activations import ActivationRunWriter, range_files, read_latent_range
from autointerp_assets.store.commit import Dataset, MissingUpstreamError, VersionGoneError, new_version
from autointerp_assets.store.store import ArtifactStore


def s3_store(endpoint: str, prefix: str, **kw) -> ArtifactStore:
    return ArtifactStore(f"s3://autointerp-test/{prefix}-{time.time_ns()}", {"client_kwargs": {"endpoint_url": endpoint}},
                         **kw)


def _increment(root: str, n: int) -> None:
    store = ArtifactStore(root)
    for _ in range(n):
        store.update_json("counter.json", lambda c: {"n": (c or {"n": 0})["n"] + 1})


def test_compare_and_swap_loses_no_update_across_processes(tmp_path):
    procs = [multiprocessing.get_context("spawn").Process(target=_increment, args=(str(tmp_path), 25))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert ArtifactStore(str(tmp_path)).read_json("counter.json") == {"n": 100}


def test_compare_and_swap_loses_no_update_on_s3(s3_endpoint):
    store = s3_store(s3_endpoint, "cas")
    threads = [threading.Thread(target=lambda: [ArtifactStore(store.root, store.storage_options).update_json(
        "counter.json", lambda c: {"n": (c or {"n": 0})["n"] + 1}) for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read_json("counter.json") == {"n": 40}  # conditional PUTs: every lost race was retried


def _write_version(dataset: Dataset, text: str) -> str:
    version = new_version()
    dataset.store.write_bytes(dataset.path(version, "a.txt"), text.encode())
    dataset.store.write_bytes(dataset.path(version, "b.txt"), text.upper().encode())
    return version


@pytest.mark.parametrize("where", ["local", "s3"])
def test_readers_see_one_whole_version_and_gc_spares_what_is_referenced(where, tmp_path, request):
    if where == "s3":
        store = s3_store(request.getfixturevalue("s3_endpoint"), "gc", retention_s=3600, orphan_after_s=3600)
    else:
        store = ArtifactStore(str(tmp_path), retention_s=3600, orphan_after_s=3600)
    dataset = Dataset(store, "contexts/layers.6/00000-00063", "contexts[layers.6|00000-00063]")
    with pytest.raises(MissingUpstreamError, match=r"materialise contexts\[layers.6\|00000-00063\] first"):
        dataset.read()
    v1 = _write_version(dataset, "one")
    dataset.commit(v1, {"a": "a.txt", "b": "b.txt"})
    crashed = _write_version(dataset, "half")  # a writer that died before its commit
    v2 = _write_version(dataset, "two")
    manifest = dataset.commit(v2, {"a": "a.txt", "b": "b.txt"}, {"rows": 2})
    assert manifest["rows"] == 2 and [s["version"] for s in manifest["superseded"]] == [v1]
    assert [dataset.read_file(manifest, n) for n in "ab"] == [b"two", b"TWO"]
    versions = {p.rsplit("/", 1)[-1] for p in store.list_dirs(dataset.dir)}
    assert versions == {v1, v2, crashed}  # within retention: the old and the uncommitted stay

    later = time.time() + 3601
    deleted = dataset.collect_garbage(now=later)
    assert sorted(deleted) == sorted([v1, crashed])
    assert {p.rsplit("/", 1)[-1] for p in store.list_dirs(dataset.dir)} == {v2}
    assert dataset.read()["superseded"] == [] and dataset.read_file(dataset.read(), "b") == b"TWO"
    with pytest.raises(VersionGoneError, match="re-run this step"):
        dataset.read_file(manifest | {"version": v1, "files": {"a": f"{v1}/a.txt"}}, "a")


def test_a_fresh_uncommitted_version_is_never_collected(tmp_path):
    store = ArtifactStore(str(tmp_path), retention_s=0, orphan_after_s=60)
    dataset = Dataset(store, "d")
    running = _write_version(dataset, "still writing")
    stale = _write_version(dataset, "crashed long ago")
    old = time.time() - 120
    for f in (tmp_path / "d" / stale).iterdir():
        os.utime(f, (old, old))
    dataset.commit(_write_version(dataset, "done"), {"a": "a.txt"})
    left = {p.rsplit("/", 1)[-1] for p in store.list_dirs("d")}
    assert running in left and stale not in left


def _rows(n: int, n_latents: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    latent = np.minimum(rng.zipf(1.3, n) - 1, n_latents - 1).astype(np.int32)  # a few latents fire most
    return pl.DataFrame({"seq": np.arange(n, dtype=np.int64) // 8, "pos": (np.arange(n) % 8).astype(np.int32),
                         "latent": latent, "value": rng.random(n, dtype=np.float32) + 0.01})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_each_latent_range_reads_only_its_own_buckets(where, tmp_path, request):
    store = s3_store(request.getfixturevalue("s3_endpoint"), "acts") if where == "s3" else ArtifactStore(str(tmp_path))
    writer = ActivationRunWriter(store, "layers.6", n_latents=200, bucket_width=64, io_threads=2)
    chunks = [_rows(5000, 200, seed) for seed in range(3)]
    for i, chunk in enumerate(chunks):
        writer.write_chunk(i, chunk)
    manifest = writer.commit({"n_tokens": 15000, "nnz": 15000})
    assert sorted(manifest["buckets"]) == ["00000-00063", "00064-00127", "00128-00191", "00192-00199"]
    everything = pl.concat(chunks)
    total_read = 0
    for lo in range(0, 200, 64):  # the config's ranges: one bucket each
        latents = range(lo, min(lo + 64, 200))
        before = store.bytes_read
        got = pl.concat(read_latent_range(store, "layers.6", manifest, latents))
        total_read += store.bytes_read - before
        expected = everything.filter(pl.col("latent").is_between(latents.start, latents.stop - 1))
        assert got.sort(pl.all()).equals(expected.sort(pl.all()))
    assert total_read == manifest["total_bytes"]  # all ranges together read the layer exactly once
    # A range that straddles buckets reads the two it overlaps, and only its latents come back.
    straddle = range(60, 70)
    assert {rel.split("/")[1] for rel, _, _ in range_files(manifest, straddle)} == {"00000-00063", "00064-00127"}
    got = pl.concat(read_latent_range(store, "layers.6", manifest, straddle))
    assert got.height == everything.filter(pl.col("latent").is_between(60, 69)).height


def test_arrays_read_by_rows_from_s3_match_the_local_memory_map(s3_endpoint, tmp_path):
    tokens = np.random.default_rng(0).integers(0, 49152, (300, 64), dtype=np.int32)
    local, remote = ArtifactStore(str(tmp_path)), s3_store(s3_endpoint, "arrays")
    for store in (local, remote):
        store.write_npy("corpus/tokens.npy", tokens)
    mapped, ranged = local.open_array("corpus/tokens.npy"), remote.open_array("corpus/tokens.npy")
    assert ranged.shape == mapped.shape == tokens.shape
    for key in (5, -1, (7, 3), (9, slice(10, 42)), slice(100, 104), np.array([3, 250, 3])):
        assert np.array_equal(np.asarray(ranged[key]), np.asarray(mapped[key])), key
    assert remote.bytes_read < tokens.nbytes // 4  # rows on demand, not the file


def test_token_index_lists_each_tokens_positions_in_order():
    tokens = np.array([[5, 1, 5], [2, 5, 1]], dtype=np.int32)
    index = TokenIndex.build(tokens)
    assert index.positions(5).tolist() == [0, 2, 4] and index.positions(1).tolist() == [1, 5]
    assert index.positions(3).tolist() == [] and index.positions(999).tolist() == []
    flat = tokens.reshape(-1)  # the same answer as an argsort of the flat tokens, for every token
    order = np.argsort(flat, kind="stable")
    for t in range(7):
        assert index.positions(t).tolist() == order[flat[order] == t].tolist()


def test_a_writer_whose_files_were_collected_cannot_commit(tmp_path):
    """A writer stalled past orphan_after_s loses its directory; its commit then refuses, instead
    of pointing the manifest at files that are gone."""
    store = ArtifactStore(str(tmp_path))
    writer = ActivationRunWriter(store, "layers.6", n_latents=64, bucket_width=64, io_threads=1)
    writer.write_chunk(0, _rows(100, 64, seed=0))
    writer._chunks.shutdown()  # let the queued write land before the collector runs
    store.delete(f"activations/layers.6/{writer.version}")  # what the collector does to a stale orphan
    with pytest.raises(VersionGoneError, match="re-run this step"):
        writer.commit({"n_tokens": 100, "nnz": 100})
    assert not store.exists("activations/layers.6/manifest.json")
