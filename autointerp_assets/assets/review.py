"""Human review as an asset: `reviews[layer|range]` is the standing verdict on each explanation.

Launched with run config it appends one review first (the `review_job` in the UI's launchpad,
or `python -m autointerp_assets review`); without, it recomputes what stands after the
explanations changed. Its data version is a digest of the edits in force, so an edit makes
`scores` stale and automation re-scores the edited text; accept and reject change nothing
that scores read.
"""

import dagster as dg
import polars as pl

from resources.storage import Storage

from .. import lineage
from ..partitions import layer_range_partitions
from ..report import review
from ..store import layout
from .common import layer_range


class ReviewConfig(dg.Config):
    """One review to record; leave `latent` unset to only recompute what stands."""

    latent: int | None = None
    verdict: str = ""  # accept | reject | edit
    text: str = ""  # the new explanation, for an edit
    reviewer: str = ""
    explanation_version: str = ""  # the version you looked at (optional): refused if it changed since


@dg.asset(
    partitions_def=layer_range_partitions, deps=["explanations"], group_name="llm", kinds={"json", "parquet"},
)
def reviews(context: dg.AssetExecutionContext, config: ReviewConfig, storage: Storage) -> dg.MaterializeResult:
    """Accept, reject or edit explanations; the standing verdict of each, keyed by the explanation's version."""
    layer, key = layer_range(context)
    store = storage.store()
    explained = layout.read_partition(store, "explanations", layer, key)
    recorded = None
    if config.latent is not None:
        current = review.standing(explained, review.read_log(store, layer, key))
        try:
            recorded = review.new_review(current, config.latent, config.verdict, config.reviewer,
                                         config.text or None, config.explanation_version or None)
        except review.ReviewError as e:
            raise dg.Failure(f"review not recorded: {e}") from None
        path = review.append(store, layer, key, recorded)
        context.log.info(f"{recorded.verdict} of latent {recorded.latent} by {recorded.reviewer}: {store.uri(path)}")
    log = review.read_log(store, layer, key)
    current = review.standing(explained, log)
    store.write_parquet(f"{review.log_dir(layer, key)}.parquet", current)
    reviewed = current.filter(pl.col("verdict").is_not_null())
    metadata = {
        "n_reviews": len(log), "n_reviewed_latents": reviewed.height,
        "n_edited": int((current["explanation"] != current["explainer_explanation"]).sum()),
        "n_superseded": int(current["n_superseded"].sum()),
        "standing": lineage.table_metadata(reviewed.select(
            "latent", "verdict", "explanation", "reviewer", "reviewed_at", "explanation_version"), max_rows=200),
        "path": dg.MetadataValue.path(store.uri(review.log_dir(layer, key))),
    }
    if recorded is not None:
        metadata |= {"review_latent": recorded.latent, "review_verdict": recorded.verdict,
                     "reviewer": recorded.reviewer, "reviewed_version": recorded.explanation_version}
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(review.edits_digest(current)))


review_job = dg.define_asset_job(
    "review_job", selection=dg.AssetSelection.assets("reviews"),
    description="Record one review: pick the partition, then set ops.reviews.config "
                "{latent, verdict: accept|reject|edit, text (for edit), reviewer}.",
)
