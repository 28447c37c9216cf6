"""Per-layer roll-up of every scored latent range: one table, histograms, score vs frequency, cost.

Plots are drawn as Markdown (Unicode bars) so they show in the Dagster UI with no
image pipeline; the full table is written as parquet next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..lineage import markdown_table
from ..store import layout
from ..store.store import ArtifactStore, partition_path
from . import review

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
SCORE_COLUMNS = ("detection_balanced_accuracy", "fuzzing_balanced_accuracy", "detection_auroc", "fuzzing_auroc",
                 "embedding_auroc")
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
    """Mean score per decade of firing density (log10 buckets)."""
    return (
        table.filter(pl.col(score).is_not_null() & (pl.col("density") > 0))
        .with_columns(pl.col("density").log10().floor().cast(pl.Int32).alias("log10_density"))
        .group_by("log10_density")
        .agg(pl.len().alias("n_latents"), pl.col(score).mean().alias(f"mean_{score}"))
        .sort("log10_density")
    )


def _current_explanations(store: ArtifactStore, layer: str, ranges: list[str]) -> pl.DataFrame:
    """Per latent: the explanation scores read (edits applied) and the human verdict standing on
    that very version (review.py), so no verdict is shown beside an explanation it did not judge."""
    parts = [review.standing(store.read_parquet(partition_path("explanations", layer, r)), review.read_log(store, layer, r))
             for r in ranges if store.exists(partition_path("explanations", layer, r))]
    current = pl.concat(parts) if parts else pl.DataFrame(schema=review.STANDING_SCHEMA)
    return current.select("latent", "explanation", "explanation_version", pl.col("verdict").alias("review"))


def build_report(store: ArtifactStore, layer: str) -> Report:
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
    usage = [store.read_json(p) for asset in ("explanations", "scores")
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
    for score in SCORE_COLUMNS:
        if score not in table.columns:
            continue
        values = [v for v in table[score].to_list() if v is not None and not math.isnan(v)]
        if not values:
            continue
        metadata[f"mean_{score}"] = sum(values) / len(values)
        sections += [f"### {score}: histogram (n={len(values)}, mean {metadata[f'mean_{score}']:.3f})",
                     histogram(values),
                     f"### {score} vs firing density", markdown_table(by_frequency(table, score))]
    shown = [c for c in ("latent", "status", "explanation", "review", "detection_balanced_accuracy",
                         "fuzzing_balanced_accuracy", "density", "n_failed") if c in table.columns]
    sections += ["### Best explained latents",
                 markdown_table(table.sort("detection_balanced_accuracy", descending=True, nulls_last=True)
                                .select(shown), max_rows=10)]
    return Report(table, "\n\n".join(sections), metadata)
