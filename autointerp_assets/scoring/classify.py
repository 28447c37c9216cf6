"""The LLM classifier loop shared by detection and fuzzing (Paulo et al. 2024).

A classifier module turns a latent's held-out windows into `Sample`s with a 0/1 label (detection:
is the window activating; fuzzing: are its marks where the latent fires) and registers an
`LLMClassifier`. This loop asks the LLM about every sample, in the context's mode:

- `likelihood`: one prompt-scoring request per sample; the score is the log-probability of the
  explanation as the answer to what the window contains (`prompts.likelihood_request`). It ranks
  the samples (AUROC) and decides nothing, so the decision metrics are null, with the reason;
- `single`: one request per sample, answered Yes/No; the sample's score is P(yes) from the answer
  token's logprobs (when the backend offers them), its decision the parsed answer, else P(yes) > 0.5;
- `list`: samples in a seeded order, `examples_per_prompt` per request, answered with a 0/1 list;
  the score is P("1") per answer where the digit logprobs line up. An answer that copies the
  prompt's worked example is counted (`copied`) and left out of the metrics.

A failed request or unparseable answer is a counted failure of every sample it covered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..llm.api import ChatRequest, Completion, PromptScore
from .base import PromptMode, ScoringContext, Task, Window, WindowScore
from .prompts import (
    PROMPT_VERSIONS,
    SHOT_SIZE,
    SINGLE_MAX_TOKENS,
    ScorerKind,
    answer_probabilities,
    copies_example,
    likelihood_request,
    list_max_tokens,
    list_messages,
    parse_binary_answers,
    parse_yes_no,
    single_messages,
    yes_probability,
)

TOP_LOGPROBS = 5
CLASSIFIER_METRICS = ("auroc", "balanced_accuracy", "precision", "recall", "f1", "accuracy_by_quantile",
                      "random_negative_accuracy", "hard_negative_accuracy", "cooccurring_negative_accuracy",
                      "similar_negative_accuracy")


@dataclass(frozen=True)
class Sample:
    label: int
    window: Window
    marks: tuple[bool, ...] | None  # fuzzing highlights; None for detection


# held-out windows, a seeded generator, sampling.highlight_fraction -> labelled samples
SampleFn = Callable[[Sequence[Window], np.random.Generator, float], list[Sample]]


@dataclass(frozen=True)
class _Request:
    task: int  # index into the tasks
    samples: tuple[int, ...]  # indices into that task's samples
    shot_order: tuple[int, ...] | None  # list mode: the worked example's order
    request: ChatRequest


@dataclass(frozen=True)
class LLMClassifier:
    name: ScorerKind
    samples: SampleFn
    uses_llm: bool = True
    metrics: tuple[str, ...] = CLASSIFIER_METRICS

    def prompt_version(self, mode: PromptMode) -> str | None:
        return PROMPT_VERSIONS[f"{self.name}/{mode}"]

    def score(self, tasks: Sequence[Task], ctx: ScoringContext) -> list[list[WindowScore]]:
        if ctx.llm is None:
            raise ValueError(f"the {self.name} scorer needs an LLM")
        top = TOP_LOGPROBS if ctx.llm.supports_logprobs else None
        per_task: list[list[Sample]] = []
        requests: list[_Request] = []
        for t, task in enumerate(tasks):
            rng = np.random.default_rng(task.seed)
            samples = self.samples(task.windows, rng, ctx.sampling.highlight_fraction)
            per_task.append(samples)
            if ctx.mode != "likelihood":
                requests += self._requests(t, task.explanation, samples, rng, ctx, top)
        if ctx.mode == "likelihood":
            return self._score_likelihood(tasks, per_task, ctx)
        completions = ctx.llm.complete_many([r.request for r in requests]) if requests else []
        out: list[list[WindowScore | None]] = [[None] * len(s) for s in per_task]
        for r, completion in zip(requests, completions, strict=True):
            samples = [per_task[r.task][i] for i in r.samples]
            for i, score in zip(r.samples, self._read(r, samples, completion), strict=True):
                out[r.task][i] = score
        return out  # type: ignore[return-value]  # every sample is in exactly one request

    def _score_likelihood(self, tasks: Sequence[Task], per_task: list[list[Sample]],
                          ctx: ScoringContext) -> list[list[WindowScore]]:
        llm = ctx.llm
        assert llm is not None
        sent = [[likelihood_request(self.name, task.explanation, s.window.token_strs, s.marks, llm.chat_prompt)
                 for s in samples] for task, samples in zip(tasks, per_task, strict=True)]
        answers = iter(llm.score_prompts([r for rs in sent for r in rs]))
        return [[_likelihood(s, next(answers)) for s in samples] for samples in per_task]

    def _requests(self, t: int, explanation: str, samples: list[Sample], rng: np.random.Generator,
                  ctx: ScoringContext, top: int | None) -> list[_Request]:
        order = rng.permutation(len(samples)).tolist()
        if ctx.mode == "single":
            return [_Request(t, (i,), None, ChatRequest(
                single_messages(self.name, explanation, samples[i].window.token_strs, samples[i].marks),
                max_tokens=SINGLE_MAX_TOKENS, top_logprobs=top)) for i in order]
        per = ctx.cfg.examples_per_prompt
        out = []
        for lo in range(0, len(order), per):
            chunk = tuple(order[lo : lo + per])
            shot_order = tuple(rng.permutation(SHOT_SIZE).tolist())
            windows = [(samples[i].window.token_strs, samples[i].marks) for i in chunk]
            messages = list_messages(self.name, explanation, windows, shot_order)
            out.append(_Request(t, chunk, shot_order, ChatRequest(messages, max_tokens=list_max_tokens(len(chunk)),
                                                                    top_logprobs=top)))
        return out

    def _read(self, r: _Request, samples: list[Sample], completion: Completion) -> list[WindowScore]:
        def failed(why: str) -> list[WindowScore]:
            return [WindowScore(s.label, s.window, failure=why) for s in samples]

        if not completion.ok:
            return failed(f"llm error: {completion.error}")
        if r.shot_order is None:  # single
            prob = yes_probability(completion.logprobs) if r.request.top_logprobs else None
            parsed = parse_yes_no(completion.text)
            if not parsed.ok and prob is None:
                return failed(parsed.failure or "no answer")
            pred = parsed.value if parsed.ok else int(prob > 0.5)  # type: ignore[operator]
            return [WindowScore(samples[0].label, samples[0].window, score=prob, pred=pred)]
        parsed_list = parse_binary_answers(completion.text, len(samples))
        if not parsed_list.ok:
            return failed(parsed_list.failure or "no answer")
        values = parsed_list.value or []
        copied = copies_example(values, self.name, r.shot_order)
        probs = answer_probabilities(completion.logprobs, values) if r.request.top_logprobs else None
        return [WindowScore(s.label, s.window, score=probs[i] if probs else None, pred=v, copied=copied)
                for i, (s, v) in enumerate(zip(samples, values, strict=True))]


def _likelihood(sample: Sample, answer: PromptScore) -> WindowScore:
    """log P(explanation | the window's question): the sum over the explanation's tokens."""
    if not answer.ok:
        return WindowScore(sample.label, sample.window, failure=f"llm error: {answer.error}")
    if not answer.tokens:
        return WindowScore(sample.label, sample.window, failure="the explanation has no scorable token")
    return WindowScore(sample.label, sample.window, score=sum(t.logprob for t in answer.tokens))
