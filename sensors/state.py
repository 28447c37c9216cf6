"""The Dagster side of planning: the graph and its jobs from the asset definitions, the
instance's latest materialisations and in-flight runs, and run requests from a plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (  # what define_asset_job returns
    UnresolvedAssetJobDefinition as AssetJob,
)

from autointerp_assets.config import ProjectConfig
from autointerp_assets.partitions import (
    LAYER_DIM,
    RANGE_DIM,
    layer_partitions,
    layer_range_partitions,
    layer_ranges,
)

from .planner import Graph, Group, Kind, Node, PartitionKey, Request, Scope

TRIGGER_TAG = "autointerp/trigger"
REASON_TAG = "autointerp/reason"
RUN_KEY_TAG = "dagster/run_key"
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _kind(asset: dg.AssetsDefinition) -> Kind:
    if asset.partitions_def is None:
        return "none"
    return "range" if isinstance(asset.partitions_def, dg.MultiPartitionsDefinition) else "layer"


def graph_of(assets: Iterable[dg.AssetsDefinition]) -> Graph:
    """The planner's view of the pipeline, read from the asset definitions themselves."""
    nodes = [
        Node(a.key.to_user_string(), _kind(a), tuple(sorted(k.to_user_string() for k in a.asset_deps[a.key])))
        for a in assets
        if a.is_materializable
    ]
    return Graph.build(nodes)


def job_name(graph: Graph, group: Group) -> str:
    names = graph.groups()[group]
    return f"{names[0]}_job" if len(names) == 1 else f"{names[0]}_to_{names[-1]}_job"


def stage_jobs(graph: Graph) -> dict[Group, AssetJob]:
    """One job per group: e.g. sparse_coder_to_activations_job runs a layer's GPU stage."""
    return {
        group: dg.define_asset_job(
            job_name(graph, group), selection=dg.AssetSelection.assets(*names),
            description=f"{', '.join(names)} for one {'unpartitioned' if group[1] == 'none' else group[1]} partition",
        )
        for group, names in graph.groups().items()
    }


def latent_ranges(cfg: ProjectConfig, layer: str) -> tuple[str, ...]:
    """The latent ranges that exist for this layer's coder."""
    return tuple(layer_ranges(cfg, layer))


def scope_of(cfg: ProjectConfig, layers: Iterable[str]) -> Scope:
    return Scope({layer: latent_ranges(cfg, layer) for layer in layers if layer in cfg.hookpoints})


def _from_dagster(kind: Kind, key: str | None) -> PartitionKey:
    if kind != "range":
        return key
    dims = layer_range_partitions.get_partition_key_from_str(key).keys_by_dimension  # type: ignore[arg-type]
    return dims[LAYER_DIM], dims[RANGE_DIM]


def to_dagster(p: PartitionKey) -> str | None:
    if isinstance(p, tuple):
        return dg.MultiPartitionKey({LAYER_DIM: p[0], RANGE_DIM: p[1]})
    return p


def latest_storage_ids(instance: dg.DagsterInstance, graph: Graph) -> dict[str, dict[PartitionKey, int]]:
    """Per asset: storage id of each partition's latest materialisation (one query per asset)."""
    out: dict[str, dict[PartitionKey, int]] = {}
    for node in graph.nodes:
        key = dg.AssetKey.from_user_string(node.name)
        if node.kind == "none":
            records = instance.fetch_materializations(key, limit=1).records
            out[node.name] = {None: records[0].storage_id} if records else {}
            continue
        by_partition = instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        out[node.name] = {_from_dagster(node.kind, k): sid for k, sid in by_partition.items()}
    return out


def in_flight_partitions(instance: dg.DagsterInstance) -> set[PartitionKey]:
    """Partitions of queued or running runs; None for a run of no single partition
    (unpartitioned, or a range backfill), which holds all planning back."""
    out: set[PartitionKey] = set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT)):
        tags = record.dagster_run.tags
        if f"dagster/partition/{LAYER_DIM}" in tags and f"dagster/partition/{RANGE_DIM}" in tags:
            out.add((tags[f"dagster/partition/{LAYER_DIM}"], tags[f"dagster/partition/{RANGE_DIM}"]))
        else:
            out.add(tags.get("dagster/partition"))
    return out


def registered_layers(instance: dg.DagsterInstance) -> list[str]:
    return instance.get_dynamic_partitions(layer_partitions.name)


def run_key(prefix: str, graph: Graph, request: Request) -> str:
    return f"{prefix}|{job_name(graph, request.group)}|{to_dagster(request.partition) or '-'}|{request.fingerprint}"


def run_request(graph: Graph, request: Request, key: str, trigger: str, tags: dict[str, str] | None = None) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=key,
        job_name=job_name(graph, request.group),
        asset_selection=[dg.AssetKey.from_user_string(n) for n in request.assets],
        partition_key=to_dagster(request.partition),
        tags={TRIGGER_TAG: trigger, REASON_TAG: request.reason[:200], **(tags or {})},
    )


def run_statuses(instance: dg.DagsterInstance, keys: Sequence[str]) -> dict[str, dg.DagsterRunStatus]:
    """Status of the latest run launched under each run key (absent: never launched)."""
    out = {}
    for key in keys:
        records = instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
        if records:
            out[key] = records[0].dagster_run.status
    return out
