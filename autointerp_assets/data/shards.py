"""Latent shards: the latent-major slice of one latent range, and per-latent stats."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

CODE_VERSION = "2"  # bump when a change here changes what the stage writes: its asset and all below go stale
STATS_QUANTILES = (0.5, 0.9, 0.99)


def latent_slice(chunks: Iterable[pl.DataFrame], latents: range) -> pl.DataFrame:
    """Rows of `latents` from token-major chunks, sorted latent-major (latent, value desc)."""
    in_range = pl.col("latent").is_between(latents.start, latents.stop - 1)
    parts = [chunk.filter(in_range) for chunk in chunks]
    rows = pl.concat(parts) if parts else pl.DataFrame(schema={"seq": pl.Int64, "pos": pl.Int32,
                                                               "latent": pl.Int32, "value": pl.Float32})
    return rows.sort(["latent", "value", "seq", "pos"], descending=[False, True, False, False])


def latent_stats(rows: pl.DataFrame, latents: range, n_tokens: int) -> pl.DataFrame:
    """One row per latent of the range, dead ones included.

    n_firing counts tokens where the latent is non-zero; density = n_firing / n_tokens;
    max, mean and quantiles are over the non-zero values.
    """
    agg = rows.group_by("latent").agg(
        pl.len().alias("n_firing"),
        pl.col("value").max().alias("max_act"),
        pl.col("value").mean().alias("mean_act"),
        *[pl.col("value").quantile(q, "linear").alias(f"q{round(q * 100)}_act") for q in STATS_QUANTILES],
    )
    every = pl.DataFrame({"latent": pl.Series(list(latents), dtype=pl.Int32)})
    stats = every.join(agg, on="latent", how="left").with_columns(pl.col("n_firing").fill_null(0).cast(pl.Int64))
    return stats.with_columns(
        (pl.col("n_firing") / n_tokens).alias("density"),
        (pl.col("n_firing") == 0).alias("dead"),
    ).sort("latent")
