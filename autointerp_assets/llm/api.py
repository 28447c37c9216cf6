"""What the explainers and scorers need from an LLM, independent of how it is served.

`llm.client` implements this against any OpenAI-compatible endpoint; `llm.local`
implements it in-process with transformers. Prompt and scoring logic only see
`ChatLLM`, so unit tests can pass a scripted fake.

Two kinds of request:
- chat (`complete_many`): messages in, generated text (and top logprobs per generated token) out;
- prompt scoring (`score_prompts`): a raw text in (no chat template), the log-probability of each
  of its tokens given the ones before (and the top alternatives) out. Surprisal and simulation
  read these. Servers offer them through the legacy completions endpoint with `echo` and
  `logprobs` (vLLM, llama.cpp); a server that does not (OpenAI's chat models, `transformers
  serve`) turns `supports_prompt_logprobs` off and every such request becomes a counted failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    max_tokens: int = 64
    temperature: float = 0.0
    # Ask for this many alternatives per generated token; None = no logprobs needed.
    top_logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprobs:
    token: str  # the generated token
    top: dict[str, float]  # alternative token -> logprob, including the generated one


@dataclass(frozen=True)
class Completion:
    text: str | None  # None when the request failed
    logprobs: tuple[TokenLogprobs, ...] | None = None  # None when not asked for or not offered
    error: str | None = None  # why it failed, after retries
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class ScoreRequest:
    prompt: str  # raw text, scored as written (no chat template, no special tokens added)
    score_from: int = 0  # character offset: report the tokens that start at or after it
    top_logprobs: int | None = None  # alternatives per reported token; None = only the token's own


@dataclass(frozen=True)
class PromptToken:
    text: str
    offset: int  # character offset of the token's start in the prompt
    logprob: float  # log P(this token | the prompt before it)
    top: dict[str, float] | None = None  # alternative token -> logprob at this position, when asked


@dataclass(frozen=True)
class PromptScore:
    tokens: tuple[PromptToken, ...] | None  # the prompt's tokens from `score_from` on; None when failed
    error: str | None = None  # why it failed, after retries
    cached: bool = False
    prompt_tokens: int = 0  # tokens in the whole prompt (what a server bills)

    @property
    def ok(self) -> bool:
        return self.tokens is not None

    @property
    def logprob_sum(self) -> float:
        """Sum of the reported tokens' logprobs: log P(text from score_from | text before it)."""
        return float(sum(t.logprob for t in self.tokens or ()))


@dataclass
class Usage:
    """Accumulated over a materialisation; reported as asset metadata."""

    requests: int = 0  # sent to the backend (cache hits excluded)
    cache_hits: int = 0
    failures: int = 0  # requests that still failed after retries
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # error kind -> count

    def as_metadata(self) -> dict[str, float | int]:
        return {
            "llm_requests": self.requests,
            "llm_cache_hits": self.cache_hits,
            "llm_failures": self.failures,
            "llm_retries": self.retries,
            "llm_prompt_tokens": self.prompt_tokens,
            "llm_completion_tokens": self.completion_tokens,
            "llm_cost_usd": round(self.cost_usd, 6),
        }


class ChatLLM(Protocol):
    model_name: str
    supports_logprobs: bool
    supports_prompt_logprobs: bool
    usage: Usage

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer every request (same order), with bounded concurrency. Never raises for a
        single failed request: that Completion carries `error` and is counted in `usage`."""
        ...

    def score_prompts(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Score every prompt (same order); failures are returned and counted, never raised."""
        ...

    def chat_prompt(self, user: str) -> str | None:
        """The raw text the model's own chat template makes of one user message, ready for the
        assistant's reply (to score a reply with `score_prompts`); None when the template is not
        known here (a remote server)."""
        ...


def failed(kind: str, message: str) -> Completion:
    return Completion(text=None, error=f"{kind}: {message}")


def failed_score(kind: str, message: str) -> PromptScore:
    return PromptScore(tokens=None, error=f"{kind}: {message}")


def error_kind(completion: Completion | PromptScore) -> str:
    return (completion.error or "unknown").split(":", 1)[0]
