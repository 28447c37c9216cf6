"""Surprisal scorer (Paulo et al. 2024 §3.3): does conditioning a language model on the explanation
lower its loss on activating windows more than on non-activating ones?

Each held-out window is scored twice by the LLM's prompt logprobs (`ChatLLM.score_prompts`):
after a preamble naming the explanation, and after the same preamble naming a null
explanation ("various unrelated text", as the reference code does). The per-token information
gain is logP(token | explanation) - logP(token | null). A window's score aggregates the gains
over its tokens; the metric is the AUROC of that score for activating vs non-activating windows.

Choice (measured, see README): the aggregate is the mean of the `TOP_GAINS` largest per-token
gains, not the mean over the window. An explanation names a few tokens; the rest of a window is
predicted equally well with or without it, so the window mean dilutes the signal with noise.
On 4 planted triggers in Python code scored by the in-process SmolLM2-135M (6 + 6 windows
each), true-minus-shuffled AUROC was 0.10 with the window mean and 0.17 with the top-3 mean.
`aggregate="mean"` gives the paper's whole-window version.

Runs with any backend that offers prompt logprobs (the in-process model, vLLM, llama.cpp);
with one that does not, every window fails and is counted, and the latent is unscored with the
reason. The null-explanation request of a window is the same for every explanation, so the
true and the shuffled explanation share it (the backends send equal requests once).

Registered as `surprisal` (`scorer.kinds`): metric `auroc`, with n and the chance baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..llm.api import ChatLLM, PromptScore, ScoreRequest
from ..llm.prompts import version
from . import base

NULL_EXPLANATION = "various unrelated text"
_PREAMBLE = "The following text excerpt was chosen because it contains {explanation}.\n\nExcerpt:\n"
TOP_GAINS = 3
Aggregate = Literal["top", "mean"]
PROMPT_VERSION = version(_PREAMBLE, NULL_EXPLANATION)


def preamble(explanation: str) -> str:
    return _PREAMBLE.format(explanation=explanation.strip().rstrip("."))


def requests(explanation: str, windows: Sequence[str]) -> list[ScoreRequest]:
    """Two per window text, in order: [conditioned on the explanation, on the null explanation]."""
    out = []
    for text in windows:
        for head in (preamble(explanation), preamble(NULL_EXPLANATION)):
            out.append(ScoreRequest(head + text, score_from=len(head)))
    return out


@dataclass(frozen=True)
class Gain:
    value: float | None  # aggregated information gain in nats; None when a request failed
    failure: str | None = None


def window_scores(sent: Sequence[ScoreRequest], scores: Sequence[PromptScore],
                  aggregate: Aggregate = "top") -> list[Gain]:
    """`requests` and their answers, in pairs -> one score per window."""
    out = []
    for i in range(0, len(sent), 2):
        with_expl, null = scores[i], scores[i + 1]
        if not (with_expl.ok and null.ok):
            error = with_expl.error if not with_expl.ok else null.error
            out.append(Gain(None, f"llm error: {error}"))
            continue
        gains = _gains(with_expl, sent[i].score_from, null, sent[i + 1].score_from)
        if gains.size == 0:
            out.append(Gain(None, "the window has no scorable token"))
        elif aggregate == "mean":
            out.append(Gain(float(gains.mean())))
        else:
            out.append(Gain(float(np.sort(gains)[-TOP_GAINS:].mean())))
    return out


def score_windows(llm: ChatLLM, explanation: str, windows: Sequence[str],
                  aggregate: Aggregate = "top") -> list[Gain]:
    """One latent's windows through `llm` in one call (the pipeline batches many latents instead)."""
    sent = requests(explanation, windows)
    return window_scores(sent, llm.score_prompts(sent), aggregate)


def _gains(with_expl: PromptScore, start: int, null: PromptScore, null_start: int) -> np.ndarray:
    """Per-token gain [n]; tokens are matched by their offset within the window text, so a token
    the two tokenisations split differently is left out rather than mismatched."""
    null_by_offset = {(t.offset - null_start, t.text): t.logprob for t in null.tokens or ()}
    pairs = [(t.logprob, null_by_offset.get((t.offset - start, t.text))) for t in with_expl.tokens or ()]
    return np.asarray([a - b for a, b in pairs if b is not None], dtype=np.float64)


@dataclass(frozen=True)
class SurprisalScorer:
    name: str = "surprisal"
    uses_llm: bool = True
    metrics: tuple[str, ...] = ("auroc",)

    def prompt_version(self, mode: base.PromptMode) -> str | None:
        return PROMPT_VERSION  # one prompt whatever the classifiers' mode

    def score(self, tasks: Sequence[base.Task], ctx: base.ScoringContext) -> list[list[base.WindowScore]]:
        if ctx.llm is None:
            raise ValueError("the surprisal scorer needs an LLM")
        sent = [requests(t.explanation, ["".join(w.token_strs) for w in t.windows]) for t in tasks]
        answers = iter(ctx.llm.score_prompts([r for rs in sent for r in rs]))  # every task in one call
        out = []
        for task, rs in zip(tasks, sent, strict=True):
            gains = window_scores(rs, [next(answers) for _ in rs])
            out.append([base.WindowScore(int(w.activating), w, score=g.value, failure=g.failure)
                        for w, g in zip(task.windows, gains, strict=True)])
        return out


SCORER = SurprisalScorer()
