"""Simulation scorer (Bills et al. 2023; Paulo et al. 2024 §3.3): can a model that reads only the
explanation predict the latent's activation on every token of the held-out windows?

Every token of every held-out window is simulated, non-activating windows included, so an
explanation that "fires everywhere" is punished. The score is Pearson's r between simulated and
true activations over the tokens:
- `r`: all held-out windows (every quantile and every negative);
- `r_by_quantile`: the activating windows of each quantile bin alone (as the reference code does);
- `r_top_random`: the top quantile's windows and the random negatives (Bills et al.'s
  "top-and-random").

Two modes, chosen by what the LLM offers (`supports_prompt_logprobs`):
- `all_at_once` (prompt logprobs, the default with the in-process model and vLLM/llama.cpp): the
  prediction for a token is the expected value of the activation over the digit alternatives
  (0..10) the model puts after the token's tab, renormalised over those digits. Tokens where no
  digit is among the alternatives are not guessed: they are left out of r (whose n counts
  the tokens read). Several windows share one prompt (`windows_per_prompt`), so the few-shot
  preamble is paid once per prompt.
- `chat` (servers without prompt logprobs, also when a server refuses the first all-at-once
  request): one window per request, the model writes the lines;
  the value is the expected value over the answer's digit logprobs where they exist, else the
  parsed number. An answer with the wrong number of lines fails that window (counted).

This is the most expensive scorer (every token is a prediction); the `scores` asset reports its
prompt tokens, and the contexts cost estimate counts its requests, so its cost stays visible.
The metrics (`metrics.METRICS`: r, r_top_random, r_by_quantile) are computed with every other
scorer's, with n in tokens and a chance baseline; a null r carries its reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..llm.api import ChatRequest, Completion, PromptScore, ScoreRequest, TokenLogprobs
from ..llm.prompts import version
from . import base
from .simulation_prompts import MAX_ACTIVATION, PROMPT_VERSIONS, all_at_once_prompt, chat_messages, digit_value

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
class SimulationScorer:
    """Registered as `simulation`: all-at-once where the LLM offers prompt logprobs, else chat.
    `scorer.examples_per_prompt` windows share an all-at-once prompt."""

    name: str = "simulation"
    uses_llm: bool = True
    metrics: tuple[str, ...] = ("r", "r_top_random", "r_by_quantile")

    def prompt_version(self, mode: base.PromptMode) -> str | None:
        return version(PROMPT_VERSIONS["simulation/all_at_once"], PROMPT_VERSIONS["simulation/chat"])

    def score(self, tasks: Sequence[base.Task], ctx: base.ScoringContext) -> list[list[base.WindowScore]]:
        if ctx.llm is None:
            raise ValueError("the simulation scorer needs an LLM")
        if ctx.llm.supports_prompt_logprobs:
            out = self._simulate(tasks, ctx, all_at_once=True)
            if ctx.llm.supports_prompt_logprobs:
                return out
            # The server turned out to offer no prompt logprobs (its refusal is counted in the usage).
        return self._simulate(tasks, ctx, all_at_once=False)

    def _simulate(self, tasks: Sequence[base.Task], ctx: base.ScoringContext,
                  all_at_once: bool) -> list[list[base.WindowScore]]:
        assert ctx.llm is not None
        prompts = [build_prompts(t.explanation, [w.token_strs for w in t.windows], all_at_once=all_at_once,
                                 windows_per_prompt=ctx.cfg.examples_per_prompt) for t in tasks]
        flat = [p.request for ps in prompts for p in ps]
        if all_at_once:
            answers = iter(ctx.llm.score_prompts(flat))  # type: ignore[arg-type]
        else:
            answers = iter(ctx.llm.complete_many(flat))  # type: ignore[arg-type]
        out = []
        for task, ps in zip(tasks, prompts, strict=True):
            simulated: list[Simulated] = [Simulated(None, "not simulated")] * len(task.windows)
            for prompt in ps:
                for row, sim in zip(prompt.rows, read(prompt, next(answers)), strict=True):
                    simulated[row] = sim
            out.append([base.WindowScore(int(w.activating), w, failure=sim.failure, simulated=sim.values)
                        for w, sim in zip(task.windows, simulated, strict=True)])
        return out


SCORER = SimulationScorer()
