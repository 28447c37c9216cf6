"""Per-layer roll-up of every scored latent range: one table, lift over chance per scorer (overall
and by firing frequency), histograms, the latents flagged for human review, cost.

Plots are drawn as Markdown (Unicode bars) so they show in the Dagster UI with no
image pipeline; the full table is written as parquet next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..config import ChecksConfig
from ..lineage import markdown_table
from ..scoring.registry import SCORERS
from ..scoring.summary import PRIMARY, review_queue
from ..store import layout
from ..store.store import ArtifactStore, partition_path
from . import review

CODE_VERSION = "3"  # bump when a change here changes what the stage writes: its asset and all below go stale
# (scorer, metric) pairs the report summarises: every scorer's primary metrics, and the intervention
# scorer's AUROC (its own asset, `intervention_scores`, joined into the scores where a range has it).
SCORE_METRICS = (*((s, m) for s, scorer in SCORERS.items() for m in PRIMARY if m in scorer.metrics),
                 ("intervention", "auroc"))
SCORE_COLUMNS = tuple(f"{s}_{m}" for s, m in SCORE_METRICS)
_BAR = "█"


@dataclass(frozen=True)
class Report:
    table: pl.DataFrame  # one row per latent: scores joined with firing stats
    markdown: str
    metadata: dict[str, Any]


def scored_ranges(store: ArtifactStore, layer: str) -> list[str]:
    """Latent ranges with a scores file: scores/<layer>/<range>.parquet (not its sidecars)."""
    names = [p.rsplit("/", 1)[-1] for p in store.list(f"scores/{layer}")]
    return [n.removesuffix(".parquet") for n in names if n.endswith(".parquet") and n.count(".") == 1]


def histogram(values: list[float], lo: float = 0.0, hi: float = 1.0, bins: int = 10, width: int = 30) -> str:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
    top = max(counts) or 1
    step = (hi - lo) / bins
    lines = [f"{lo + i * step:4.1f}–{lo + (i + 1) * step:4.1f} {_BAR * round(c / top * width):<{width}} {c}"
             for i, c in enumerate(counts)]
    return "```\n" + "\n".join(lines) + "\n```"


def by_frequency(table: pl.DataFrame, score: str) -> pl.DataFrame:
    """Mean score (with its chance baseline and lift, where the table has them) per decade of
    firing density (log10 buckets)."""
    extra = [c for c in (f"{score}_chance", f"{score}_lift") if c in table.columns]
    return (
        table.filter(pl.col(score).is_not_null() & (pl.col("density") > 0))
        .with_columns(pl.col("density").log10().floor().cast(pl.Int32).alias("log10_density"))
        .group_by("log10_density")
        .agg(pl.len().alias("n_latents"), *(pl.col(c).mean().alias(f"mean_{c}") for c in (score, *extra)))
        .sort("log10_density")
    )


def lift_table(table: pl.DataFrame) -> pl.DataFrame:
    """Per scorer and metric: latents with a value, mean value, mean chance baseline, mean lift."""
    rows = []
    for s, m in SCORE_METRICS:
        col = f"{s}_{m}"
        if col not in table.columns or table[col].drop_nulls().is_empty():
            continue
        scored = table.filter(pl.col(col).is_not_null())

        def mean(suffix: str, scored: pl.DataFrame = scored, col: str = col) -> float | None:
            return scored[col + suffix].mean() if col + suffix in scored.columns else None  # type: ignore[return-value]

        lift = scored[f"{col}_lift"] if f"{col}_lift" in scored.columns else pl.Series([], dtype=pl.Float64)
        rows.append({"scorer": s, "metric": m, "n_latents": scored.height, "mean_windows": mean("_n"),
                     "mean": scored[col].mean(), "mean_chance": mean("_chance"), "mean_lift": mean("_lift"),
                     "n_with_chance": int(lift.is_not_null().sum()), "mean_top_tokens": mean("_top_tokens"),
                     "mean_over_top_tokens": mean("_over_top_tokens")})
    return pl.DataFrame(rows, schema={"scorer": pl.Utf8, "metric": pl.Utf8, "n_latents": pl.Int64,
                                      "mean_windows": pl.Float64, "mean": pl.Float64, "mean_chance": pl.Float64,
                                      "mean_lift": pl.Float64, "n_with_chance": pl.Int64,
                                      "mean_top_tokens": pl.Float64, "mean_over_top_tokens": pl.Float64})


def _current_explanations(store: ArtifactStore, layer: str, ranges: list[str]) -> pl.DataFrame:
    """Per latent: the explanation scores read (edits applied) and the human verdict standing on
    that very version (review.py), so no verdict is shown beside an explanation it did not judge."""
    parts = [review.standing(store.read_parquet(partition_path("explanations", layer, r)), review.read_log(store, layer, r))
             for r in ranges if store.exists(partition_path("explanations", layer, r))]
    current = pl.concat(parts) if parts else pl.DataFrame(schema=review.STANDING_SCHEMA)
    return current.select("latent", "explanation", "explanation_version", pl.col("verdict").alias("review"))


def build_report(store: ArtifactStore, layer: str, checks: ChecksConfig | None = None) -> Report:
    ranges = scored_ranges(store, layer)
    if not ranges:
        raise FileNotFoundError(f"no scores for {layer} under {store.uri('scores/' + layer)}; "
                                f"materialise some scores[{layer}|…] partitions first")

    def frames(asset: str, suffix: str = "") -> list[pl.DataFrame]:
        """Each scored range's table of `asset`, where it exists; latent ids as Int64 for joins."""
        return [layout.read_partition(store, asset, layer, r, suffix).with_columns(pl.col("latent").cast(pl.Int64))
                for r in ranges if layout.partition_exists(store, asset, layer, r)]

    table = (
        pl.concat(frames("scores"), how="diagonal_relaxed")
        .join(pl.concat(frames("latent_shards", ".stats")).select("latent", "n_firing", "density", "max_act"),
              on="latent", how="left")
        .join(_current_explanations(store, layer, ranges), on="latent", how="left")
        .sort("latent")
    )
    usage = [store.read_json(p) for asset in ("explanations", "scores", "intervention_scores")
             for p in store.list(f"{asset}/{layer}") if p.endswith(".usage.json")]
    cost = sum(u.get("llm_cost_usd", 0.0) for u in usage)
    requests = sum(u.get("llm_requests", 0) for u in usage)

    counts = dict(table.group_by("status").len().iter_rows())
    sections = [f"## {layer}: {table.height} latents in {len(ranges)} ranges",
                f"scored {counts.get('ok', 0)}, failed {counts.get('failed', 0)}, "
                f"unscored {counts.get('unscored', 0)}; failed answers {int(table['n_failed'].sum())}; "
                f"LLM requests {requests}, cost ${cost:.4f}"]
    metadata: dict[str, Any] = {"n_latents": table.height, "n_ranges": len(ranges),
                                "n_reviewed": int(table["review"].is_not_null().sum()) if "review" in table.columns else 0,
                                "n_scored": counts.get("ok", 0), "llm_cost_usd": round(cost, 6),
                                "llm_requests": requests}
    lifts = lift_table(table)
    sections += ["### Lift over chance per scorer (explanation vs a shuffled explanation, same windows)",
                 markdown_table(lifts)]
    for r in lifts.iter_rows(named=True):
        key = f"{r['scorer']}_{r['metric']}"
        metadata |= {f"mean_{key}": r["mean"], f"mean_{key}_chance": r["mean_chance"],
                     f"mean_{key}_lift": r["mean_lift"], f"n_latents_{key}": r["n_latents"]}
        if r["mean_top_tokens"] is not None:  # what the LLM adds over naming the top tokens
            metadata[f"mean_{key}_over_top_tokens"] = r["mean_over_top_tokens"]
    for s, m in SCORE_METRICS:
        score = f"{s}_{m}"
        if score not in table.columns:
            continue
        values = [v for v in table[score].to_list() if v is not None and not math.isnan(v)]
        if not values:
            continue
        sections += [f"### {score}: histogram (n={len(values)}, mean {sum(values) / len(values):.3f})",
                     histogram(values),
                     f"### {score} and its lift vs firing density", markdown_table(by_frequency(table, score))]
    checks = checks or ChecksConfig()
    flagged = review_queue(table, list(SCORERS), checks.review_min_lift, checks.review_max_disagreement)
    metadata["n_flagged_for_review"] = flagged.height
    sections += [f"### For human review: {flagged.height} latents (lift over chance < {checks.review_min_lift}, "
                 f"or scorers disagree by more than {checks.review_max_disagreement})",
                 markdown_table(flagged.join(table.select("latent", "explanation"), on="latent", how="left"),
                                max_rows=30, max_chars=160)]
    shown = [c for c in ("latent", "status", "explanation", "review", "detection_auroc", "detection_auroc_lift",
                         "embedding_auroc", "embedding_auroc_lift", "density", "n_failed") if c in table.columns]
    best = next((f"{s}_{m}_lift" for s, m in SCORE_METRICS if f"{s}_{m}_lift" in table.columns
                 and table[f"{s}_{m}_lift"].drop_nulls().len()), "latent")
    sections += [f"### Best explained latents (by {best})",
                 markdown_table(table.sort(best, descending=True, nulls_last=True).select(shown), max_rows=10)]
    return Report(table, "\n\n".join(sections), metadata)
