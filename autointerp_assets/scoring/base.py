"""The one scorer interface: held-out windows plus an explanation in, one score per window out.

A scorer (one module, registered in `registry.SCORERS`) implements `Scorer.score`: it gets
`Task`s (a latent's held-out test windows and one explanation) and returns, per task, one
`WindowScore` per sample it built from those windows. It computes no metric: `metrics.summarise`
does that for every scorer in one place, with each metric's n, and `scores.score_latents`
scores every latent twice through the same scorer (its explanation, and a shuffled one for the
chance baseline).

Batching is the scorer's business: it gets every task of a partition at once, so an LLM scorer
sends all its requests in one `complete_many` call and an embedding scorer embeds all texts in
one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..config import SamplingConfig, ScorerConfig
from ..llm.api import ChatLLM

PromptMode = Literal["likelihood", "single", "list"]


@dataclass(frozen=True)
class Window:
    """One held-out window of a latent, as the sampling stage wrote it."""

    activating: bool
    kind: str  # quantile | random | hard_negative | cooccurring | similar (top windows are never held out)
    quantile: int  # activation-rank bin; -1 for non-activating windows
    token_strs: tuple[str, ...]
    acts: tuple[float, ...]  # the latent's activation per token


# Which explanation a task scores: the latent's own, a shuffled one (another latent's: the chance
# baseline), or the no-LLM top-tokens one (the baseline that says how much the LLM adds).
Run = Literal["explanation", "chance", "top_tokens"]


@dataclass(frozen=True)
class Task:
    """Score `windows` with `explanation`. A latent's baseline tasks have the same windows and seed
    and another explanation, so the runs differ only by the explanation."""

    latent: int
    explanation: str
    windows: tuple[Window, ...]
    seed: tuple[int, ...]  # for anything random the scorer does (numpy default_rng)
    run: Run = "explanation"


@dataclass(frozen=True)
class WindowScore:
    """The outcome for one sample: its truth, the scorer's score and decision, or a failure.

    `score` is P(label = 1) where the scorer reads logprobs, otherwise any real number that is
    higher for "more likely 1" (a similarity); None when not available. `pred` is the scorer's
    0/1 decision; None for rankers that make none. A failed sample has `failure` set and is
    counted, never silently dropped.
    """

    label: int  # what the scorer was asked about (fuzzing: activating and correctly marked)
    window: Window
    score: float | None = None
    pred: int | None = None
    failure: str | None = None
    copied: bool = False  # the answer copies the prompt's own example answers: counted as a failure
    simulated: tuple[float | None, ...] | None = None  # simulation: a predicted activation per token (None: unread)


@dataclass(frozen=True)
class ScoringContext:
    """What scorers may use. `encoder` is a loader, so nothing is loaded unless a scorer needs it."""

    cfg: ScorerConfig
    sampling: SamplingConfig
    llm: ChatLLM | None
    mode: PromptMode  # LLM classifiers: the explanation's likelihood, a yes/no per window, or a 0/1 list
    encoder: Callable[[], object] | None = None


class Scorer(Protocol):
    name: str
    uses_llm: bool
    metrics: tuple[str, ...]  # names in metrics.METRICS reported for this scorer

    def prompt_version(self, mode: PromptMode) -> str | None:
        """The version of the prompt this scorer sends in `mode`; None without an LLM."""
        ...

    def score(self, tasks: Sequence[Task], ctx: ScoringContext) -> list[list[WindowScore]]:
        """One list of WindowScores per task, in task order. Never raises for a failed request."""
        ...
