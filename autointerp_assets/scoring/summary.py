"""What a `scores` table says at a glance (asset metadata), and which latents go to human review.

Escalation (`review_queue`) is the path from cheap metrics to people: a scored latent is flagged
when an explanation does not beat its chance baseline by `min_lift` with some scorer (the lift of
its AUROC, else of its balanced accuracy, else simulation's r), or when two scorers' lifts differ by more than
`max_disagreement`. Without a chance baseline nothing says the score means anything, so that
is flagged too.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .registry import SCORERS

PRIMARY = ("auroc", "balanced_accuracy", "r")  # the metric a scorer's lift is judged by, in order of preference
REVIEW_SCHEMA = {"latent": pl.Int64, "reasons": pl.Utf8}


def primary_lift(row: dict, scorer: str) -> tuple[str, float | None] | None:
    """(metric, lift) of the first PRIMARY metric the scorer reported for this row; None when it did not run."""
    for m in PRIMARY:
        if m in SCORERS[scorer].metrics and row.get(f"{scorer}_{m}") is not None:
            return m, row.get(f"{scorer}_{m}_lift")
    return None


def review_queue(table: pl.DataFrame, kinds: Sequence[str], min_lift: float, max_disagreement: float) -> pl.DataFrame:
    """One row per flagged latent with every reason, sorted by latent."""
    flagged = []
    for row in table.filter(pl.col("status") == "ok").sort("latent").iter_rows(named=True):
        reasons, lifts = [], {}
        for s in kinds:
            judged = primary_lift(row, s)
            if judged is None:
                continue
            metric, lift = judged
            if lift is None:
                reasons.append(f"{s}: no chance baseline for {metric}")
                continue
            lifts[s] = lift
            if lift < min_lift:
                reasons.append(f"{s}: {metric} lift {lift:+.2f} over chance < {min_lift}")
        if len(lifts) > 1:
            (lo, low), (hi, high) = min(lifts.items(), key=lambda kv: kv[1]), max(lifts.items(), key=lambda kv: kv[1])
            if high - low > max_disagreement:
                reasons.append(f"scorers disagree: {hi} lift {high:+.2f} vs {lo} {low:+.2f}")
        if reasons:
            flagged.append({"latent": row["latent"], "reasons": "; ".join(reasons)})
    return pl.DataFrame(flagged, schema=REVIEW_SCHEMA)


def _mean(table: pl.DataFrame, column: str) -> float | None:
    values = table[column].drop_nulls() if column in table.columns else None
    return float(values.mean()) if values is not None and values.len() else None  # type: ignore[arg-type]


def score_summary(table: pl.DataFrame, kinds: Sequence[str]) -> dict[str, float | int]:
    """Counts, and the mean of each scorer's primary metrics with chance and lift, over the scored latents."""
    counts = dict(table.group_by("status").len().iter_rows())
    scored = table.filter(pl.col("status") == "ok")
    out: dict[str, float | int] = {
        "n_scored": counts.get("ok", 0), "n_failed_latents": counts.get("failed", 0),
        "n_unscored": counts.get("unscored", 0),
        "n_unscored_test_set": int(table["reason"].str.starts_with("test set has").sum()),
        "n_failed_answers": int(table["n_failed"].sum()),
    }
    for s in kinds:
        out[f"{s}_n_copied_answers"] = int(table[f"{s}_n_copied"].sum())
        out[f"{s}_n_latents_constant_answers"] = int(table[f"{s}_answers_constant"].sum())
        for m in PRIMARY:
            if m not in SCORERS[s].metrics:
                continue
            for suffix in ("", "_chance", "_lift", "_top_tokens", "_over_top_tokens"):
                mean = _mean(scored, f"{s}_{m}{suffix}")
                if mean is not None:
                    out[f"mean_{s}_{m}{suffix}"] = round(mean, 4)
            out[f"n_latents_{s}_{m}"] = int(scored[f"{s}_{m}"].is_not_null().sum())
    return out
