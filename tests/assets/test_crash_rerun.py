"""Crash and rerun: each stage runs as a subprocess, is killed with SIGKILL part-way through its
writes, and is run again. Readers never see a partial or mismatched file (the last commit stays
whole until the rerun commits), and the rerun's output equals the clean run's, row for row. Two
Dagster instances writing one layer at once, locally and on S3, leave a consistent layer."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support.project import LAYER, RANGE

from autointerp_assets.partitions import parse_latent_range
from autointerp_assets.store import layout
from autointerp_assets.store.activations import read_latent_range
from autointerp_assets.store.store import ArtifactStore

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).parents[1] / "support" / "stage_runner.py"
PARTITIONS = {"corpus": None, "sparse_coder": LAYER, "activations": LAYER,
              "latent_shards": f"{LAYER}|{RANGE}", "contexts": f"{LAYER}|{RANGE}"}


def runner(root: str, home: Path, asset: str, *extra: str, endpoint: str | None = None) -> subprocess.Popen:
    partition = PARTITIONS[asset]
    args = [sys.executable, str(RUNNER), root, str(home), asset, *([partition] if partition else []), *extra]
    args += ["--endpoint-url", endpoint] if endpoint else []
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# -- what a reader sees ------------------------------------------------------------------------------
def snapshot(store: ArtifactStore, stage: str) -> dict[str, object]:
    """The stage's committed output, through the readers every downstream stage uses; each read
    also checks the files agree with each other (a mismatched pair fails here)."""
    if stage == "corpus":
        corpus = layout.read_corpus(store, with_windows=True)
        manifest = layout.corpus_dataset(store).read()
        index = layout.read_token_index(store)
        assert corpus.tokens.shape == (manifest["n_seq"], manifest["ctx_len"])
        assert len(index.postings) == corpus.token_array("analysis").size == index.offsets[-1]
        return {"tokens": np.asarray(corpus.tokens), "windows": corpus.windows, "hash": corpus.content_hash}
    if stage == "sparse_coder":
        return {name: store.read_bytes(f"sparse_coder/{LAYER}/{name}") for name in ("cfg.json", "sae.safetensors")}
    if stage == "activations":
        manifest = layout.read_manifest(store, LAYER)
        rows = pl.concat(read_latent_range(store, LAYER, manifest, range(manifest["n_latents"])))
        assert rows.height == manifest["nnz"]  # every file the manifest names is there, whole
        return {"rows": rows.sort("seq", "pos", "latent"), "n_tokens": manifest["n_tokens"]}
    tables = layout.read_partition_tables(store, stage, LAYER, RANGE)
    if stage == "latent_shards":
        per_latent = tables["rows"].group_by("latent").len()
        stats = tables["stats"].filter(pl.col("n_firing") > 0).select("latent", pl.col("n_firing").cast(pl.UInt32))
        assert per_latent.sort("latent").rename({"len": "n_firing"}).equals(stats.sort("latent"))  # rows match stats
    else:
        latents = set(tables["examples"]["latent"]) | set(tables["skipped"]["latent"])
        assert latents == set(parse_latent_range(RANGE)) and not set(tables["examples"]["latent"]) & set(
            tables["skipped"]["latent"])
    return tables


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    def eq(x, y) -> bool:
        if isinstance(x, pl.DataFrame):
            return x.equals(y)
        if isinstance(x, np.ndarray):
            return np.array_equal(x, y)
        return x == y

    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def clean(data_root):
    """The clean run's outputs (the session's in-process data half), stage by stage."""
    store = ArtifactStore(str(data_root))
    return {stage: snapshot(store, stage) for stage in PARTITIONS}


@pytest.fixture
def root(data_root, tmp_path):
    """A copy of the clean run's storage root, so every crash hits a layer with a previous commit."""
    shutil.copytree(data_root, tmp_path / "data", ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache"))
    return tmp_path / "data"


# Where each stage is killed: right after its N-th file write whose path contains the text,
# i.e. between two files that must be committed together.
CRASH_POINTS = {
    "corpus": (1, "corpus/"),  # tokens written, windows and token index not
    "sparse_coder": (1, "sparse_coder/"),  # weights written, cfg.json not
    "activations": (3, "activations/"),  # three bucket files of the first chunk
    "latent_shards": (1, "latent_shards/"),  # rows written, stats not
    "contexts": (1, "contexts/"),  # examples written, skipped not
}


@pytest.mark.parametrize("stage", list(CRASH_POINTS))
def test_kill_9_part_way_then_rerun_gives_the_clean_output(stage, root, clean, tmp_path):
    store = ArtifactStore(str(root))
    n, match = CRASH_POINTS[stage]
    code, out = finish(runner(str(root), tmp_path / "home", stage, "--crash-after", str(n), "--crash-match", match))
    assert code == -signal.SIGKILL, out[-3000:]
    assert same(snapshot(store, stage), clean[stage])  # readers still see the last commit, whole
    code, out = finish(runner(str(root), tmp_path / "home", stage))
    assert code == 0, out[-3000:]
    assert same(snapshot(store, stage), clean[stage])  # the rerun's output is the clean run's, row for row


def test_external_kill_during_activations_then_rerun(root, clean, tmp_path):
    """SIGKILL from outside, as soon as the run has written its first files."""
    store = ArtifactStore(str(root))
    committed = layout.read_manifest(store, LAYER)["version"]
    proc = runner(str(root), tmp_path / "home", "activations")
    layer_dir = root / "activations" / LAYER
    deadline = time.monotonic() + 240
    while not any(p.parent.parent.name != committed for p in layer_dir.glob("*/*/*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert layout.read_manifest(store, LAYER)["version"] == committed
    assert same(snapshot(store, "activations"), clean["activations"])
    code, out = finish(runner(str(root), tmp_path / "home", "activations"))
    assert code == 0, out[-3000:]
    assert same(snapshot(store, "activations"), clean["activations"])


class Watcher(threading.Thread):
    """A reader that keeps resolving the layer's manifest and reading every file it names,
    while writers commit; any partial or missing file is recorded."""

    def __init__(self, store: ArtifactStore, expected: pl.DataFrame):
        super().__init__(daemon=True)
        self.store, self.expected = store, expected
        self.stop, self.reads, self.problems, self.versions = threading.Event(), 0, [], set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                snap = snapshot(self.store, "activations")
                self.versions.add(layout.read_manifest(self.store, LAYER)["version"])
                if not snap["rows"].equals(self.expected):
                    self.problems.append("rows differ from the clean run")
                self.reads += 1
            except Exception as e:  # noqa: BLE001 - recorded and asserted on by the test
                self.problems.append(f"{type(e).__name__}: {e}")


def _two_instances_write_one_layer(root: str, store: ArtifactStore, clean, tmp_path, endpoint=None) -> None:
    before = layout.read_manifest(store, LAYER)["version"]
    watcher = Watcher(store, clean["activations"]["rows"])
    watcher.start()
    procs = [runner(root, tmp_path / f"instance-{i}", "activations", endpoint=endpoint) for i in range(2)]
    results = [finish(p) for p in procs]
    watcher.stop.set()
    watcher.join()
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert watcher.reads > 0 and not watcher.problems, watcher.problems[:3]
    manifest = layout.read_manifest(store, LAYER)
    superseded = [s["version"] for s in manifest["superseded"]]
    assert before in superseded and len(superseded) == 2  # each commit recorded what it replaced
    assert same(snapshot(store, "activations"), clean["activations"])
    # Both runs' files are still there: neither deleted the other's as stale.
    runs = {p.rsplit("/", 1)[-1] for p in store.list_dirs(f"activations/{LAYER}")}
    assert {manifest["version"], *superseded} <= runs


def test_two_dagster_instances_write_one_layer_at_once(root, clean, tmp_path):
    _two_instances_write_one_layer(str(root), ArtifactStore(str(root)), clean, tmp_path)


def test_two_dagster_instances_write_one_layer_at_once_on_s3(s3_endpoint, data_root, clean, tmp_path):
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    root = f"s3://autointerp-test/two-writers-{time.time_ns()}"
    store = ArtifactStore(root, options)
    for path in sorted(data_root.rglob("*")):
        rel = str(path.relative_to(data_root))
        if path.is_file() and rel.split("/")[0] in ("corpus", "sparse_coder", "activations") and ".lock" not in rel:
            store.write_bytes(rel, path.read_bytes())
    _two_instances_write_one_layer(root, store, clean, tmp_path, endpoint=s3_endpoint)

