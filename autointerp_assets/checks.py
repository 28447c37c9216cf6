"""Asset checks on each latent-range partition: pure checks over the partition's tables,
and one partitioned multi-check per asset (one step per asset in a run, not one per check).

Blocking checks are the ones where going on would produce garbage: a schema the next
stage cannot read, explanation examples leaking into the test set, an empty shard, an
LLM that failed too often. Their failure fails the run before the next asset starts.
The others (dead latents, density) warn, and so does the escalation check on `scores`,
which lists the latents that need a human (scoring.summary.review_queue).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from resources.storage import Storage

from .config import ChecksConfig
from .data.sampling import CONTEXT_SCHEMA, EXPLAIN, TEST
from .explain.explainer import EXPLANATION_SCHEMA
from .lineage import markdown_table
from .partitions import LAYER_DIM, RANGE_DIM, layer_range_partitions
from .scoring import intervention_scores
from .scoring.registry import SCORERS
from .scoring.scores import score_schema
from .scoring.summary import review_queue
from .store import layout
from .store.store import ArtifactStore


@dataclass(frozen=True)
class Outcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)  # plain values; Dagster shows lists as JSON


# -- pure checks -------------------------------------------------------------------------


def dead_fraction(stats: pl.DataFrame, max_fraction: float) -> Outcome:
    dead = int(stats["dead"].sum())
    fraction = dead / stats.height if stats.height else 0.0
    return Outcome(fraction <= max_fraction, f"{dead}/{stats.height} latents never fire (limit {max_fraction:.0%})",
                   {"dead_fraction": fraction, "n_dead": dead})


def density_bounds(stats: pl.DataFrame, max_density: float) -> Outcome:
    """Densities lie in [0, 1] (else the stats are corrupt) and none exceeds `max_density`."""
    density = stats["density"]
    too_dense = stats.filter(pl.col("density") > max_density)["latent"].to_list()
    out_of_range = int(((density < 0) | (density > 1)).sum())
    return Outcome(
        not too_dense and not out_of_range,
        f"{len(too_dense)} latent(s) fire on more than {max_density:.0%} of tokens; {out_of_range} density out of [0, 1]",
        {"max_density": float(density.max() or 0.0), "too_dense": too_dense[:50]},
    )


def not_empty(stats: pl.DataFrame) -> Outcome:
    firing = int(stats["n_firing"].sum()) if stats.height else 0
    return Outcome(firing > 0, f"{firing} non-zero activations in the range", {"n_rows": firing})


def schema_matches(frame: pl.DataFrame, expected: Mapping[str, pl.DataType]) -> Outcome:
    """Every expected column with its dtype; extra columns are allowed and listed."""
    actual = dict(frame.schema)
    missing = [c for c in expected if c not in actual]
    wrong = {c: f"{actual[c]} (want {t})" for c, t in expected.items() if c in actual and actual[c] != t}
    extra = [c for c in actual if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if wrong:
        problems.append(f"wrong types {wrong}")
    return Outcome(not problems, "; ".join(problems) or f"{len(expected)} columns as expected",
                   {"extra_columns": extra} if extra else {})


def splits_disjoint(examples: pl.DataFrame) -> Outcome:
    """Per latent: no window in both the explanation and the test split, and no two windows overlap."""
    windows = examples.select("latent", "split", "seq", "start", pl.col("tokens").list.len().alias("length"))
    shared = (windows.group_by("latent", "seq", "start").agg(pl.col("split").n_unique().alias("n_splits"))
              .filter(pl.col("n_splits") > 1))
    ordered = windows.sort("latent", "seq", "start").with_columns(
        pl.col("start").shift(-1).over("latent", "seq").alias("next_start"))
    overlapping = ordered.filter(pl.col("next_start") < pl.col("start") + pl.col("length"))
    bad = sorted(set(shared["latent"].to_list()) | set(overlapping["latent"].to_list()))
    n_per_split = {s: int((examples["split"] == s).sum()) for s in (EXPLAIN, TEST)}
    return Outcome(
        not bad,
        f"{shared.height} window(s) in both splits, {overlapping.height} overlapping pair(s)",
        {"latents_affected": bad[:50], **{f"n_{s}": n for s, n in n_per_split.items()}},
    )


def _rate(failed: int, attempted: int) -> float:
    return failed / attempted if attempted else 0.0


def latent_failures(table: pl.DataFrame, max_rate: float, what: str = "explanations") -> Outcome:
    """Share of attempted latents (ok or failed; not skipped or unscored ones) whose `what` failed."""
    failed = int((table["status"] == "failed").sum())
    attempted = failed + int((table["status"] == "ok").sum())
    rate = _rate(failed, attempted)
    return Outcome(rate <= max_rate, f"{failed}/{attempted} {what} failed (limit {max_rate:.0%})",
                   {"failure_rate": rate})


def score_failures(table: pl.DataFrame, max_rate: float) -> Outcome:
    """Share of scored latents that failed outright, and of scorer answers that failed."""
    failed = int((table["status"] == "failed").sum())
    attempted = failed + int((table["status"] == "ok").sum())
    bad_answers = int(table["n_failed"].sum())
    answers = bad_answers + sum(int(table[f"{s}_n"].sum()) for s in SCORERS if f"{s}_n" in table.columns)
    latent_rate, answer_rate = _rate(failed, attempted), _rate(bad_answers, answers)
    return Outcome(
        max(latent_rate, answer_rate) <= max_rate,
        f"{failed}/{attempted} latents and {bad_answers}/{answers} answers failed (limit {max_rate:.0%})",
        {"latent_failure_rate": latent_rate, "answer_failure_rate": answer_rate},
    )


def needs_review(table: pl.DataFrame, min_lift: float, max_disagreement: float) -> Outcome:
    """Scored latents whose explanation does not beat chance by `min_lift`, or whose scorers disagree."""
    flagged = review_queue(table, list(SCORERS), min_lift, max_disagreement)
    scored = int((table["status"] == "ok").sum())
    return Outcome(
        flagged.is_empty(),
        f"{flagged.height}/{scored} scored latents need review (lift over chance < {min_lift}, or scorers "
        f"disagree by more than {max_disagreement})",
        {"n_flagged": flagged.height, "flagged_latents": flagged["latent"].to_list()[:200],
         "flagged": markdown_table(flagged, max_rows=50, max_chars=160)},
    )


# -- Dagster wrappers -----------------------------------------------------------------------

CheckFn = Callable[[pl.DataFrame, ChecksConfig], Outcome]


@dataclass(frozen=True)
class CheckDef:
    name: str
    blocking: bool
    description: str
    run: CheckFn


# asset -> (which of its files the checks read: the suffix after <range>, the checks)
CHECKS: dict[str, tuple[str, list[CheckDef]]] = {
    "latent_shards": (".stats", [
        CheckDef("not_empty", True, "The range has at least one non-zero activation.",
                 lambda t, c: not_empty(t)),
        CheckDef("dead_fraction", False, "Share of never-firing latents is at most checks.max_dead_fraction.",
                 lambda t, c: dead_fraction(t, c.max_dead_fraction)),
        CheckDef("density_bounds", False, "No latent fires on more than checks.max_latent_density of tokens.",
                 lambda t, c: density_bounds(t, c.max_latent_density)),
    ]),
    "contexts": ("", [
        CheckDef("schema", True, "Columns and dtypes of sampling.CONTEXT_SCHEMA.",
                 lambda t, c: schema_matches(t, CONTEXT_SCHEMA)),
        CheckDef("disjoint_splits", True, "Explanation and test windows share nothing; no windows overlap.",
                 lambda t, c: splits_disjoint(t)),
    ]),
    "explanations": ("", [
        CheckDef("schema", True, "Columns and dtypes of explaining.EXPLANATION_SCHEMA.",
                 lambda t, c: schema_matches(t, EXPLANATION_SCHEMA)),
        CheckDef("failure_rate", True, "Failed explanations are at most checks.max_failure_rate of attempted.",
                 lambda t, c: latent_failures(t, c.max_failure_rate)),
    ]),
    "scores": ("", [
        CheckDef("schema", True, "Columns and dtypes of scoring.score_schema().",
                 lambda t, c: schema_matches(t, score_schema())),
        CheckDef("failure_rate", True, "Failed latents and answers are at most checks.max_failure_rate.",
                 lambda t, c: score_failures(t, c.max_failure_rate)),
        CheckDef("needs_review", False, "Escalation: latents whose explanation beats its chance baseline by less "
                 "than checks.review_min_lift, or whose scorers disagree by more than "
                 "checks.review_max_disagreement, listed for human review.",
                 lambda t, c: needs_review(t, c.review_min_lift, c.review_max_disagreement)),
    ]),
    "intervention_scores": ("", [
        CheckDef("schema", True, "Columns and dtypes of scoring.intervention_scores.schema().",
                 lambda t, c: schema_matches(t, intervention_scores.schema())),
        CheckDef("failure_rate", True, "Steered latents whose every request failed are at most "
                 "checks.max_failure_rate.", lambda t, c: latent_failures(t, c.max_failure_rate, "intervention scores")),
    ]),
}


def run_checks(store: ArtifactStore, asset: str, layer: str, latent_range: str, cfg: ChecksConfig) -> dict[str, Outcome]:
    """Every check of one partition, by name: what the Dagster check runs, callable without Dagster."""
    suffix, defs = CHECKS[asset]
    table = layout.read_partition(store, asset, layer, latent_range, suffix)
    return {d.name: d.run(table, cfg) for d in defs}


def _multi_check(asset: str, defs: list[CheckDef], cfg: ChecksConfig) -> dg.AssetChecksDefinition:
    specs = [dg.AssetCheckSpec(d.name, asset=asset, blocking=d.blocking, description=d.description,
                               partitions_def=layer_range_partitions) for d in defs]
    blocking = {d.name: d.blocking for d in defs}

    @dg.multi_asset_check(specs=specs, name=f"{asset}_checks")
    def checks(context: dg.AssetCheckExecutionContext, storage: Storage):
        dims = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
        outcomes = run_checks(storage.store(), asset, dims[LAYER_DIM], dims[RANGE_DIM], cfg)
        for name, outcome in outcomes.items():
            yield dg.AssetCheckResult(
                check_name=name, asset_key=asset, passed=outcome.passed, description=outcome.description,
                metadata=outcome.metadata,
                severity=dg.AssetCheckSeverity.ERROR if blocking[name] else dg.AssetCheckSeverity.WARN,
            )

    return checks


def build_asset_checks(cfg: ChecksConfig) -> list[dg.AssetChecksDefinition]:
    return [_multi_check(asset, defs, cfg) for asset, (_, defs) in CHECKS.items()]
