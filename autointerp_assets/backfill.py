"""A Dagster backfill of exactly the partitions the layers' coders have.

A backfill launched from the UI over a whole `layer|range` grid would include the ranges of
wider coders (the grid is a cross product); those fail at `latent_shards` with the valid
ranges named. Submitted from here, the backfill targets layer partitions for layer assets and
only each coder's own ranges for range assets; the daemon runs it like any other, in
dependency order, visible under Overview > Backfills.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset  # what an asset backfill targets
from dagster._core.execution.backfill import PartitionBackfill

from .config import ProjectConfig
from .partitions import coder_partition_keys, layer_partitions, layer_range_partitions

LAYER_ASSETS = {"sparse_coder", "activations", "report"}


def backfill_subset(cfg: ProjectConfig, layers: Sequence[str], assets: Sequence[str],
                    instance: dg.DagsterInstance) -> AssetGraphSubset:
    ranges = coder_partition_keys(cfg, layers)
    subsets = {}
    for asset in assets:
        if asset in LAYER_ASSETS:
            subsets[dg.AssetKey(asset)] = layer_partitions.subset_with_partition_keys(list(layers))
        else:
            subsets[dg.AssetKey(asset)] = layer_range_partitions.subset_with_partition_keys(ranges)
    del instance  # dynamic partitions were registered by the caller
    return AssetGraphSubset(partitions_subsets_by_asset_key=subsets)


def submit_backfill(instance: dg.DagsterInstance, cfg: ProjectConfig, layers: Sequence[str],
                    assets: Sequence[str]) -> tuple[str, int]:
    """(backfill id, number of asset partitions targeted)."""
    subset = backfill_subset(cfg, layers, assets, instance)
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(PartitionBackfill.from_asset_graph_subset(
        backfill_id=backfill_id, backfill_timestamp=time.time(), tags={"autointerp/trigger": "cli-backfill"},
        dynamic_partitions_store=instance, asset_graph_subset=subset,
        title=f"{', '.join(assets)} for {', '.join(layers)}", description="only the ranges each layer's coder has",
        run_config=None,
    ))
    return backfill_id, sum(len(s) for s in subset.partitions_subsets_by_asset_key.values())
