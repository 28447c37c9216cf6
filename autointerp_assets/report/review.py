"""Human review of explanations: accept, reject or edit, as an append-only log keyed by the
version of the explanation reviewed.

    reviews/<layer>/<range>/<time>-<id>.json   one file per review, never rewritten

One file per review makes appending atomic and free of read-modify-write: two reviewers at
once each add a file and neither can lose the other's. A review names the version of the
explanation it judged (`explanation_version`: a digest of latent, text, author and parent);
it stands only while that explanation is the current one. An edit makes a new explanation
(author: the reviewer, parent: the version edited), which scores read instead of the
explainer's text and later reviews can judge in turn. When the explainer writes a new
explanation, earlier reviews no longer apply: the report never shows a verdict beside an
explanation nobody reviewed.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

import polars as pl

from ..store.store import ArtifactStore

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
Verdict = Literal["accept", "reject", "edit"]
VERDICTS = ("accept", "reject", "edit")
STANDING_SCHEMA = {
    "latent": pl.Int64,
    "explanation": pl.Utf8,  # the current explanation: the explainer's, or the last edit of it
    "explanation_version": pl.Utf8,
    "explainer_explanation": pl.Utf8,  # what the explainer wrote
    "verdict": pl.Utf8,  # the verdict standing on `explanation_version`; null: unreviewed
    "reviewer": pl.Utf8,
    "reviewed_at": pl.Utf8,
    "n_reviews": pl.Int64,  # every review of this latent in the log
    "n_superseded": pl.Int64,  # reviews of explanations that are no longer current
}


class ReviewError(ValueError):
    pass


@dataclass(frozen=True)
class Review:
    latent: int
    verdict: str
    explanation_version: str  # of the explanation judged
    explanation: str  # its text, as the reviewer saw it
    edited: str | None  # the new text, for an edit
    reviewer: str
    reviewed_at: str  # ISO 8601 UTC, microseconds: the log's order
    review_id: str


def explanation_version(latent: int, text: str, author: str | None, parent: str | None) -> str:
    """Digest of an explanation: the explainer's (author: its model, parent: the prompt
    version) or an edit (author: reviewer:<name>, parent: the version edited)."""
    payload = "\x1f".join([str(latent), text, author or "", parent or ""])
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def log_dir(layer: str, latent_range: str) -> str:
    return f"reviews/{layer}/{latent_range}"


def read_log(store: ArtifactStore, layer: str, latent_range: str) -> list[Review]:
    """Every review of the partition, oldest first."""
    paths = [p for p in store.list(log_dir(layer, latent_range)) if p.endswith(".json")]
    reviews = [Review(**store.read_json(p)) for p in paths]
    return sorted(reviews, key=lambda r: (r.reviewed_at, r.review_id))


def append(store: ArtifactStore, layer: str, latent_range: str, review: Review) -> str:
    """Write one review as its own file (atomic, never overwritten); returns its path."""
    stamp = review.reviewed_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = f"{log_dir(layer, latent_range)}/{stamp}-{review.review_id}.json"
    store.write_json(path, asdict(review))
    return path


def standing(explanations: pl.DataFrame, log: list[Review]) -> pl.DataFrame:
    """Per explained latent: the current explanation (edits applied in log order) and the
    verdict standing on it. A review of any other version is counted as superseded."""
    rows = []
    for row in explanations.filter(pl.col("status") == "ok").sort("latent").iter_rows(named=True):
        latent = int(row["latent"])
        text = row["explanation"]
        version = explanation_version(latent, text, row["explainer_model"], row["prompt_version"])
        verdict = reviewer = reviewed_at = None
        mine = [r for r in log if r.latent == latent]
        applied = 0
        for r in mine:
            if r.explanation_version != version:
                continue
            applied += 1
            verdict, reviewer, reviewed_at = r.verdict, r.reviewer, r.reviewed_at
            if r.verdict == "edit":
                text = r.edited or text
                version = explanation_version(latent, text, f"reviewer:{r.reviewer}", r.explanation_version)
        rows.append({"latent": latent, "explanation": text, "explanation_version": version,
                     "explainer_explanation": row["explanation"], "verdict": verdict, "reviewer": reviewer,
                     "reviewed_at": reviewed_at, "n_reviews": len(mine), "n_superseded": len(mine) - applied})
    return pl.DataFrame(rows, schema=STANDING_SCHEMA)


def new_review(current: pl.DataFrame, latent: int, verdict: str, reviewer: str, edited: str | None = None,
               expected_version: str | None = None, now: datetime | None = None) -> Review:
    """A review of `latent`'s current explanation (`current`: the output of `standing`).
    `expected_version`: the version the reviewer looked at; refused if it is no longer current."""
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict '{verdict}' is not one of {', '.join(VERDICTS)}")
    rows = current.filter(pl.col("latent") == latent)
    if rows.is_empty():
        raise ReviewError(f"latent {latent} has no explanation in this range to review (not explained, failed or "
                          "skipped); check the latent and the range")
    row = rows.row(0, named=True)
    if expected_version and expected_version != row["explanation_version"]:
        raise ReviewError(f"latent {latent}'s explanation changed since version {expected_version}: it is now "
                          f"{row['explanation_version']} ({row['explanation']!r}); review that one")
    if verdict == "edit" and not (edited and edited.strip()):
        raise ReviewError("an edit needs the new explanation text (--text, or `text` in the run config)")
    if verdict != "edit" and edited:
        raise ReviewError(f"a text only goes with 'edit', not '{verdict}'")
    if not reviewer.strip():
        raise ReviewError("a review needs a reviewer name (--reviewer or $USER, or `reviewer` in the run config)")
    return Review(
        latent=latent, verdict=verdict, explanation_version=row["explanation_version"],
        explanation=row["explanation"], edited=edited.strip() if verdict == "edit" and edited else None,
        reviewer=reviewer.strip(), reviewed_at=(now or datetime.now(UTC)).isoformat(timespec="microseconds"),
        review_id=uuid.uuid4().hex[:8],
    )


def apply_edits(explanations: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """The explanations with each edited latent's text replaced by its current edit: what scores read."""
    edits = current.filter(pl.col("explanation") != pl.col("explainer_explanation")).select(
        "latent", pl.col("explanation").alias("_edited"))
    if edits.is_empty():
        return explanations
    return (explanations.join(edits, on="latent", how="left")
            .with_columns(pl.coalesce("_edited", "explanation").alias("explanation")).drop("_edited"))


def edits_digest(current: pl.DataFrame) -> str:
    """What scores depend on: the edited texts in force (accept/reject change nothing)."""
    edits = current.filter(pl.col("explanation") != pl.col("explainer_explanation")).select("latent", "explanation")
    payload = "\n".join(f"{latent}\x1f{text}" for latent, text in edits.sort("latent").iter_rows())
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
