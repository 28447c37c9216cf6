"""Sensors and refresh schedules against a real (ephemeral) instance, and the planner alone.

Materialisations are reported as runless events: the sensors read only the instance's
records, so no model runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import torch
import yaml
from support.project import SMALL_CONFIG, small_config

from autointerp_assets.assets import ALL_ASSETS
from autointerp_assets.code_location import build_definitions
from autointerp_assets.coders import TopKSAE, save_topk_sae
from autointerp_assets.config import load_config
from autointerp_assets.partitions import register_partitions
from resources.storage import Storage
from sensors import build_hookpoint_sensor, build_model_update_sensor, build_source_assets
from sensors.planner import Graph, Node, Scope, plan
from sensors.refresh import refresh_requests
from sensors.state import graph_of, stage_jobs

pipeline = graph_of(ALL_ASSETS)
jobs = stage_jobs(pipeline)
defs = build_definitions(small_config())

TOPK, NEURONS = "layers.3", "layers.3.mlp"
R0, R1 = "00000-00015", "00016-00031"


def _sae(path: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, d = 32, 576
    save_topk_sae(TopKSAE(torch.randn(n, d, generator=g), torch.zeros(n), torch.randn(n, d, generator=g),
                          torch.zeros(d), k=4), path)


@pytest.fixture
def project(tmp_path):
    """A config whose model and coder are files we can change: a stand-in model dir and a TopK SAE."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    _sae(tmp_path / "sae", seed=0)
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["subject_model"]["id"] = str(model)
    raw["hookpoints"] = {TOPK: {"kind": "topk", "path": str(tmp_path / "sae"), "n_latents": 32},
                         NEURONS: {"kind": "neurons", "n_latents": 1536, "top_k": 16}}
    raw["storage_root"] = str(tmp_path / "data")
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path, load_config(tmp_path / "autointerp.yaml")


def _materialised(instance: dg.DagsterInstance, asset: str, *partitions) -> None:
    for p in partitions:
        key = dg.MultiPartitionKey({"layer": p[0], "range": p[1]}) if isinstance(p, tuple) else p
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))


def _tick(sensor, instance, tmp_path, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources={"storage": Storage(root=str(tmp_path / "data"))}) as ctx:
        result = sensor(ctx)
    return result, result.cursor


def _requested(result) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((r.job_name, str(r.partition_key), tuple(k.to_user_string() for k in r.asset_selection))
                  for r in result.run_requests)


def test_hookpoint_sensor_adds_missing_layers_once(project):
    _, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])
    instance.delete_dynamic_partition("layer", NEURONS)
    sensor = build_hookpoint_sensor(cfg)
    result = sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [[NEURONS]]
    instance.add_dynamic_partitions("layer", [NEURONS])
    assert isinstance(sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)


def test_model_update_reruns_only_affected_partitions(project):
    tmp_path, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])
    _materialised(instance, "corpus", None)
    for asset in ("sparse_coder", "activations"):
        _materialised(instance, asset, TOPK, NEURONS)
    for asset in ("latent_shards", "contexts"):  # one range was taken as far as contexts
        _materialised(instance, asset, (TOPK, R0))
    sensor = build_model_update_sensor(cfg, pipeline, list(jobs.values()))

    first, cursor = _tick(sensor, instance, tmp_path, None)
    assert not first.run_requests  # the first sighting is the baseline, nothing was built from another revision
    assert {(e.asset_key.to_user_string(), e.partition) for e in first.asset_events} == {
        ("subject_model_source", None), ("sparse_coder_source", TOPK)}
    assert first.asset_events[0].tags["dagster/data_version"]

    _sae(tmp_path / "sae", seed=1)  # the coder's files change
    changed, cursor = _tick(sensor, instance, tmp_path, cursor)
    assert _requested(changed) == [("sparse_coder_to_activations_job", TOPK, ("sparse_coder", "activations"))]
    revision = json.loads(cursor)["revisions"]["coder:layers.3"]
    assert [e.partition for e in changed.asset_events] == [TOPK]
    assert changed.run_requests[0].run_key.startswith(f"model-update|{TOPK}|")
    assert not _tick(sensor, instance, tmp_path, cursor)[0].run_requests  # layer run not done yet

    for asset in ("sparse_coder", "activations"):  # the layer run finishes
        _materialised(instance, asset, TOPK)
    downstream, cursor = _tick(sensor, instance, tmp_path, cursor)
    # only the range built before, only the assets built before: no explanations, no other ranges
    assert _requested(downstream) == [
        ("latent_shards_to_scores_job", f"{TOPK}|{R0}", ("latent_shards", "contexts"))]
    again, cursor = _tick(sensor, instance, tmp_path, cursor)
    assert not again.run_requests
    assert json.loads(cursor)["pending"] == {}
    assert json.loads(cursor)["revisions"]["coder:layers.3"] == revision

    (tmp_path / "model" / "weights.bin").write_bytes(b"v2")  # the subject model changes: every layer
    model_change, cursor = _tick(sensor, instance, tmp_path, cursor)
    assert _requested(model_change) == [
        ("sparse_coder_to_activations_job", layer, ("sparse_coder", "activations")) for layer in (TOPK, NEURONS)]
    assert not _tick(sensor, instance, tmp_path, cursor)[0].run_requests


def test_observing_the_sources_gives_the_sensors_revisions(project):
    """The UI's "Observe sources" records the same data versions the sensor compares."""
    from dagster._core.definitions.observe import observe

    tmp_path, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])
    result = observe(build_source_assets(cfg), instance=instance,
                     resources={"storage": Storage(root=str(tmp_path / "data"))})
    assert result.success
    observed = {(e.asset_key.to_user_string(), e.partition): e.tags["dagster/data_version"]
                for e in (ev.asset_observation_data.asset_observation for ev in result.get_asset_observation_events())}
    _, cursor = _tick(build_model_update_sensor(cfg, pipeline, list(jobs.values())), instance, tmp_path, None)
    seen = json.loads(cursor)["revisions"]
    assert observed == {("subject_model_source", None): seen["subject_model"],
                        ("sparse_coder_source", TOPK): seen[f"coder:{TOPK}"]}


def test_model_update_waits_for_a_layer_run_in_flight(project):
    tmp_path, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])
    for asset in ("corpus", "sparse_coder", "activations"):
        _materialised(instance, asset, *([None] if asset == "corpus" else [TOPK]))
    sensor = build_model_update_sensor(cfg, pipeline, list(jobs.values()))
    _, cursor = _tick(sensor, instance, tmp_path, None)
    _sae(tmp_path / "sae", seed=2)
    run = instance.create_run_for_job(defs.get_job_def("sparse_coder_to_activations_job"),
                                      tags={"dagster/partition": TOPK}, status=dg.DagsterRunStatus.STARTED)
    waiting, cursor = _tick(sensor, instance, tmp_path, cursor)
    assert not waiting.run_requests and "in flight" in waiting.skip_reason.skip_message
    instance.report_run_canceled(run)
    resumed, _ = _tick(sensor, instance, tmp_path, cursor)
    assert _requested(resumed) == [("sparse_coder_to_activations_job", TOPK, ("sparse_coder", "activations"))]


def test_refresh_fills_missing_in_order(project):
    _, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK])
    groups = {job.name: group for group, job in jobs.items()}

    def requested(job: str):
        out = refresh_requests(instance, cfg, pipeline, groups[job])
        return [] if isinstance(out, dg.SkipReason) else sorted(str(r.partition_key) for r in out)

    assert requested("corpus_job") == ["None"] and requested("sparse_coder_to_activations_job") == []
    _materialised(instance, "corpus", None)
    assert requested("sparse_coder_to_activations_job") == [TOPK]
    assert requested("latent_shards_to_scores_job") == []  # waits for the layer
    for asset in ("sparse_coder", "activations"):
        _materialised(instance, asset, TOPK)
    assert requested("latent_shards_to_scores_job") == [f"{TOPK}|{r}" for r in (R0, R1)]  # 32 latents: 2 ranges
    assert requested("report_job") == []  # no scores yet
    for asset in ("latent_shards", "contexts", "explanations", "scores"):
        _materialised(instance, asset, (TOPK, R0))
    assert requested("report_job") == [TOPK]


# -- the planner alone ------------------------------------------------------------------------

GRAPH = Graph.build([
    Node("corpus", "none", ()), Node("coder", "layer", ("corpus",)), Node("acts", "layer", ("coder", "corpus")),
    Node("shards", "range", ("acts",)), Node("explained", "range", ("shards", "corpus")),
    Node("report", "layer", ("explained",)),
])
SCOPE = Scope({"L": ("a", "b")})
BUILT = {"corpus": {None: 1}, "coder": {"L": 2}, "acts": {"L": 3},
         "shards": {("L", "a"): 4, ("L", "b"): 5}, "explained": {("L", "a"): 6}, "report": {"L": 7}}


def test_planner_stages_follow_partition_kinds():
    assert GRAPH.stage == {"corpus": 0, "coder": 1, "acts": 1, "shards": 2, "explained": 2, "report": 3}


def test_planner_reruns_stale_chain_and_holds_back_what_waits():
    stale = {**BUILT, "acts": {"L": 8}}  # activations re-materialised after everything downstream
    planned = plan(GRAPH, SCOPE, stale, fill_missing=False)
    assert [(r.assets, r.partition) for r in planned.requests] == [
        (("shards", "explained"), ("L", "a")), (("shards",), ("L", "b"))]
    assert ("report", "L") not in [(a, r.partition) for r in planned.requests for a in r.assets]

    filled = plan(GRAPH, SCOPE, stale, fill_missing=True)
    assert [(r.assets, r.partition) for r in filled.requests][1] == (("shards", "explained"), ("L", "b"))

    busy = plan(GRAPH, SCOPE, stale, in_flight={("L", "a")}, fill_missing=False)
    assert [r.partition for r in busy.requests] == [("L", "b")]
    assert busy.waiting == {("shards", ("L", "a")): "a run of this partition is in flight"}


def test_planner_is_quiet_when_up_to_date_and_keys_follow_state():
    assert plan(GRAPH, SCOPE, BUILT, fill_missing=False).requests == []
    forced = plan(GRAPH, SCOPE, BUILT, fill_missing=False, forced=[("coder", "L")])
    assert [(r.assets, r.partition) for r in forced.requests] == [(("coder", "acts"), "L")]
    again = plan(GRAPH, SCOPE, {**BUILT, "corpus": {None: 9}}, fill_missing=False, forced=[("coder", "L")])
    assert again.requests[0].fingerprint != forced.requests[0].fingerprint
