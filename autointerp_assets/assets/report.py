"""The per-layer report: a roll-up of every scored latent range."""

import dagster as dg

from resources.project import Project
from resources.storage import Storage

from .. import lineage
from ..partitions import from_layer, layer_partitions
from ..report.rollup import build_report
from ..store import layout


@dg.asset(
    partitions_def=layer_partitions, deps=[dg.AssetDep("scores", partition_mapping=from_layer)], code_version="1",
    group_name="report", kinds={"polars"},
)


def report(context: dg.AssetExecutionContext, project: Project, storage: Storage) -> dg.MaterializeResult:
    """Per-layer roll-up of every scored latent range: lift over chance per scorer, histograms, score vs
    frequency, the latents flagged for review."""
    layer, store = context.partition_key, storage.store()
    summary = build_report(store, layer, project.config.checks)
    path = f"report/{layer}/summary.parquet"
    store.write_parquet(path, summary.table)
    return dg.MaterializeResult(
        metadata={**lineage.from_manifest(layout.read_manifest(store, layer)), **summary.metadata,
                  "report": dg.MetadataValue.md(summary.markdown),
                  "path": dg.MetadataValue.path(store.uri(path))},
        data_version=dg.DataVersion(lineage.frame_digest(summary.table)),
    )

