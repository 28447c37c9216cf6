"""Hand-built contexts and scripted fake LLMs for the explainer and scorer tests.

Fixture: every activating window contains " cat" (the only active token); no non-activating
window contains it. Each window carries a unique marker token " w<seq>" so that the prompts can
be traced back to rows. seq = 1000 * latent + i.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence

import polars as pl

from autointerp_assets.config import SamplingConfig
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.llm.api import ChatRequest, Completion, TokenLogprobs, Usage

N_QUANTILES = 3
TEST_PER_QUANTILE = 2
TEST_NEGATIVES = 4
TEST_ROWS = N_QUANTILES * TEST_PER_QUANTILE + TEST_NEGATIVES  # 10 per latent
EXPLAIN_ACTIVATING = 4  # 3 top + 1 quantile
CONTEXTS_SCHEMA = {
    "latent": pl.Int64,
    "split": pl.Utf8,
    "kind": pl.Utf8,
    "quantile": pl.Int32,
    "seq": pl.Int64,
    "start": pl.Int64,
    "tokens": pl.List(pl.Int64),
    "token_strs": pl.List(pl.Utf8),
    "acts": pl.List(pl.Float32),
    "max_act": pl.Float32,
    "activating": pl.Boolean,
}

def make_contexts(latents: Sequence[int]) -> pl.DataFrame:
    rows = []

    def add(latent: int, split: str, kind: str, quantile: int, act: float) -> None:
        seq = 1000 * latent + len([r for r in rows if r["latent"] == latent])
        middle = [" cat", " sat"] if act > 0 else [" dog", " ran"]
        token_strs = [f" w{seq}", " the", *middle, "."]
        acts = [0.0, 0.0, act, 0.0, 0.0]
        rows.append(
            {
                "latent": latent,
                "split": split,
                "kind": kind,
                "quantile": quantile,
                "seq": seq,
                "start": 0,
                "tokens": list(range(len(token_strs))),
                "token_strs": token_strs,
                "acts": acts,
                "max_act": max(acts),
                "activating": act > 0,
            }
        )

    for latent in latents:
        for a in (9.0, 8.0, 7.5):
            add(latent, "explain", "top", N_QUANTILES - 1, a)
        add(latent, "explain", "quantile", 0, 1.0)
        add(latent, "explain", "random", -1, 0.0)
        add(latent, "explain", "hard_negative", -1, 0.0)
        for q in range(N_QUANTILES):
            for _ in range(TEST_PER_QUANTILE):
                add(latent, "test", "quantile", q, 1.0 + 2 * q)
        for i in range(TEST_NEGATIVES):
            add(latent, "test", "random" if i % 2 else "hard_negative", -1, 0.0)
    return pl.DataFrame(rows, schema=CONTEXTS_SCHEMA)


SKIPPED = pl.DataFrame(
    {"latent": [7], "reason": ["only 3 activating windows (< 8)"]}, schema={"latent": pl.Int64, "reason": pl.Utf8}
)


def markers(text: str) -> set[int]:
    return {int(m) for m in re.findall(r"\bw(\d+)\b", text)}


def examples_of(request: ChatRequest) -> list[str]:
    """The windows of a scorer request: numbered examples (list mode) or the one excerpt (single mode)."""
    content = request.messages[-1]["content"]
    return re.findall(r"^Example \d+: (.*)$", content, re.M) or re.findall(r"^Excerpt: (.*)$", content, re.M)


class FakeLLM:
    """Implements ChatLLM. `answer(request) -> Completion` decides each reply; every call and
    request is recorded."""

    def __init__(self, answer: Callable[[ChatRequest], Completion], supports_logprobs: bool = False):
        self.model_name = "fake-model"
        self.supports_logprobs = supports_logprobs
        self.usage = Usage()
        self.answer = answer
        self.calls: list[list[ChatRequest]] = []
        self.failed: list[ChatRequest] = []

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.calls.append(list(requests))
        out = [self.answer(r) for r in requests]
        self.failed += [r for r, c in zip(requests, out, strict=True) if not c.ok]
        self.usage.requests += len(requests)
        self.usage.failures += sum(not c.ok for c in out)
        return out

    @property
    def requests(self) -> list[ChatRequest]:
        return [r for call in self.calls for r in call]


def true_labels(request: ChatRequest) -> list[int]:
    """The correct answers, read from the windows: detection = contains cat; fuzzing (every
    window has a mark) = cat is the marked token."""
    examples = examples_of(request)
    if all("<<" in e for e in examples):
        return [int("<<cat>>" in e) for e in examples]
    return [int(" cat" in e) for e in examples]


def is_single(request: ChatRequest) -> bool:
    return "Answer Yes or No." in request.messages[-1]["content"]


def yes_no(label: int, p_yes: float, logprobs: bool) -> Completion:
    """A single-mode answer: the word of `label`, with top logprobs P(yes) = p_yes when asked."""
    text = "Yes" if label else "No"
    if not logprobs:
        return Completion(text)
    return Completion(text, logprobs=(TokenLogprobs(text, {"Yes": math.log(p_yes), "No": math.log(1 - p_yes)}),))


def oracle(request: ChatRequest) -> Completion:
    labels = true_labels(request)
    if is_single(request):
        return yes_no(labels[0], 0.9 if labels[0] else 0.2, request.top_logprobs is not None)
    text = "[" + ", ".join(map(str, labels)) + "]"
    if request.top_logprobs is None:
        return Completion(text)
    # Tokens "[", "1", ",", " 0", ...: confident and right, so the ranking is perfect.
    toks = [TokenLogprobs("[", {"[": 0.0})]
    for i, y in enumerate(labels):
        p1 = 0.9 if y else 0.2
        toks.append(TokenLogprobs(("" if i == 0 else " ") + str(y), {"1": math.log(p1), "0": math.log(1 - p1)}))
        toks.append(TokenLogprobs("," if i < len(labels) - 1 else "]", {",": 0.0}))
    return Completion(text, logprobs=tuple(toks))


def flaky(fraction: float) -> Callable[[ChatRequest], Completion]:
    """Fails a deterministic `fraction` of requests (by a hash of the prompt), else the oracle."""

    def answer(request: ChatRequest) -> Completion:
        if zlib.crc32(request.messages[-1]["content"].encode()) % 100 < 100 * fraction:
            return Completion(None, error="HTTP 503 after 5 retries")
        return oracle(request)

    return answer


def explained(latents: Sequence[int], texts: dict[int, str] | None = None, **status: str) -> pl.DataFrame:
    """An explanations table: ok for every latent unless `status` names it (key 'l<latent>'); the
    explanation is "the word cat" unless `texts` gives one."""
    rows = []
    for latent in latents:
        s = status.get(f"l{latent}", "ok")
        rows.append(
            {
                "latent": latent,
                "status": s,
                "explanation": (texts or {}).get(latent, "the word cat") if s == "ok" else None,
                "reason": None if s == "ok" else "no luck",
            }
        )
    return pl.DataFrame(
        rows, schema={k: EXPLANATION_SCHEMA[k] for k in ("latent", "status", "explanation", "reason")}
    )



# The fixture holds 6 activating and 4 non-activating test windows per latent.
SAMPLING = SamplingConfig(min_test_positives=3, min_test_negatives=3)
