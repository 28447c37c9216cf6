"""The `scores` table: every configured scorer on every latent's held-out windows, with the
explanation and with a shuffled one (the chance baseline), metrics computed in one place.

Input `contexts` (one row per example window, from the sampling stage): only the **test** split
is used, so no scored window was shown to the explainer. A latent is scored only when its test
set has at least `sampling.min_test_positives` activating and `sampling.min_test_negatives`
non-activating windows; otherwise it is `unscored` with the counts in `reason`: a metric over
one class measures nothing.

Columns, for every scorer s of `registry.SCORERS` (null when s did not run) and every metric m
it reports (`metrics.METRICS`):
  s_m          the metric with the latent's explanation
  s_m_n        the windows it was computed on (tokens for simulation's r metrics)
  s_m_chance   the same metric with the shuffled explanation (`chance.donors`), same windows
  s_m_chance_n its n
  s_m_lift     s_m - s_m_chance
  s_m_top_tokens, s_m_top_tokens_n, s_m_over_top_tokens   with `scorer.top_tokens_baseline`: the
               same metric for the no-LLM explanation naming the explain split's top tokens
               (`top_tokens_explanation`, same windows), and how much the LLM's explanation adds
plus s_n / s_n_failed / s_n_copied (answered, failed and copied samples, explanation run) and
s_answers_constant (every answered sample got the same 0/1 answer: the answers ignore the window).
The intervention scorer runs the subject model, so it is its own asset (`intervention_scores`);
where a range has it, its metric columns (intervention_*, `intervention_scores.JOINED`) are joined
here, so one table holds every score of a latent; null where the range was never steered.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Sequence

import polars as pl

from ..config import SamplingConfig, ScorerConfig
from ..explain.explainer import top_tokens_explanations
from ..llm.api import ChatLLM
from . import chance, intervention_scores, metrics
from .base import PromptMode, ScoringContext, Task, Window, WindowScore
from .registry import SCORERS

HEADLINE_METRICS = frozenset({"auroc", "r"})  # a null one is explained in the latent's `reason`


def _metric_types(name: str) -> tuple[pl.DataType, pl.DataType]:
    if name in metrics.LIST_METRICS:
        return pl.List(pl.Float64()), pl.List(pl.Int64())
    return pl.Float64(), pl.Int64()


def score_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        "latent": pl.Int64(),
        "status": pl.Utf8(),  # "ok" | "failed" (every answer failed) | "unscored" (no usable explanation/test set)
        "reason": pl.Utf8(),  # why unscored/failed, partial failures, null metrics; null when nothing to say
        "n_failed": pl.Int64(),  # samples with a failed/unparseable/copied answer, all scorers, explanation run
        "n_test_positives": pl.Int64(),  # activating held-out windows
        "n_test_negatives": pl.Int64(),  # non-activating held-out windows
        "chance_latent": pl.Int64(),  # whose explanation was the chance baseline; null without one
        "scorer_model": pl.Utf8(),  # the LLM; null when no LLM scorer ran
        "llm_scorer_mode": pl.Utf8(),  # "likelihood" | "single" | "list"; null when no LLM scorer ran
        "prompt_versions": pl.Utf8(),  # JSON {scorer: "<mode>:<version>"} of the LLM scorers run
        "top_tokens_explanation": pl.Utf8(),  # the top-tokens baseline scored; null when not asked for
    }
    for s, scorer in SCORERS.items():
        schema |= {f"{s}_n": pl.Int64(), f"{s}_n_failed": pl.Int64(), f"{s}_n_copied": pl.Int64(),
                   f"{s}_answers_constant": pl.Boolean()}
        for m in scorer.metrics:
            value, n = _metric_types(m)
            schema |= {f"{s}_{m}": value, f"{s}_{m}_n": n, f"{s}_{m}_chance": value, f"{s}_{m}_chance_n": n,
                       f"{s}_{m}_lift": value, f"{s}_{m}_top_tokens": value, f"{s}_{m}_top_tokens_n": n,
                       f"{s}_{m}_over_top_tokens": value}
    return schema | intervention_scores.JOINED


def with_intervention(table: pl.DataFrame, steered: pl.DataFrame) -> pl.DataFrame:
    """`table` (score_schema()) with the intervention columns of `steered` (an intervention_scores table)."""
    columns = list(intervention_scores.JOINED)
    joined = steered.with_columns(intervention_n_failed=pl.col("n_failed")).select("latent", *columns)
    return table.drop(columns).join(joined, on="latent", how="left").select(list(table.columns))


def _windows(contexts: pl.DataFrame) -> dict[int, tuple[Window, ...]]:
    test = contexts.filter(pl.col("split") == "test").sort(["latent", "seq", "start"])
    out: dict[int, list[Window]] = {}
    for r in test.select("latent", "activating", "kind", "quantile", "token_strs", "acts").iter_rows(named=True):
        out.setdefault(r["latent"], []).append(
            Window(r["activating"], r["kind"], r["quantile"], tuple(r["token_strs"]), tuple(r["acts"])))
    return {k: tuple(v) for k, v in out.items()}


def _unscorable(row: dict, windows: Sequence[Window] | None, sampling: SamplingConfig, kinds: list[str]) -> str | None:
    if row["status"] != "ok" or not row["explanation"]:
        return f"explanation {row['status']}" + (f": {row['reason']}" if row["reason"] else "")
    if not windows:
        return "no test-split examples"
    pos = sum(w.activating for w in windows)
    neg = len(windows) - pos
    if pos < sampling.min_test_positives or neg < sampling.min_test_negatives:
        return (f"test set has {pos} activating and {neg} non-activating windows; scoring needs at least "
                f"sampling.min_test_positives={sampling.min_test_positives} and "
                f"sampling.min_test_negatives={sampling.min_test_negatives}")
    if not kinds:
        return "no scorers configured"
    return None


def _seed(seed: int, latent: int, scorer: str) -> tuple[int, ...]:
    return (seed, latent, zlib.crc32(scorer.encode()))  # stable when scorers are added or reordered


def _metric_columns(s: str, names: Sequence[str], runs: dict[str, dict[str, metrics.Metric]]) -> dict:
    """The columns of one scorer from its runs' metrics ("explanation" always, the baselines when run)."""
    out: dict = {}
    for m in names:
        mine = runs["explanation"][m]
        out |= {f"{s}_{m}": mine.value, f"{s}_{m}_n": mine.n}
        for run, suffix, gain in (("chance", "_chance", "_lift"), ("top_tokens", "_top_tokens", "_over_top_tokens")):
            base = runs[run][m] if run in runs else None
            out |= {f"{s}_{m}{suffix}": base.value if base else None, f"{s}_{m}{suffix}_n": base.n if base else None,
                    f"{s}_{m}{gain}": metrics.lift(mine.value, base.value) if base else None}
    return out


def _failures(s: str, answers: Sequence[WindowScore]) -> str | None:
    reasons = Counter("answer copies the prompt's worked example" if a.copied else a.failure
                      for a in answers if a.failure is not None or a.copied)
    if not reasons:
        return None
    common, _ = reasons.most_common(1)[0]
    return f"{s}: {sum(reasons.values())}/{len(answers)} samples failed, e.g. {common}"


def score_latents(
    contexts: pl.DataFrame,
    explanations: pl.DataFrame,
    llm: ChatLLM | None,
    cfg: ScorerConfig,
    sampling: SamplingConfig,
    *,
    mode: PromptMode = "list",
    encoder: Callable[[], object] | None = None,
) -> pl.DataFrame:
    """One row per latent of `explanations` (latent, status, explanation, reason), sorted by
    latent; see `score_schema()`. Each scorer gets every task of the partition (explanation and
    chance runs) in one call, so it can batch. `encoder` loads the embedding model, when needed."""
    kinds = [s for s in SCORERS if s in cfg.kinds]
    uses_llm = [s for s in kinds if SCORERS[s].uses_llm]
    if uses_llm and llm is None:
        raise ValueError(f"scorers {uses_llm} need an LLM")
    ctx = ScoringContext(cfg, sampling, llm, mode, encoder)
    windows = _windows(contexts)
    rows = list(explanations.sort("latent").iter_rows(named=True))
    explained = {r["latent"]: r["explanation"] for r in rows if r["status"] == "ok" and r["explanation"]}
    donors = chance.donors(explained, sampling.seed) if cfg.chance_baseline else {}
    top_tokens = top_tokens_explanations(contexts, sampling) if cfg.top_tokens_baseline else {}

    records: dict[int, dict] = {}
    scorable: list[int] = []
    for r in rows:
        latent, held_out = r["latent"], windows.get(r["latent"], ())
        why = _unscorable(r, held_out, sampling, kinds)
        records[latent] = {
            "latent": latent, "status": "unscored" if why else "ok", "reason": why, "n_failed": 0,
            "n_test_positives": sum(w.activating for w in held_out),
            "n_test_negatives": sum(not w.activating for w in held_out),
            "chance_latent": None if why else donors.get(latent),
            "scorer_model": llm.model_name if uses_llm and llm is not None else None,
            "llm_scorer_mode": mode if uses_llm else None,
            "prompt_versions": json.dumps({s: f"{mode}:{SCORERS[s].prompt_version(mode)}" for s in uses_llm},
                                          sort_keys=True),
            "top_tokens_explanation": None if why else top_tokens.get(latent),
            **{f"{s}_{n}": 0 for s in SCORERS for n in ("n", "n_failed", "n_copied")},
        }
        if not why:
            scorable.append(latent)

    settings = metrics.Settings(n_bins=_n_bins(contexts), min_auroc_n=cfg.min_auroc_n)
    notes: dict[int, list[str]] = {latent: [] for latent in scorable}
    for s in kinds:
        scorer = SCORERS[s]
        tasks = []
        for latent in scorable:
            seed = _seed(sampling.seed, latent, s)
            tasks.append(Task(latent, explained[latent], windows[latent], seed))
            if latent in donors:
                tasks.append(Task(latent, explained[donors[latent]], windows[latent], seed, run="chance"))
            if latent in top_tokens:
                tasks.append(Task(latent, top_tokens[latent], windows[latent], seed, run="top_tokens"))
        results = scorer.score(tasks, ctx) if tasks else []
        by_latent: dict[int, dict[str, list[WindowScore]]] = {}
        for task, answers in zip(tasks, results, strict=True):
            by_latent.setdefault(task.latent, {})[task.run] = answers
        for latent, runs in by_latent.items():
            record, answers = records[latent], runs["explanation"]
            summaries = {run: metrics.summarise(scorer.metrics, got, settings) for run, got in runs.items()}
            true = summaries["explanation"]
            record |= _metric_columns(s, scorer.metrics, summaries)
            answered = [a for a in answers if a.failure is None and not a.copied]
            decided = {a.pred for a in answered if a.pred is not None}
            record |= {f"{s}_n": len(answered), f"{s}_n_failed": len(answers) - len(answered),
                       f"{s}_n_copied": sum(a.copied for a in answers),
                       f"{s}_answers_constant": len(decided) == 1 if decided else None}
            notes[latent] += [n for n in (_failures(s, answers),) if n]
            for m in HEADLINE_METRICS.intersection(true):
                if true[m].value is None and answered:
                    notes[latent].append(f"{s} {m} null: {true[m].why_null}")

    for latent in scorable:
        record = records[latent]
        record["n_failed"] = sum(record[f"{s}_n_failed"] for s in SCORERS)
        if not any(record[f"{s}_n"] for s in kinds):
            record["status"] = "failed"
        if cfg.chance_baseline and latent not in donors:
            notes[latent].append("no chance baseline: no other latent of the partition has an explanation to lend")
        if cfg.top_tokens_baseline and latent not in top_tokens:
            notes[latent].append("no top-tokens baseline: the explain split has no active token")
        record["reason"] = "; ".join(notes[latent]) or None

    schema = score_schema()
    return pl.DataFrame(list(records.values()), schema=schema, strict=False).select(list(schema))


def _n_bins(contexts: pl.DataFrame) -> int:
    top_bin = contexts.filter((pl.col("split") == "test") & pl.col("activating"))["quantile"].max()
    return 0 if top_bin is None else int(top_bin) + 1  # same list length for every latent
