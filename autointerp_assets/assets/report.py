"""The per-layer report: a roll-up of every scored latent range, with plots (images in the
asset's metadata) and typed tables the UI renders and sorts."""

import dagster as dg
import polars as pl

from resources.project import Project
from resources.storage import Storage

from .. import lineage
from ..partitions import from_layer, layer_partitions
from ..report import plots
from ..report.rollup import SCORE_COLUMNS, build_report, by_frequency
from ..report.summary import with_lift
from ..store import layout
from .common import fails_clearly

LATENT_COLUMNS = ("latent", "explanation", "review", "status", "n_firing", "n_failed")  # counts read better than densities


def _pictures(store, layer: str, table: pl.DataFrame) -> dict:
    """Each plot as an image in the metadata, and as a PNG next to the summary."""
    out = {}
    for name, png in (("score_distributions", plots.score_distributions(table, SCORE_COLUMNS)),
                      ("score_vs_frequency", plots.score_vs_frequency(table, SCORE_COLUMNS))):
        if png is None:
            continue
        store.write_bytes(f"report/{layer}/{name}.png", png)
        out[name] = dg.MetadataValue.md(plots.markdown_image(png, f"{layer}: {name.replace('_', ' ')}"))
    return out


def _tables(table: pl.DataFrame) -> dict:
    scored, metrics = with_lift(table)
    columns = [c for c in LATENT_COLUMNS if c in scored.columns]
    columns[3:3] = metrics  # scores (and lift) right after the explanation and its review
    order = metrics[0] if metrics else "latent"
    out = {"latents": lineage.table_metadata(scored.sort(order, descending=True, nulls_last=True).select(columns),
                                             max_rows=500)}
    for metric in (m for m in metrics if not m.endswith("_lift")):
        out[f"{metric}_by_frequency"] = lineage.table_metadata(by_frequency(scored, metric))
    return out


@dg.asset(
    partitions_def=layer_partitions, deps=[dg.AssetDep("scores", partition_mapping=from_layer),
                                           dg.AssetDep("intervention_scores", partition_mapping=from_layer)],
    group_name="report", kinds={"polars", "matplotlib"},
)
@fails_clearly
def report(context: dg.AssetExecutionContext, project: Project, storage: Storage) -> dg.MaterializeResult:
    """Per-layer roll-up of every scored latent range: lift over chance per scorer, plots of each score
    against chance and firing frequency, the latents table, those flagged for review, and the LLM cost."""
    layer, store = context.partition_key, storage.store()
    summary = build_report(store, layer, project.config.checks)
    path = f"report/{layer}/summary.parquet"
    store.write_parquet(path, summary.table)
    return dg.MaterializeResult(
        metadata={**lineage.from_manifest(layout.read_manifest(store, layer)),
                  **{k: lineage.rounded(v) for k, v in summary.metadata.items()},
                  **_pictures(store, layer, summary.table), **_tables(summary.table),
                  "report": dg.MetadataValue.md(summary.markdown),
                  "path": dg.MetadataValue.path(store.uri(path))},
        data_version=dg.DataVersion(lineage.frame_digest(summary.table)),
    )
