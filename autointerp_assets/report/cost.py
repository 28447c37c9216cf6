"""What the LLM stages of a partition will cost, before anything is sent.

The explainer and scorers run unchanged against `DryRunLLM`, which records each request
and answers none, so the estimate counts exactly the requests a real run would send.
Tokens are estimated as characters / 3.5 (SmolLM2's tokenizer gave 3.3 on the stdlib
mix of code and prose; English prose runs nearer 4); completions are
counted at their max_tokens, so the cost is an upper bound on that side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..config import ExplainerConfig, LLMConfig, SamplingConfig, ScorerConfig
from ..explain.explainer import explain_latents
from ..llm.api import ChatRequest, Completion, Usage
from ..scoring.classify import score_latents

CHARS_PER_TOKEN = 3.5
# Stand-in explanation for sizing scorer prompts; real ones are usually a short sentence.
_PLACEHOLDER_EXPLANATION = "x" * 100


class DryRunLLM:
    model_name = "dry-run"
    supports_logprobs = True

    def __init__(self) -> None:
        self.usage = Usage()
        self.requests: list[ChatRequest] = []

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.requests += requests
        return [Completion(text=None, error="dry_run: not sent") for _ in requests]


@dataclass(frozen=True)
class CostEstimate:
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_usd: float

    def as_metadata(self) -> dict[str, float | int]:
        return {"estimated_llm_requests": self.requests, "estimated_prompt_tokens": self.prompt_tokens,
                "estimated_max_completion_tokens": self.max_completion_tokens,
                "estimated_cost_usd": round(self.cost_usd, 6)}


def estimate_cost(contexts: pl.DataFrame, skipped: pl.DataFrame, explainer: ExplainerConfig,
                  scorer: ScorerConfig, sampling: SamplingConfig, llm: LLMConfig) -> CostEstimate:
    dry = DryRunLLM()
    explained = explain_latents(contexts, skipped, dry, explainer, sampling)
    if explainer.kind != "top_tokens":  # pretend every sent request came back with an explanation
        sent = pl.col("reason").str.starts_with("llm error")
        explained = explained.with_columns(
            pl.when(sent).then(pl.lit("ok")).otherwise(pl.col("status")).alias("status"),
            pl.when(sent).then(pl.lit(_PLACEHOLDER_EXPLANATION)).otherwise(pl.col("explanation")).alias("explanation"),
        )
    score_latents(contexts, explained, dry, scorer, sampling.seed)
    prompt = round(sum(len(m["content"]) for r in dry.requests for m in r.messages) / CHARS_PER_TOKEN)
    completion = sum(r.max_tokens for r in dry.requests)
    cost = (prompt * llm.price_per_million_input + completion * llm.price_per_million_output) / 1e6
    return CostEstimate(len(dry.requests), prompt, completion, cost)
