"""Simulation scorer (Bills et al. 2023; Paulo et al. 2024 §3.3): can a model that reads only the
explanation predict the latent's activation on every token of the held-out windows?

Every token of every held-out window is simulated, non-activating windows included, so an
explanation that "fires everywhere" is punished. The score is Pearson's r between simulated and
true activations over the tokens:
- `r`: all held-out windows (every quantile and every negative);
- `r_by_quantile`: the activating windows of each quantile bin alone (as the reference code does);
- `r_top_random`: the top quantile's windows and the random negatives (Bills et al.'s
  "top-and-random").

Two modes, chosen by what the LLM offers (recorded in `simulation_mode`):
- `all_at_once` (prompt logprobs, the default with the in-process model and vLLM/llama.cpp): the
  prediction for a token is the expected value of the activation over the digit alternatives
  (0..10) the model puts after the token's tab, renormalised over those digits. Tokens where no
  digit is among the alternatives are not guessed: they are left out of r and counted
  (`n_unread`). Several windows share one prompt (`windows_per_prompt`), so the few-shot
  preamble is paid once per prompt.
- `chat` (servers without prompt logprobs): one window per request, the model writes the lines;
  the value is the expected value over the answer's digit logprobs where they exist, else the
  parsed number. An answer with the wrong number of lines fails that window (counted).

This is the most expensive scorer (every token is a prediction); `prompt_tokens` per latent is
reported so its cost stays visible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..llm.api import ChatRequest, Completion, PromptScore, ScoreRequest, TokenLogprobs
from .simulation_prompts import MAX_ACTIVATION, all_at_once_prompt, chat_messages, digit_value

TOP_LOGPROBS = 10  # alternatives read per token; the digits 0..10 are a small part of a vocabulary
_LINE_VALUE = re.compile(r"\t\s*(\d+)\s*$")


@dataclass(frozen=True)
class SimulationPrompt:
    rows: tuple[int, ...]  # indices of the latent's windows this prompt simulates
    request: ScoreRequest | ChatRequest
    lengths: tuple[int, ...]  # tokens per window
    offsets: tuple[tuple[int, ...], ...] = ()  # all-at-once: where each token's prediction is read


@dataclass(frozen=True)
class Simulated:
    """One window's simulation: a value per token (None where unread), or why the window failed."""

    values: tuple[float | None, ...] | None
    failure: str | None = None


def build_prompts(explanation: str, windows: Sequence[Sequence[str]], *, all_at_once: bool,
                  windows_per_prompt: int = 5, top_logprobs: int = TOP_LOGPROBS) -> list[SimulationPrompt]:
    """Requests that simulate every window (token strings) of one latent under `explanation`."""
    if not all_at_once:
        return [SimulationPrompt((i,), ChatRequest(chat_messages(explanation, tokens), max_tokens=4 * len(tokens) + 8,
                                                   top_logprobs=top_logprobs), (len(tokens),))
                for i, tokens in enumerate(windows)]
    prompts = []
    for lo in range(0, len(windows), windows_per_prompt):
        chunk = list(range(lo, min(lo + windows_per_prompt, len(windows))))
        text, offsets = all_at_once_prompt(explanation, [windows[i] for i in chunk])
        request = ScoreRequest(text, score_from=offsets[0][0] if offsets and offsets[0] else len(text),
                               top_logprobs=top_logprobs)
        prompts.append(SimulationPrompt(tuple(chunk), request, tuple(len(windows[i]) for i in chunk),
                                        tuple(tuple(o) for o in offsets)))
    return prompts


def expected_value(alternatives: dict[str, float] | None) -> float | None:
    """E[activation] over the alternatives that are integers 0..10, renormalised; None without any."""
    if not alternatives:
        return None
    weights: dict[int, float] = {}
    for token, logprob in alternatives.items():
        value = digit_value(token)
        if value is not None:
            weights[value] = weights.get(value, 0.0) + math.exp(logprob)
    total = sum(weights.values())
    return sum(v * w for v, w in weights.items()) / total if total > 0 else None


def read(prompt: SimulationPrompt, answer: PromptScore | Completion) -> list[Simulated]:
    """The simulated windows of one prompt, in `prompt.rows` order."""
    if isinstance(answer, PromptScore):
        if not answer.ok:
            return [Simulated(None, f"llm error: {answer.error}")] * len(prompt.rows)
        by_offset = {t.offset: t.top for t in answer.tokens or ()}
        return [Simulated(tuple(expected_value(by_offset.get(o)) for o in offsets)) for offsets in prompt.offsets]
    return [_read_chat(answer, prompt.lengths[0])]


def _read_chat(answer: Completion, n_tokens: int) -> Simulated:
    if not answer.ok:
        return Simulated(None, f"llm error: {answer.error}")
    lines = [ln for ln in (answer.text or "").split("\n") if "\t" in ln]
    parsed = [_LINE_VALUE.search(ln) for ln in lines]
    if len(lines) != n_tokens or not all(parsed):
        return Simulated(None, f"answer has {len(lines)} token lines with a value, expected {n_tokens}")
    values = [min(MAX_ACTIVATION, int(m.group(1))) for m in parsed if m]
    expected = _digit_expectations(answer.logprobs) if answer.logprobs else []
    if len(expected) == n_tokens:  # one digit position per line: use the expected values
        return Simulated(tuple(e if e is not None else float(v) for e, v in zip(expected, values, strict=True)))
    return Simulated(tuple(float(v) for v in values))


def _digit_expectations(steps: Sequence[TokenLogprobs]) -> list[float | None]:
    """The expected value at the first generated token after each tab that names a digit."""
    out, after_tab = [], False
    for step in steps:
        if after_tab and step.token.strip():
            out.append(expected_value(step.top) if digit_value(step.token) is not None else None)
            after_tab = False
        after_tab = after_tab or step.token.endswith("\t")
    return out


@dataclass(frozen=True)
class Window:
    acts: tuple[float, ...]
    activating: bool
    quantile: int  # -1 for non-activating
    kind: str  # top | quantile | random | hard_negative


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either side is constant or there are fewer than two points."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _pairs(windows: Sequence[Window], simulated: Sequence[Simulated], keep) -> tuple[list[float], list[float]]:
    true, pred = [], []
    for w, s in zip(windows, simulated, strict=True):
        if keep(w) and s.values is not None:
            for a, v in zip(w.acts, s.values, strict=True):
                if v is not None:
                    true.append(a)
                    pred.append(v)
    return true, pred


def metrics(windows: Sequence[Window], simulated: Sequence[Simulated], n_bins: int) -> dict:
    """r (with its n in tokens), r by quantile, r top-and-random, and failures; `reason` says why r is null."""
    true, pred = _pairs(windows, simulated, lambda w: True)
    failed = [s.failure for s in simulated if s.failure]
    top_bin = max((w.quantile for w in windows if w.activating), default=-1)
    r = pearson(true, pred)
    out = {
        "r": None if math.isnan(r) else r,
        "n": len(true),
        "n_windows": sum(s.values is not None for s in simulated),
        "n_failed": len(failed),
        "n_unread": sum(v is None for s in simulated if s.values for v in s.values),
        "r_by_quantile": [_r(_pairs(windows, simulated, lambda w, q=q: w.activating and w.quantile == q))
                          for q in range(n_bins)],
        "r_top_random": _r(_pairs(windows, simulated,
                                  lambda w: (w.activating and w.quantile == top_bin) or w.kind == "random")),
        "reason": None,
    }
    if out["r"] is None:
        if not any(a > 0 for w in windows for a in w.acts):
            out["reason"] = "no token of the held-out windows activates"
        elif not true:
            out["reason"] = f"every simulation failed, e.g. {failed[0]}" if failed else "no token could be simulated"
        else:
            out["reason"] = f"the simulated activations are constant ({pred[0]:.2f} on {len(pred)} tokens): " \
                            "the explanation predicted no variation"
    return out


def _r(pairs: tuple[list[float], list[float]]) -> float | None:
    r = pearson(*pairs)
    return None if math.isnan(r) else r
