"""Score explanations by how well an LLM can use them to classify held-out windows.

Input `contexts` (one row per example window, from the sampling stage):
  latent Int64 | split "explain"|"test" | kind "top"|"quantile"|"random"|"hard_negative" |
  quantile Int32 (activation-rank bin, -1 for non-activating) | seq, start Int64 |
  tokens List(Int64) | token_strs List(Utf8) | acts List(Float32) | max_act Float32 |
  activating Boolean
Only the **test** split is used, so no scored window was shown to the explainer.

Scorers (after Paulo et al. 2024), one module each, registered in `SCORERS`:
`detection` (is the window activating?) and `fuzzing` (are the marked tokens the ones
where the latent fires?).
Each latent's samples are shuffled with a seed derived from (seed, latent, scorer) and cut into
prompts of `examples_per_prompt` windows. A failed request or unparseable answer counts every
example of that prompt in `<scorer>_n_failed`; metrics are computed on the answered examples.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..config import ScorerConfig
from ..llm.api import ChatLLM, ChatRequest, Completion
from . import detection, fuzzing, metrics
from .base import ClassificationScorer, Sample
from .prompts import PROMPT_VERSIONS, answer_probabilities, parse_binary_answers, scorer_max_tokens

# Every row has the columns of every registered scorer, null when it did not run.
SCORERS: dict[str, ClassificationScorer] = {"detection": detection.SCORER, "fuzzing": fuzzing.SCORER}
TOP_LOGPROBS = 5


def score_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        "latent": pl.Int64(),
        "status": pl.Utf8(),  # "ok" | "failed" (every answer failed) | "unscored" (no usable explanation/test set)
        "reason": pl.Utf8(),  # why unscored/failed, or a summary of partial failures; null otherwise
        "n_failed": pl.Int64(),  # examples with a failed/unparseable answer, all scorers together
        "scorer_model": pl.Utf8(),
        "prompt_versions": pl.Utf8(),  # JSON {scorer: PROMPT_VERSIONS[scorer]} for the scorers run
    }
    for s in SCORERS:
        schema |= {
            f"{s}_balanced_accuracy": pl.Float64(),
            f"{s}_precision": pl.Float64(),
            f"{s}_recall": pl.Float64(),
            f"{s}_f1": pl.Float64(),
            f"{s}_auroc": pl.Float64(),  # null without logprobs or with one class only
            f"{s}_n": pl.Int64(),  # examples answered
            f"{s}_n_failed": pl.Int64(),  # examples whose prompt failed
            f"{s}_accuracy_by_quantile": pl.List(pl.Float64()),  # index = quantile bin; null entry = no example
            f"{s}_negative_accuracy": pl.Float64(),  # accuracy on non-activating windows
        }
    return schema


@dataclass(frozen=True)
class _Prompt:
    latent: int
    scorer: str
    samples: tuple[Sample, ...]
    request: ChatRequest


@dataclass(frozen=True)
class _Answer:
    """The outcome for one sample: a prediction (and P("1") when logprobs allow), or a failure."""

    sample: Sample
    pred: int | None
    prob: float | None
    failure: str | None


def _prompts(
    latent: int,
    explanation: str,
    rows: list[dict],
    scorer: str,
    rng: np.random.Generator,
    *,
    per_prompt: int,
    top_logprobs: int | None,
) -> list[_Prompt]:
    samples = SCORERS[scorer].samples(rows, rng)
    samples = [samples[i] for i in rng.permutation(len(samples))]
    prompts = []
    for lo in range(0, len(samples), per_prompt):
        chunk = tuple(samples[lo : lo + per_prompt])
        messages = SCORERS[scorer].messages(explanation, chunk)
        request = ChatRequest(
            messages=messages, max_tokens=scorer_max_tokens(len(chunk)), top_logprobs=top_logprobs
        )
        prompts.append(_Prompt(latent, scorer, chunk, request))
    return prompts


def _answers(prompt: _Prompt, completion: Completion) -> list[_Answer]:
    if not completion.ok:
        return [_Answer(s, None, None, f"llm error: {completion.error}") for s in prompt.samples]
    parsed = parse_binary_answers(completion.text, len(prompt.samples))
    if not parsed.ok:
        return [_Answer(s, None, None, parsed.failure) for s in prompt.samples]
    probs = answer_probabilities(completion.logprobs, parsed.value) if prompt.request.top_logprobs else None
    return [
        _Answer(s, pred, probs[i] if probs else None, None)
        for i, (s, pred) in enumerate(zip(prompt.samples, parsed.value, strict=True))
    ]


def _null_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _accuracy(answers: Sequence[_Answer]) -> float | None:
    return sum(a.pred == a.sample.label for a in answers) / len(answers) if answers else None


def _scorer_metrics(scorer: str, answers: list[_Answer], n_bins: int) -> dict:
    ok = [a for a in answers if a.pred is not None]
    out: dict = {f"{scorer}_n": len(ok), f"{scorer}_n_failed": len(answers) - len(ok)}
    if not ok:
        return out  # the remaining columns stay null
    c = metrics.confusion([a.sample.label for a in ok], [a.pred for a in ok])
    with_prob = [a for a in ok if a.prob is not None]
    auroc = (
        metrics.auroc([a.sample.label for a in with_prob], [a.prob for a in with_prob]) if with_prob else math.nan
    )
    out |= {
        f"{scorer}_balanced_accuracy": _null_if_nan(metrics.balanced_accuracy(c)),
        f"{scorer}_precision": _null_if_nan(metrics.precision(c)),
        f"{scorer}_recall": _null_if_nan(metrics.recall(c)),
        f"{scorer}_f1": _null_if_nan(metrics.f1(c)),
        f"{scorer}_auroc": _null_if_nan(auroc),
        f"{scorer}_accuracy_by_quantile": [
            _accuracy([a for a in ok if a.sample.activating and a.sample.quantile == q]) for q in range(n_bins)
        ],
        f"{scorer}_negative_accuracy": _accuracy([a for a in ok if not a.sample.activating]),
    }
    return out


def _failure_summary(by_scorer: dict[str, list[_Answer]]) -> str | None:
    parts = []
    for scorer, answers in by_scorer.items():
        reasons = Counter(a.failure for a in answers if a.failure is not None)
        if reasons:
            common, _ = reasons.most_common(1)[0]
            parts.append(f"{scorer}: {sum(reasons.values())}/{len(answers)} examples failed, e.g. {common}")
    return "; ".join(parts) or None


def score_latents(
    contexts: pl.DataFrame, explanations: pl.DataFrame, llm: ChatLLM, cfg: ScorerConfig, seed: int
) -> pl.DataFrame:
    """One row per latent of `explanations` (latent, status, explanation, reason), sorted by
    latent; see `score_schema()`. Every request of every latent and scorer goes through one
    `llm.complete_many` call. Logprobs are requested only when `llm.supports_logprobs`."""
    kinds = [s for s in SCORERS if s in cfg.kinds]
    versions = json.dumps({s: PROMPT_VERSIONS[s] for s in kinds}, sort_keys=True)
    top_logprobs = TOP_LOGPROBS if llm.supports_logprobs else None
    test = contexts.filter(pl.col("split") == "test").sort(["latent", "seq", "start"])
    top_bin = test.filter(pl.col("activating"))["quantile"].max()
    n_bins = 0 if top_bin is None else int(top_bin) + 1  # same list length for every latent
    test_rows: dict[int, list[dict]] = {}
    for r in test.select("latent", "activating", "quantile", "token_strs", "acts").iter_rows(named=True):
        test_rows.setdefault(r["latent"], []).append(r)

    base = {"scorer_model": llm.model_name, "prompt_versions": versions, "n_failed": 0}
    records: dict[int, dict] = {}
    prompts: list[_Prompt] = []
    for e in explanations.sort("latent").iter_rows(named=True):
        latent = e["latent"]
        record = records[latent] = {**base, "latent": latent, "status": "unscored", "reason": None}
        record |= {f"{s}_{n}": 0 for s in SCORERS for n in ("n", "n_failed")}
        if e["status"] != "ok" or not e["explanation"]:
            record["reason"] = f"explanation {e['status']}" + (f": {e['reason']}" if e["reason"] else "")
        elif latent not in test_rows:
            record["reason"] = "no test-split examples"
        elif not kinds:
            record["reason"] = "no scorers configured"
        else:
            for idx, scorer in enumerate(SCORERS):
                if scorer in kinds:
                    rng = np.random.default_rng([seed, latent, idx])  # independent of other latents
                    prompts += _prompts(
                        latent,
                        e["explanation"],
                        test_rows[latent],
                        scorer,
                        rng,
                        per_prompt=cfg.examples_per_prompt,
                        top_logprobs=top_logprobs,
                    )

    completions = llm.complete_many([p.request for p in prompts]) if prompts else []
    answers: dict[int, dict[str, list[_Answer]]] = {}
    for prompt, completion in zip(prompts, completions, strict=True):
        answers.setdefault(prompt.latent, {}).setdefault(prompt.scorer, []).extend(_answers(prompt, completion))

    for latent, by_scorer in answers.items():
        record = records[latent]
        for scorer, scorer_answers in by_scorer.items():
            record |= _scorer_metrics(scorer, scorer_answers, n_bins)
        record["n_failed"] = sum(record[f"{s}_n_failed"] for s in SCORERS)
        answered = sum(record[f"{s}_n"] for s in SCORERS)
        record["status"] = "ok" if answered else "failed"
        record["reason"] = _failure_summary(by_scorer)

    schema = score_schema()
    return pl.DataFrame(list(records.values()), schema=schema).select(list(schema))
