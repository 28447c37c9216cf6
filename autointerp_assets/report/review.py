"""Human review of explanations: accept, reject or edit, kept as an append-only history.

    reviews/<layer>/<range>.parquet   one row per review; the latest row of a latent wins

Each row names the reviewer, the time, the verdict, the explanation as reviewed and as
kept, and the prompt version that produced it, so a reviewed explanation keeps its lineage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import polars as pl

Verdict = Literal["accept", "reject", "edit"]
REVIEW_SCHEMA = {
    "latent": pl.Int64,
    "verdict": pl.Utf8,
    "explanation": pl.Utf8,  # what stands after the review (the edit, or the original)
    "original_explanation": pl.Utf8,  # what the explainer wrote
    "prompt_version": pl.Utf8,
    "explainer_model": pl.Utf8,
    "reviewer": pl.Utf8,
    "reviewed_at": pl.Utf8,  # ISO 8601, UTC
}


class ReviewError(ValueError):
    pass


def add_review(history: pl.DataFrame | None, explanations: pl.DataFrame, latent: int, verdict: Verdict,
               reviewer: str, edited: str | None = None, now: datetime | None = None) -> pl.DataFrame:
    """The history with one more review appended."""
    rows = explanations.filter(pl.col("latent") == latent)
    if rows.is_empty():
        raise ReviewError(f"latent {latent} is not in this range's explanations; check the latent and the range")
    row = rows.row(0, named=True)
    if row["status"] != "ok":
        raise ReviewError(f"latent {latent} has no explanation to review (status {row['status']}: {row['reason']})")
    if verdict == "edit" and not (edited and edited.strip()):
        raise ReviewError("an edit needs the new explanation text (--text)")
    if verdict != "edit" and edited:
        raise ReviewError(f"--text only goes with 'edit', not '{verdict}'")
    if not reviewer.strip():
        raise ReviewError("a review needs a reviewer name (--reviewer or $USER)")
    review = pl.DataFrame([{
        "latent": latent, "verdict": verdict,
        "explanation": edited.strip() if verdict == "edit" and edited else row["explanation"],
        "original_explanation": row["explanation"], "prompt_version": row["prompt_version"],
        "explainer_model": row["explainer_model"], "reviewer": reviewer,
        "reviewed_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }], schema=REVIEW_SCHEMA)
    return review if history is None else pl.concat([history, review])


def latest_reviews(history: pl.DataFrame) -> pl.DataFrame:
    """The standing review of each latent: its last row."""
    return history.with_row_index("_order").sort("_order").group_by("latent").last().drop("_order").sort("latent")
