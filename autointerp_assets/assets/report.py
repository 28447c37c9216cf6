"""The per-layer report: a roll-up of every scored latent range."""

import dagster as dg

from resources.storage import Storage

from .. import lineage
from ..partitions import from_layer, layer_partitions
from ..report.rollup import build_report
from ..store import layout
from .common import fails_clearly


@dg.asset(
    partitions_def=layer_partitions, deps=[dg.AssetDep("scores", partition_mapping=from_layer)], code_version="1",
    group_name="report", kinds={"polars"},
)


@fails_clearly
def report(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
    """Per-layer roll-up of every scored latent range: table, histograms, score vs frequency."""
    layer, store = context.partition_key, storage.store()
    summary = build_report(store, layer)
    path = f"report/{layer}/summary.parquet"
    store.write_parquet(path, summary.table)
    return dg.MaterializeResult(
        metadata={**lineage.from_manifest(layout.read_manifest(store, layer)), **summary.metadata,
                  "report": dg.MetadataValue.md(summary.markdown),
                  "path": dg.MetadataValue.path(store.uri(path))},
        data_version=dg.DataVersion(lineage.frame_digest(summary.table)),
    )

