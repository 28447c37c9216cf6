"""Latent ranges of one layer as concurrent runs, each in its own process with the multiprocess
executor (a process per step, each loading the code location from $AUTOINTERP_CONFIG),
against one on-disk instance built from the repo's dagster.yaml.

Runs are separate processes, as a run launcher starts them: `dagster.execute_job` is not
thread-safe (its logging setup deadlocks across threads)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from support.project import on_disk_project

from autointerp_assets.lineage import MANIFEST_LINEAGE_KEYS

REPO = Path(__file__).parents[2]
LAYER = "layers.3.mlp"  # raw MLP neurons: no SAE to train first
RANGES = ["00000-00015", "00016-00031", "00032-00047"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An instance in a temp $DAGSTER_HOME and a config whose storage root is in tmp, with
    corpus, sparse_coder and activations of LAYER materialised in-process."""
    instance, env = on_disk_project(tmp_path_factory.mktemp("multiprocess"), LAYER,
                                    [("corpus", None), ("sparse_coder", LAYER), ("activations", LAYER)])
    yield instance
    instance.dispose()
    env.undo()


def _materialise(latent_range: str) -> subprocess.Popen:
    """What an operator runs: one run of one partition, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "autointerp_assets.definitions",
         "--select", "latent_shards", "--partition", f"{LAYER}|{latent_range}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_latent_ranges_run_concurrently(project):
    instance = project
    procs = [_materialise(r) for r in RANGES]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(RANGES), outputs[-1][-3000:]

    runs = [r.dagster_run for r in instance.get_run_records() if "dagster/partition/range" in r.dagster_run.tags]
    assert sorted(run.tags["dagster/partition"] for run in runs) == [f"{LAYER}|{r}" for r in RANGES]
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    records = [instance.get_run_record_by_id(run.run_id) for run in runs]
    spans = sorted((rec.start_time, rec.end_time) for rec in records)
    assert all(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), "the runs did not overlap"

    for run in runs:
        materialised = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        metadata = materialised[0].event_log_entry.asset_materialization.metadata
        assert set(MANIFEST_LINEAGE_KEYS) <= set(metadata)  # lineage reaches every range partition
        evaluated = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        checks = {r.event_log_entry.dagster_event.asset_check_evaluation_data.check_name:
                  r.event_log_entry.dagster_event.asset_check_evaluation_data.passed for r in evaluated}
        assert set(checks) == {"not_empty", "dead_fraction", "density_bounds"} and checks["not_empty"]
