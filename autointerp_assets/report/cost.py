"""What the LLM stages of a partition will cost, before anything is sent.

The explainer and scorers run unchanged against `DryRunLLM`, which records each request
and answers none, so the estimate counts exactly the requests a real run would send.
Tokens are estimated as characters / 3.5 (SmolLM2's tokenizer gave 3.3 on the stdlib
mix of code and prose; English prose runs nearer 4); completions are
counted at their max_tokens, so the cost is an upper bound on that side. The chance
baseline (each latent scored again with a shuffled explanation, `scorer.chance_baseline`)
roughly doubles the scoring requests; its share is shown on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..config import ExplainerConfig, LLMConfig, SamplingConfig, ScorerConfig
from ..explain.explainer import explain_latents
from ..explain.output_side import N_PROMOTED
from ..llm.api import ChatRequest, Completion, PromptScore, ScoreRequest, Usage, failed_score
from ..llm.cache import once_each
from ..scoring.registry import SCORERS
from ..scoring.scores import score_latents

CHARS_PER_TOKEN = 3.5
# Stand-in explanation for sizing scorer prompts; real ones are usually a short sentence.
_PLACEHOLDER_EXPLANATION = "x" * 100


class DryRunLLM:
    model_name = "dry-run"
    supports_logprobs = True
    supports_prompt_logprobs = True

    def __init__(self) -> None:
        self.usage = Usage()
        self.requests: list[ChatRequest | ScoreRequest] = []

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return once_each(self.model_name, requests, self._record)  # as every backend sends them

    def score_prompts(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        return once_each(self.model_name, requests, self._record_scoring)

    def chat_prompt(self, user: str) -> None:
        return None  # sized as plain text: a chat template adds a few tokens

    def _record(self, requests: list[ChatRequest]) -> list[Completion]:
        self.requests += requests
        return [Completion(text=None, error="dry_run: not sent") for _ in requests]

    def _record_scoring(self, requests: list[ScoreRequest]) -> list[PromptScore]:
        self.requests += requests
        return [failed_score("dry_run", "not sent") for _ in requests]


@dataclass(frozen=True)
class CostEstimate:
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_usd: float
    chance_requests: int = 0  # of `requests`: the chance baseline's
    chance_cost_usd: float = 0.0  # of `cost_usd`: the chance baseline's

    def as_metadata(self) -> dict[str, float | int]:
        return {"estimated_llm_requests": self.requests, "estimated_prompt_tokens": self.prompt_tokens,
                "estimated_max_completion_tokens": self.max_completion_tokens,
                "estimated_cost_usd": round(self.cost_usd, 6),
                "estimated_chance_baseline_requests": self.chance_requests,
                "estimated_chance_baseline_cost_usd": round(self.chance_cost_usd, 6)}


def _chars(request: ChatRequest | ScoreRequest) -> int:
    if isinstance(request, ScoreRequest):
        return len(request.prompt)
    return sum(len(m["content"]) for m in request.messages)


def _priced(requests: Sequence[ChatRequest | ScoreRequest], llm: LLMConfig) -> tuple[int, int, float]:
    """Prompt scoring generates nothing: its requests cost prompt tokens only."""
    prompt = round(sum(_chars(r) for r in requests) / CHARS_PER_TOKEN)
    completion = sum(r.max_tokens for r in requests if isinstance(r, ChatRequest))
    return prompt, completion, (prompt * llm.price_per_million_input + completion * llm.price_per_million_output) / 1e6


def _scoring_requests(contexts: pl.DataFrame, explained: pl.DataFrame, scorer: ScorerConfig,
                      sampling: SamplingConfig, llm: LLMConfig) -> list[ChatRequest | ScoreRequest]:
    dry = DryRunLLM()
    llm_kinds = [k for k in scorer.kinds if SCORERS[k].uses_llm]  # the others cost no LLM call
    if llm_kinds:
        cfg = scorer.model_copy(update={"kinds": llm_kinds})
        score_latents(contexts, explained, dry, cfg, sampling, mode=scorer.mode(llm.backend))
    return dry.requests


def estimate_cost(contexts: pl.DataFrame, skipped: pl.DataFrame, explainer: ExplainerConfig,
                  scorer: ScorerConfig, sampling: SamplingConfig, llm: LLMConfig) -> CostEstimate:
    dry = DryRunLLM()
    promoted = defaultdict(lambda: ["x" * 6] * N_PROMOTED)  # output_side: sized like real promoted tokens
    explained = explain_latents(contexts, skipped, dry, explainer, sampling, promoted)
    if explainer.kind != "top_tokens":  # pretend every sent request came back with an explanation
        sent = pl.col("reason").str.starts_with("llm error")
        explained = explained.with_columns(
            pl.when(sent).then(pl.lit("ok")).otherwise(pl.col("status")).alias("status"),
            # distinct per latent, so that the chance baseline finds donors as it would for real ones
            pl.when(sent).then(pl.concat_str(pl.lit(_PLACEHOLDER_EXPLANATION), pl.col("latent").cast(pl.Utf8)))
            .otherwise(pl.col("explanation")).alias("explanation"),
        )
    scoring = _scoring_requests(contexts, explained, scorer, sampling, llm)
    chance, without_cost = 0, 0.0
    if scorer.chance_baseline:
        without = _scoring_requests(contexts, explained, scorer.model_copy(update={"chance_baseline": False}),
                                    sampling, llm)
        chance = len(scoring) - len(without)
        _, _, without_cost = _priced(dry.requests + without, llm)
    prompt, completion, cost = _priced(dry.requests + scoring, llm)
    return CostEstimate(len(dry.requests) + len(scoring), prompt, completion, cost, chance,
                        cost - without_cost if chance else 0.0)
