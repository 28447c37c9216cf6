"""Latent ranges of one layer as concurrent runs: the multiprocess executor (a process per step,
each loading the code location from $AUTOINTERP_CONFIG) against an on-disk instance built
from the repo's dagster.yaml, as the daemon would launch them."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository

from autointerp_assets.config import project_config
from autointerp_assets.definitions import all_assets, build_resources
from autointerp_assets.lineage import MANIFEST_LINEAGE_KEYS
from resources.storage import Storage

REPO = Path(__file__).parents[1]
LAYER = "layers.3.mlp"  # raw MLP neurons: no SAE to train first
RANGES = ["00000-00015", "00016-00031", "00032-00047"]
JOB = "latent_shards_to_scores_job"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An instance in a temp $DAGSTER_HOME and a config whose storage root is in tmp, with
    corpus, sparse_coder and activations of LAYER materialised in-process."""
    root = tmp_path_factory.mktemp("multiprocess")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home)
    raw = yaml.safe_load((REPO / "tests" / "data" / "small.yaml").read_text())
    raw["storage_root"] = str(root / "data")
    (root / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    env = pytest.MonkeyPatch()
    env.setenv("DAGSTER_HOME", str(home))
    env.setenv("AUTOINTERP_CONFIG", str(root / "autointerp.yaml"))  # read by the step processes
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("layer", [LAYER])
    resources = {**build_resources(project_config()), "storage": Storage(root=str(root / "data"))}
    for asset, key in (("corpus", None), ("sparse_coder", LAYER), ("activations", LAYER)):
        dg.materialize(all_assets, selection=[asset], partition_key=key, resources=resources, instance=instance)
    yield instance
    instance.dispose()
    env.undo()


def _run(instance: dg.DagsterInstance, latent_range: str) -> dg.JobExecutionResult:
    job = ReconstructableRepository.for_module(
        "autointerp_assets.definitions", "defs", working_directory=str(REPO)).get_reconstructable_job(JOB)
    tags = {"dagster/partition": f"{latent_range}|{LAYER}", "dagster/partition/layer": LAYER,
            "dagster/partition/latents": latent_range}
    return dg.execute_job(job, instance, tags=tags, asset_selection=[dg.AssetKey("latent_shards")])


def test_latent_ranges_run_concurrently(project):
    instance = project
    with ThreadPoolExecutor(len(RANGES)) as pool:
        results = list(pool.map(lambda r: _run(instance, r), RANGES))
    assert all(r.success for r in results), [r.run_id for r in results if not r.success]
    runs = [instance.get_run_record_by_id(r.run_id) for r in results]
    spans = sorted((run.start_time, run.end_time) for run in runs)
    assert all(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), "the runs did not overlap"

    for r, latent_range in zip(results, RANGES):
        materialisations = r.get_asset_materialization_events()
        assert [m.partition for m in materialisations] == [f"{latent_range}|{LAYER}"]
        metadata = materialisations[0].materialization.metadata
        assert set(MANIFEST_LINEAGE_KEYS) <= set(metadata)  # lineage reaches every range partition
        checks = {e.check_name: e.passed for e in r.get_asset_check_evaluations()}
        assert set(checks) == {"not_empty", "dead_fraction", "density_bounds"} and checks["not_empty"]
    assert {p for p in instance.get_materialized_partitions(dg.AssetKey("latent_shards"))} == {
        f"{r}|{LAYER}" for r in RANGES}
