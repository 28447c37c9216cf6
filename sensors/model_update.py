"""Model-update sensor: when the subject model or a coder's files change, re-run what was built from them.

Each tick reads the revisions (`sensors/revisions.py`: a content hash offline, a hub
commit sha online), records changed ones as data versions of the observable source
assets `subject_model_source` / `sparse_coder_source[layer]`, and compares them with the
cursor (the revisions seen last tick, as JSON).

Affected partitions, decided here: a subject-model change affects every layer, a coder
change only its own layer; and only what was materialised before is re-run (an operator
chose which latent ranges to pay LLM calls for; what was never built is the refresh
schedules' business). For each affected layer, in order:

1. `sparse_coder` + `activations` of the layer, run key `model-update|<layer>|<revision>`;
2. once that run has written new activations, every existing range partition of the
   layer from the first stale asset down (`planner.plan`, without filling missing ones);
3. then the layer's `report`.

The layer waits in the cursor (`pending`) between these steps, with the run keys already
requested, so no tick requests anything twice. A failed step drops the layer from
`pending` with a message in the tick; fix it and materialise by hand, or let the refresh
schedules retry.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG  # the tag observations carry versions in

from autointerp_assets.config import ProjectConfig
from autointerp_assets.data.revisions import revision_of
from autointerp_assets.partitions import layer_partitions
from resources.storage import Storage

from .planner import Graph, PartitionKey, plan
from .sources import (
    CODER_PREFIX,
    SUBJECT,
    changed_layers,
    coder_sources,
    layer_revision,
    read_revisions,
    subject_source,
)
from .state import (
    AssetJob,
    in_flight_partitions,
    latest_storage_ids,
    registered_layers,
    run_key,
    run_request,
    run_statuses,
    scope_of,
)

SUBJECT_SOURCE = dg.AssetKey("subject_model_source")
CODER_SOURCE = dg.AssetKey("sparse_coder_source")
TRIGGER = "model_update"


def build_source_assets(cfg: ProjectConfig) -> list[dg.SourceAsset]:
    """Observable sources, so a revision shows in the UI as a data version ("Observe" reads it now)."""

    @dg.observable_source_asset(
        key=SUBJECT_SOURCE, group_name="sources",
        description="The subject model's revision: hub commit sha, or a content hash of its local/S3 files.",
    )
    def subject_model_source() -> dg.DataVersion:
        return dg.DataVersion(revision_of(subject_source(cfg), None, cfg.subject_model.revision))

    @dg.observable_source_asset(
        key=CODER_SOURCE, group_name="sources", partitions_def=layer_partitions,
        description="Each path-loaded sparse coder's revision (trained and neuron coders follow the model).",
    )
    def sparse_coder_source(context: dg.OpExecutionContext, storage: Storage) -> dg.DataVersionsByPartition:
        registered = set(registered_layers(context.instance))
        return dg.DataVersionsByPartition({
            layer: revision_of(path, storage.storage_options())
            for layer, path in coder_sources(cfg).items() if layer in registered
        })

    return [subject_model_source, sparse_coder_source]


@dataclass
class Pending:
    revision: str
    after: int  # activations' storage id when the change was seen: the layer run is done once it moves
    emitted: list[str] = field(default_factory=list)  # run keys requested so far, the layer run first


def _observations(old: dict[str, str], new: dict[str, str], registered: set[str]) -> list[dg.AssetObservation]:
    events = []
    for key, revision in sorted(new.items()):
        if old.get(key) == revision:
            continue
        tags = {DATA_VERSION_TAG: revision}
        if key == SUBJECT:
            events.append(dg.AssetObservation(asset_key=SUBJECT_SOURCE, tags=tags))
        elif (layer := key.removeprefix(CODER_PREFIX)) in registered:
            events.append(dg.AssetObservation(asset_key=CODER_SOURCE, partition=layer, tags=tags))
    return events


def evaluate(
    instance: dg.DagsterInstance, cursor: str | None, cfg: ProjectConfig, graph: Graph,
    storage_options: dict | None = None,
) -> dg.SensorResult:
    state = json.loads(cursor) if cursor else {}
    old: dict[str, str] = state.get("revisions", {})
    pending = {layer: Pending(**p) for layer, p in state.get("pending", {}).items()}
    revisions, errors = read_revisions(cfg, storage_options)
    registered = set(registered_layers(instance))
    layers = [layer for layer in cfg.hookpoints if layer in registered]
    latest = latest_storage_ids(instance, graph)
    layer_group = min(g for g in graph.groups() if g[1] == "layer")
    layer_assets = graph.groups()[layer_group]
    built = [layer for layer in layers if any(layer in latest.get(a, {}) for a in layer_assets)]
    for layer in changed_layers(old, revisions, built):
        pending[layer] = Pending(layer_revision(revisions, layer), latest.get(layer_assets[-1], {}).get(layer, 0))

    in_flight = in_flight_partitions(instance)
    requests: list[dg.RunRequest] = []
    notes = [f"cannot read {e}" for e in errors.values()]
    for layer, p in list(pending.items()):
        if layer not in layers:
            del pending[layer]
            continue
        scope = scope_of(cfg, [layer])
        if not p.emitted:  # step 1: the layer's own re-run
            planned = plan(graph, scope, latest, in_flight, fill_missing=False,
                           forced=[(a, layer) for a in layer_assets])
            step = next((r for r in planned.requests if r.group == layer_group and r.partition == layer), None)
            if step is None:
                notes.append(f"{layer}: update waits ({planned.waiting.get((layer_assets[0], layer))})")
                continue
            key = f"model-update|{layer}|{p.revision}"
            requests.append(run_request(graph, step, key, TRIGGER, {"autointerp/revision": p.revision}))
            p.emitted.append(key)
            continue
        if latest.get(layer_assets[-1], {}).get(layer, 0) <= p.after:  # the layer run has not finished
            status = run_statuses(instance, p.emitted[:1]).get(p.emitted[0])
            if status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                notes.append(f"{layer}: run {p.emitted[0]} {status.value.lower()}; downstream not re-run")
                del pending[layer]
            continue
        planned = plan(graph, scope, latest, in_flight, fill_missing=False)  # steps 2 and 3
        fresh = [(r, run_key("model-update", graph, r)) for r in planned.requests]
        fresh = [(r, k) for r, k in fresh if k not in p.emitted]
        requests += [run_request(graph, r, k, TRIGGER, {"autointerp/revision": p.revision}) for r, k in fresh]
        p.emitted += [k for _, k in fresh]
        if not fresh and not _busy(layer, in_flight):
            del pending[layer]  # done; anything that failed on the way is in the runs' history

    new_cursor = {"revisions": {**old, **revisions}, "pending": {k: asdict(v) for k, v in pending.items()}}
    return dg.SensorResult(
        run_requests=requests,
        asset_events=_observations(old, revisions, registered),
        cursor=json.dumps(new_cursor, sort_keys=True),
        skip_reason=None if requests else "; ".join(notes) or f"no change ({len(pending)} layer(s) updating)",
    )


def _busy(layer: str, in_flight: set[PartitionKey]) -> bool:
    return None in in_flight or any((q[0] if isinstance(q, tuple) else q) == layer for q in in_flight)


def build_model_update_sensor(
    cfg: ProjectConfig, graph: Graph, jobs: Sequence[AssetJob],
    minimum_interval_seconds: int = 120,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="model_update_sensor", jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds, default_status=dg.DefaultSensorStatus.RUNNING,
        description=(__doc__ or "").split("\n\n")[0],
    )
    def model_update_sensor(context: dg.SensorEvaluationContext, storage: Storage) -> dg.SensorResult:
        result = evaluate(context.instance, context.cursor, cfg, graph, storage.storage_options())
        for request in result.run_requests or []:
            context.log.info(f"requesting {request.run_key}: {request.tags.get('autointerp/reason')}")
        return result

    return model_update_sensor
