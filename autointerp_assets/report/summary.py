"""A partition's results as plain text for a terminal: each explanation beside its scores and
their lift over chance (where the scorers report a `<metric>_chance`), and what it cost."""

from __future__ import annotations

import math
import textwrap

import polars as pl

from ..store.store import ArtifactStore, partition_path
from . import review
from .rollup import SCORE_METRICS

# Each scorer's short column label, in the order shown.
SHORT = {"detection": "detect", "fuzzing": "fuzz", "embedding": "embed", "surprisal": "surpr",
         "simulation": "sim", "intervention": "steer"}
METRIC_NAMES = {"auroc": "AUROC", "balanced_accuracy": "balanced accuracy", "r": "Pearson r"}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def headlines(scores: pl.DataFrame) -> list[tuple[str, str]]:
    """(scorer, metric) per scorer that ran: the metric its lift is judged by (`PRIMARY` order, as
    the review queue judges), the first one any latent has. Likelihood mode reports AUROC only; a
    list-mode run against a server without logprobs, balanced accuracy only."""
    out: dict[str, str] = {}
    for scorer, metric in SCORE_METRICS:
        column = f"{scorer}_{metric}"
        if scorer not in out and column in scores.columns and scores[column].is_not_null().any():
            out[scorer] = metric
    return list(out.items())


def with_lift(scores: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The scores with a `<metric>_lift` for each headline metric that has a chance baseline;
    the metric and lift columns to show, in order."""
    shown = []
    for scorer, metric in headlines(scores):
        column, lift = f"{scorer}_{metric}", f"{scorer}_{metric}_lift"
        shown.append(column)
        if lift not in scores.columns and f"{column}_chance" in scores.columns:
            scores = scores.with_columns((pl.col(column) - pl.col(f"{column}_chance")).alias(lift))
        if lift in scores.columns:
            shown.append(lift)
    return scores, shown


def usage(store: ArtifactStore, layer: str, latent_range: str) -> dict[str, float]:
    """LLM requests, tokens and cost of the partition's explanations and scores (usage.json)."""
    total: dict[str, float] = {}
    for asset in ("explanations", "scores"):
        path = partition_path(asset, layer, latent_range, "usage.json")
        if store.exists(path):
            for key, value in store.read_json(path).items():
                total[key] = total.get(key, 0) + value
    return total


def partition_table(store: ArtifactStore, layer: str, latent_range: str, width: int = 48) -> str:
    explanations = store.read_parquet(partition_path("explanations", layer, latent_range))
    current = review.standing(explanations, review.read_log(store, layer, latent_range))
    counts = dict(explanations.group_by("status").len().iter_rows())
    head = (f"{layer}|{latent_range}: {explanations.height} latents: explained {counts.get('ok', 0)}, "
            f"failed {counts.get('failed', 0)}, skipped {counts.get('skipped', 0)}")
    scores_path = partition_path("scores", layer, latent_range)
    if current.is_empty() or not store.exists(scores_path):
        return head
    scores, metrics = with_lift(store.read_parquet(scores_path).with_columns(pl.col("latent").cast(pl.Int64)))
    table = current.join(scores, on="latent", how="left").sort(metrics[0] if metrics else "latent",
                                                               descending=True, nulls_last=True)
    shown = [m.split("_", 1) for m in metrics if not m.endswith("_lift")]  # [scorer, metric] pairs
    labels = ["lift" if m.endswith("_lift") else SHORT[m.split("_", 1)[0]] for m in metrics]
    lines = [head, "", f"{'latent':>6}  {'explanation':<{width}}  " + "  ".join(f"{h:>6}" for h in labels)]
    for row in table.iter_rows(named=True):
        text = textwrap.shorten(row["explanation"], width=width, placeholder="…")
        if row["verdict"]:
            text = textwrap.shorten(f"[{row['verdict']}] {row['explanation']}", width=width, placeholder="…")
        lines.append(f"{row['latent']:>6}  {text:<{width}}  " + "  ".join(f"{_fmt(row.get(m)):>6}" for m in metrics))
    means = [scores[m].drop_nans().mean() for m in metrics]
    lines.append(f"{'mean':>6}  {'':<{width}}  " + "  ".join(f"{_fmt(v):>6}" for v in means))
    lines.append("(" + ", ".join(f"{SHORT[s]}: {METRIC_NAMES[m]}" for s, m in shown)
                 + ("" if any(m.endswith("_lift") for m in metrics)
                    else "; at chance AUROC and balanced accuracy are 0.5, r is 0") + ")")
    return "\n".join(lines)


def cost_line(store: ArtifactStore, layer: str, latent_range: str) -> str:
    u = usage(store, layer, latent_range)
    return (f"LLM: {int(u.get('llm_requests', 0)):,} requests ({int(u.get('llm_cache_hits', 0)):,} from the cache), "
            f"{int(u.get('llm_prompt_tokens', 0)):,} prompt + {int(u.get('llm_completion_tokens', 0)):,} completion "
            f"tokens, ${u.get('llm_cost_usd', 0.0):.4f}; {int(u.get('llm_failures', 0))} failed requests")
