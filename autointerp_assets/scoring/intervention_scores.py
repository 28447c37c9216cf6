"""The `intervention_scores` table: the intervention scorer (`intervention.py`) over one partition,
with n, a chance baseline and lift like every other score.

Each explained latent is steered (`intervention.steer_latents`); its explanation is then read after
its own continuations, after those of `negative_latents` other latents of the partition (a seeded
draw) and after the clean ones. The chance baseline reads the explanation of its `chance.donors`
latent after exactly the same continuations. The donor's own continuations are never among the
negatives, in either run: the shuffled explanation would pick them out and push the chance AUROC
below 0.5, flattering the lift.

Columns (one row per latent of the explanations table, sorted by latent):
  latent, status ("ok" | "unscored" | "failed"), reason (why unscored/failed, partial failures,
  a null AUROC; null when nothing to say), n_failed / n_failed_chance (failed LLM requests of
  the explanation / chance run), chance_latent, negative_latents, steering_kl (mean next-token KL
  at the calibrated strength), and for m in (score, auroc):
  intervention_m, _n, _chance, _chance_n, _lift. `score` is the paper's: the mean delta over the
  latent's own continuations (n: continuations); `auroc` separates them from the negatives by
  delta (n: continuations, own + negatives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..config import InterventionConfig
from ..errors import UserError
from ..llm.api import ChatLLM, PromptScore
from . import chance, metrics
from .intervention import PROMPT_VERSION, Continuation, LatentDeltas, SteeringConfig, deltas, requests_for

CODE_VERSION = "1"  # bump when a change here or in intervention.py changes what the asset writes
NEGATIVE_STREAM = 6151  # separates the negatives' draw from every other use of (seed, latent)
METRICS = ("score", "auroc")
DEAD = "decoder row is zero (a dead latent): steering it changes nothing"


class InterventionInputError(UserError):
    """A coder or latent range that cannot be steered."""


def schema() -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {
        "latent": pl.Int64(), "status": pl.Utf8(), "reason": pl.Utf8(),
        "n_failed": pl.Int64(), "n_failed_chance": pl.Int64(), "chance_latent": pl.Int64(),
        "negative_latents": pl.List(pl.Int64()), "steering_kl": pl.Float64(),
    }
    for m in METRICS:
        out |= {f"intervention_{m}": pl.Float64(), f"intervention_{m}_n": pl.Int64(),
                f"intervention_{m}_chance": pl.Float64(), f"intervention_{m}_chance_n": pl.Int64(),
                f"intervention_{m}_lift": pl.Float64()}
    return out | {"scorer_model": pl.Utf8(), "prompt_version": pl.Utf8()}


# What the `scores` table carries of a steered range: the metrics, and the failed requests.
JOINED: dict[str, pl.DataType] = {c: t for c, t in schema().items() if c.startswith("intervention_")} | {
    "intervention_n_failed": pl.Int64()}


def steering_config(cfg: InterventionConfig) -> SteeringConfig:
    return SteeringConfig(target_kl=cfg.target_kl, multipliers=tuple(cfg.multipliers),
                          max_new_tokens=cfg.max_new_tokens)


def corpus_prompts(tokens: np.ndarray, n: int, length: int) -> list[list[int]]:
    """The first `n` rows of `tokens` [n_seq, ctx_len], each cut to its first `length` tokens.
    Fixed for a corpus (its windows are shuffled by corpus.seed, so usually different documents)
    and the same for every latent: only the steering differs between continuations."""
    if tokens.shape[0] < n or tokens.shape[1] < length:
        raise InterventionInputError(
            f"the corpus has {tokens.shape[0]} analysed windows of {tokens.shape[1]} tokens; intervention needs "
            f"{n} of {length}: lower intervention.n_prompts / intervention.prompt_tokens or enlarge the corpus")
    return [[int(t) for t in row[:length]] for row in np.asarray(tokens[:n])]


def check_steerable(coder: object, latents: Sequence[int]) -> None:
    """Fail before any generation when the coder has no decoder directions or lacks a latent."""
    if not callable(getattr(coder, "directions", None)):
        raise InterventionInputError(
            f"the coder ({type(coder).__name__}) has no decoder directions (SparseCoder.directions), so its latents "
            "cannot be steered; use a topk, jumprelu, relu or neurons coder for intervention_scores")
    n = int(getattr(coder, "n_latents", 0))
    beyond = [latent for latent in latents if not 0 <= latent < n]
    if beyond:
        raise InterventionInputError(f"latents {beyond[:5]} are beyond the coder's {n} latents; "
                                     f"materialise intervention_scores only for ranges below {n:05d}")


def steered_latents(explanations: pl.DataFrame) -> list[int]:
    """The latents worth steering: those with a usable explanation."""
    return sorted(r["latent"] for r in explanations.iter_rows(named=True) if r["status"] == "ok" and r["explanation"])


def continuations_table(continuations: Sequence[Continuation]) -> pl.DataFrame:
    """What steering wrote, stored beside the scores (latent null: the clean continuation)."""
    return pl.DataFrame([vars(c) for c in continuations], schema={
        "latent": pl.Int64(), "multiplier": pl.Float64(), "prompt": pl.Int64(), "text": pl.Utf8(), "kl": pl.Float64()})


@dataclass(frozen=True)
class _Run:
    """One latent's requests with one explanation: answers[start : start + len(continuations)]."""

    latent: int
    chance: bool
    continuations: list[Continuation]
    negatives: set[int]
    start: int


def _negatives(latent: int, steered: Sequence[int], donor: int | None, k: int, seed: int) -> list[int]:
    pool = [o for o in steered if o not in (latent, donor)]
    rng = np.random.default_rng([seed, latent, NEGATIVE_STREAM])
    return sorted(int(o) for o in rng.choice(pool, size=min(k, len(pool)), replace=False)) if pool else []


def _metrics(d: LatentDeltas, min_auroc_n: int) -> tuple[dict[str, tuple[float | None, int]], str | None]:
    """{metric: (value, n)} of one run, and why the AUROC is null when it is."""
    score = (float(np.mean(d.own)) if d.own else None, len(d.own))
    n = len(d.own) + len(d.others)
    why = (f"{n} continuations scored < scorer.min_auroc_n={min_auroc_n}" if n < min_auroc_n else
           "no negatives (no other latent of the partition was steered)" if not d.others else
           "no own continuation scored" if not d.own else None)
    value = None if why else metrics.auroc([1] * len(d.own) + [0] * len(d.others), d.own + d.others)
    return {"score": score, "auroc": (value, n)}, why


def _failures(run: str, answers: Sequence[PromptScore]) -> tuple[int, str | None]:
    failed = [a for a in answers if not a.ok]
    note = f"{run}: {len(failed)}/{len(answers)} requests failed, e.g. {failed[0].error}" if failed else None
    return len(failed), note


def score_interventions(explanations: pl.DataFrame, continuations: Sequence[Continuation], llm: ChatLLM, *,
                        seed: int, chance_baseline: bool = True, negative_latents: int = 8,
                        min_auroc_n: int = 10) -> pl.DataFrame:
    """One row per latent of `explanations` (latent, status, explanation, reason); see `schema()`.
    `continuations` are `steer_latents`' for `steered_latents(explanations)`: an explained latent
    without any was skipped there for its zero decoder row. Every request of the partition goes
    in one `llm.score_prompts` call."""
    rows = list(explanations.sort("latent").iter_rows(named=True))
    explained = {r["latent"]: r["explanation"] for r in rows if r["status"] == "ok" and r["explanation"]}
    steered = sorted({c.latent for c in continuations if c.latent is not None})
    clean = [c for c in continuations if c.latent is None]
    by_latent: dict[int, list[Continuation]] = {}
    for c in continuations:
        if c.latent is not None:
            by_latent.setdefault(c.latent, []).append(c)
    donors = chance.donors(explained, seed) if chance_baseline else {}

    records: dict[int, dict] = {}
    runs: list[_Run] = []
    requests = []
    for r in rows:
        latent = r["latent"]
        why = (f"explanation {r['status']}" + (f": {r['reason']}" if r["reason"] else "")
               if latent not in explained else None if latent in by_latent else DEAD)
        records[latent] = {"latent": latent, "status": "unscored" if why else "ok", "reason": why,
                           "n_failed": 0, "n_failed_chance": 0, "scorer_model": llm.model_name,
                           "prompt_version": PROMPT_VERSION}
        if why:
            continue
        donor = donors.get(latent)
        negatives = _negatives(latent, steered, donor, negative_latents, seed)
        records[latent] |= {"chance_latent": donor, "negative_latents": negatives,
                            "steering_kl": by_latent[latent][0].kl}
        subset = clean + by_latent[latent] + [c for o in negatives for c in by_latent[o]]
        texts = {False: explained[latent]} | ({True: explained[donor]} if donor is not None else {})
        for is_chance, text in texts.items():
            runs.append(_Run(latent, is_chance, subset, set(negatives), len(requests)))
            requests += requests_for(text, subset)

    answers = llm.score_prompts(requests) if requests else []
    notes: dict[int, list[str]] = {latent: [] for latent, rec in records.items() if rec["status"] == "ok"}
    for run in runs:
        mine = answers[run.start : run.start + len(run.continuations)]
        values, why_null = _metrics(deltas(run.latent, run.continuations, mine, run.negatives), min_auroc_n)
        record, suffix = records[run.latent], "_chance" if run.chance else ""
        record[f"n_failed{suffix}"], note = _failures("chance run" if run.chance else "explanation run", mine)
        notes[run.latent] += [n for n in (note,) if n]
        for m, (value, n) in values.items():
            record |= {f"intervention_{m}{suffix}": value, f"intervention_{m}{suffix}_n": n}
        if not run.chance and why_null and record["intervention_score"] is not None:
            notes[run.latent].append(f"intervention_auroc null: {why_null}")

    for latent, note in notes.items():
        record = records[latent]
        for m in METRICS:
            record[f"intervention_{m}_lift"] = metrics.lift(record.get(f"intervention_{m}"),
                                                            record.get(f"intervention_{m}_chance"))
        if record.get("intervention_score") is None:
            record["status"] = "failed"  # no own continuation could be scored: every such request failed
        if chance_baseline and latent not in donors:
            note.append("no chance baseline: no other latent of the partition has an explanation to lend")
        record["reason"] = "; ".join(note) or None

    out = schema()
    return pl.DataFrame(list(records.values()), schema=out, strict=False).select(list(out))


def summary(table: pl.DataFrame) -> dict[str, float | int]:
    """Counts, and the mean of each metric with its chance and lift over the scored latents."""
    counts = dict(table.group_by("status").len().iter_rows())
    scored = table.filter(pl.col("status") == "ok")
    out: dict[str, float | int] = {
        "n_scored": counts.get("ok", 0), "n_failed_latents": counts.get("failed", 0),
        "n_unscored": counts.get("unscored", 0), "n_dead": int((table["reason"] == DEAD).sum()),
        "n_failed_requests": int(table["n_failed"].sum() + table["n_failed_chance"].sum()),
    }
    for m in METRICS:
        for suffix in ("", "_chance", "_lift"):
            values = scored[f"intervention_{m}{suffix}"].drop_nulls()
            if values.len():
                out[f"mean_intervention_{m}{suffix}"] = round(float(values.mean()), 4)  # type: ignore[arg-type]
    return out
