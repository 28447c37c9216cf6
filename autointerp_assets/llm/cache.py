"""The on-disk response cache and the usage accounting shared by every `ChatLLM` backend.

A rerun answers every request it has seen from the cache, so it never pays twice; only
successful answers are cached, so a rerun retries exactly the failures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence

from ..store.store import ArtifactStore
from .api import ChatRequest, Completion, PromptScore, PromptToken, ScoreRequest, TokenLogprobs, Usage, error_kind

log = logging.getLogger(__name__)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


class ResponseCache:
    """One JSON file per successful response: <prefix>/<model-slug>/<hash[:2]>/<hash>.json."""

    def __init__(self, store: ArtifactStore, prefix: str = "llm_cache"):
        self.store = store
        self.prefix = prefix.strip("/")

    @staticmethod
    def _payload(model: str, request: ChatRequest | ScoreRequest) -> dict:
        if isinstance(request, ScoreRequest):  # its own key space: "kind" never appears in a chat payload
            return {"model": model, "kind": "prompt_logprobs", "prompt": request.prompt,
                    "score_from": request.score_from, "top_logprobs": request.top_logprobs}
        return {
            "model": model,
            "messages": [dict(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_logprobs": request.top_logprobs,
        }

    @classmethod
    def key(cls, model: str, request: ChatRequest | ScoreRequest) -> str:
        canonical = json.dumps(cls._payload(model, request), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, model: str, request: ChatRequest | ScoreRequest) -> str:
        digest = self.key(model, request)
        return f"{self.prefix}/{_slug(model)}/{digest[:2]}/{digest}.json"

    def get_score(self, model: str, request: ScoreRequest) -> PromptScore | None:
        path = self.path(model, request)
        try:
            raw = self.store.read_json(path)
            tokens = tuple(PromptToken(t["text"], t["offset"], t["logprob"], t["top"]) for t in raw["tokens"])
            return PromptScore(tokens=tokens, cached=True, prompt_tokens=raw["prompt_tokens"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable LLM cache entry %s: %s", path, e)
            return None

    def put_score(self, model: str, request: ScoreRequest, score: PromptScore) -> None:
        if not score.ok:
            return
        self.store.write_json(self.path(model, request), {
            **self._payload(model, request),
            "tokens": [{"text": t.text, "offset": t.offset, "logprob": t.logprob, "top": t.top}
                       for t in score.tokens or ()],
            "prompt_tokens": score.prompt_tokens,
        })

    def get(self, model: str, request: ChatRequest) -> Completion | None:
        path = self.path(model, request)
        try:
            raw = self.store.read_json(path)
            logprobs = raw["logprobs"]
            return Completion(
                text=raw["text"],
                logprobs=tuple(TokenLogprobs(t["token"], t["top"]) for t in logprobs) if logprobs is not None else None,
                cached=True,
                prompt_tokens=raw["prompt_tokens"],
                completion_tokens=raw["completion_tokens"],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable: answer afresh, overwrite
            log.warning("ignoring unreadable LLM cache entry %s: %s", path, e)
            return None

    def put(self, model: str, request: ChatRequest, completion: Completion) -> None:
        if not completion.ok:
            return  # failures are not cached, so a rerun retries exactly them
        logprobs = completion.logprobs
        self.store.write_json(
            self.path(model, request),
            {
                # The request is kept so a person can read what was asked; never the key.
                "model": model,
                "messages": [dict(m) for m in request.messages],
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_logprobs": request.top_logprobs,
                "text": completion.text,
                "logprobs": [{"token": t.token, "top": t.top} for t in logprobs] if logprobs is not None else None,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
        )


# -- shared accounting -------------------------------------------------------------------------
class CachedAccounting:
    """Cache lookup and `Usage` bookkeeping shared by the HTTP and in-process backends."""

    model_name: str
    usage: Usage

    def __init__(self, cache: ResponseCache | None, price_in: float = 0.0, price_out: float = 0.0):
        self.cache = cache
        self.usage = Usage()
        self._price_in = price_in
        self._price_out = price_out
        self._usage_lock = threading.Lock()

    def _lookup(self, requests: Sequence[ChatRequest]) -> tuple[list[Completion | None], list[int]]:
        """Cached answers in request order, and the indices still to be answered."""
        results: list[Completion | None] = [
            self.cache.get(self.model_name, r) if self.cache else None for r in requests
        ]
        misses = [i for i, c in enumerate(results) if c is None]
        with self._usage_lock:
            self.usage.cache_hits += len(requests) - len(misses)
        return results, misses

    def _lookup_scores(self, requests: Sequence[ScoreRequest]) -> tuple[list[PromptScore | None], list[int]]:
        results: list[PromptScore | None] = [
            self.cache.get_score(self.model_name, r) if self.cache else None for r in requests
        ]
        misses = [i for i, c in enumerate(results) if c is None]
        with self._usage_lock:
            self.usage.cache_hits += len(requests) - len(misses)
        return results, misses

    def _finish_score(self, request: ScoreRequest, score: PromptScore, retries: int = 0, *,
                      sent: bool = True, completion_tokens: int = 0) -> PromptScore:
        """Count one prompt-scoring request (`sent=False`: refused before sending, a failure all the same)."""
        with self._usage_lock:
            u = self.usage
            u.requests += int(sent)
            u.retries += retries
            u.prompt_tokens += score.prompt_tokens
            u.completion_tokens += completion_tokens
            u.cost_usd += (score.prompt_tokens * self._price_in + completion_tokens * self._price_out) / 1e6
            if not score.ok:
                u.failures += 1
                kind = error_kind(score)
                u.errors[kind] = u.errors.get(kind, 0) + 1
        if self.cache is not None and score.ok:
            try:
                self.cache.put_score(self.model_name, request, score)
            except Exception as e:  # noqa: BLE001 - the score is still good; only a rerun pays again
                log.warning("could not cache a prompt score: %s: %s", type(e).__name__, e)
        return score

    def _finish(self, request: ChatRequest, completion: Completion, retries: int = 0) -> Completion:
        """Count one answered request and cache it if it succeeded."""
        with self._usage_lock:
            u = self.usage
            u.requests += 1
            u.retries += retries
            u.prompt_tokens += completion.prompt_tokens
            u.completion_tokens += completion.completion_tokens
            u.cost_usd += (
                completion.prompt_tokens * self._price_in + completion.completion_tokens * self._price_out
            ) / 1e6
            if not completion.ok:
                u.failures += 1
                kind = error_kind(completion)
                u.errors[kind] = u.errors.get(kind, 0) + 1
        if self.cache is not None and completion.ok:
            try:
                self.cache.put(self.model_name, request, completion)
            except Exception as e:  # noqa: BLE001 - the answer is still good; only a rerun pays again
                log.warning("could not cache an LLM response: %s: %s", type(e).__name__, e)
        return completion

