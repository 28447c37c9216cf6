"""What the explainers and scorers need from an LLM, independent of how it is served.

`llm.client` implements this against any OpenAI-compatible endpoint; `llm.local`
implements it in-process with transformers. Prompt and scoring logic only see
`ChatLLM`, so unit tests can pass a scripted fake.
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
    usage: Usage

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer every request (same order), with bounded concurrency. Never raises for a
        single failed request: that Completion carries `error` and is counted in `usage`."""
        ...


def failed(kind: str, message: str) -> Completion:
    return Completion(text=None, error=f"{kind}: {message}")


def error_kind(completion: Completion) -> str:
    return (completion.error or "unknown").split(":", 1)[0]
