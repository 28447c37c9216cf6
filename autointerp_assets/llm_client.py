"""`ChatLLM` over any OpenAI-compatible endpoint, plus the on-disk response cache.

Works against vLLM, OpenRouter, OpenAI, llama.cpp's server and `transformers serve`.
Retries are ours (the openai client's own are disabled) so every retry and failure
is counted in `Usage`. A request that still fails becomes a `Completion` carrying
`error="<kind>: <message>"`; it is never raised and never dropped.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from autointerp_assets.llm_api import ChatRequest, Completion, TokenLogprobs, Usage
from autointerp_assets.storage import ArtifactStore

log = logging.getLogger(__name__)

# Local servers run without auth, but the openai client refuses an empty key.
PLACEHOLDER_API_KEY = "no-key"
# Kinds worth another attempt; the rest (auth, bad_request, bad_response) fail the same way again.
RETRYABLE = frozenset({"rate_limit", "server", "timeout", "connection"})
MAX_RETRY_AFTER_S = 300.0


# -- errors ----------------------------------------------------------------------------
def failed(kind: str, message: str) -> Completion:
    return Completion(text=None, error=f"{kind}: {message}")


def error_kind(completion: Completion) -> str:
    return (completion.error or "unknown").split(":", 1)[0]


def _classify(exc: Exception) -> str:
    # APITimeoutError subclasses APIConnectionError, so it is checked first.
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return "rate_limit"
        if status == 408:
            return "timeout"
        if status >= 500:
            return "server"
        if status in (401, 403):
            return "auth"
        return "bad_request"
    # The body was not a chat completion (e.g. invalid JSON, validation error).
    return "bad_response"


def _retry_after_s(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or date), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                pass
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after") or "")
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- cache -------------------------------------------------------------------------------
def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


class ResponseCache:
    """One JSON file per successful response: <prefix>/<model-slug>/<hash[:2]>/<hash>.json."""

    def __init__(self, store: ArtifactStore, prefix: str = "llm_cache"):
        self.store = store
        self.prefix = prefix.strip("/")

    @staticmethod
    def key(model: str, request: ChatRequest) -> str:
        payload = {
            "model": model,
            "messages": [dict(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_logprobs": request.top_logprobs,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, model: str, request: ChatRequest) -> str:
        digest = self.key(model, request)
        return f"{self.prefix}/{_slug(model)}/{digest[:2]}/{digest}.json"

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


# -- rate limit -----------------------------------------------------------------------------------
class _RateLimiter:
    """Spaces request starts evenly (60/rpm seconds apart) across all worker threads."""

    def __init__(self, requests_per_minute: float | None):
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


# -- the client --------------------------------------------------------------------------------------
class OpenAICompatibleLLM(CachedAccounting):
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        price_per_million_input: float = 0.0,
        price_per_million_output: float = 0.0,
        cache: ResponseCache | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
    ):
        super().__init__(cache, price_per_million_input, price_per_million_output)
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.supports_logprobs = True  # optimistic until the server rejects or omits them
        self.max_concurrency = max(1, max_concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._secret = api_key or None  # only for redaction; never logged or stored
        self._limiter = _RateLimiter(requests_per_minute)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or PLACEHOLDER_API_KEY,
            timeout=timeout_s,
            max_retries=0,  # our retries, so they are counted
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model_name!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def check_reachable(self) -> None:
        """Raise a clear error if the endpoint does not answer; call before a big run."""
        try:
            self._client.models.list(timeout=min(self.timeout_s, 10.0))
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            raise ConnectionError(
                f"LLM endpoint {self.base_url} is unreachable ({type(e).__name__}); "
                "start the server or fix llm.base_url"
            ) from None
        except openai.AuthenticationError:
            raise PermissionError(
                f"LLM endpoint {self.base_url} rejected the API key; check the api_key EnvVar"
            ) from None
        except openai.APIStatusError:
            pass  # it answered; some servers simply have no /models route

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        results, misses = self._lookup(requests)
        if misses:
            workers = min(self.max_concurrency, len(misses))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
                for i, completion in zip(misses, pool.map(lambda i: self._answer(requests[i]), misses), strict=True):
                    results[i] = completion
        return results  # type: ignore[return-value]  # every slot is filled

    def _answer(self, request: ChatRequest) -> Completion:
        retries = 0  # extra attempts of any cause, for `usage.retries`
        failures = 0  # failed attempts, bounded by max_retries
        while True:
            want_logprobs = bool(request.top_logprobs) and self.supports_logprobs
            self._limiter.wait()
            try:
                response = self._client.chat.completions.create(
                    model=self.model_name,
                    messages=list(request.messages),  # type: ignore[arg-type]
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    **({"logprobs": True, "top_logprobs": request.top_logprobs} if want_logprobs else {}),
                )
                completion = self._parse(response, want_logprobs)
            except Exception as e:  # noqa: BLE001 - every failure becomes a counted Completion
                kind = _classify(e)
                if want_logprobs and kind == "bad_request" and "logprob" in str(e).lower():
                    log.info("%s rejects logprobs; continuing without them", self.base_url)
                    self.supports_logprobs = False
                    retries += 1
                    continue
                message = self._redact(f"{type(e).__name__}: {e}")[:300]
                if kind not in RETRYABLE or failures >= self.max_retries:
                    if kind in RETRYABLE:
                        message = f"{message} (after {failures} retries)"
                    completion = failed(kind, message)
                else:
                    delay = self._backoff(failures, _retry_after_s(e))
                    log.warning("LLM request failed (%s); retry %d in %.2fs", kind, failures + 1, delay)
                    time.sleep(delay)
                    failures += 1
                    retries += 1
                    continue
            return self._finish(request, completion, retries)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential with jitter so concurrent workers do not retry in lockstep; never
        # sooner than the server's Retry-After (clamped, so a bogus header cannot stall a run).
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.5)
        return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER_S))

    def _parse(self, response: Any, want_logprobs: bool) -> Completion:
        choices = getattr(response, "choices", None)
        if not choices:
            return failed("bad_response", f"no choices in response ({type(response).__name__})")
        choice = choices[0]
        text = getattr(getattr(choice, "message", None), "content", None)
        if not isinstance(text, str):
            return failed("bad_response", "choice has no message content")
        logprobs = _logprobs(choice) if want_logprobs else None
        if want_logprobs and logprobs is None:
            log.info("%s returned no logprobs; continuing without them", self.base_url)
            self.supports_logprobs = False
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            logprobs=logprobs,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )


def _logprobs(choice: Any) -> tuple[TokenLogprobs, ...] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    out = []
    for step in content:
        top = {alt.token: float(alt.logprob) for alt in (step.top_logprobs or [])}
        top.setdefault(step.token, float(step.logprob))
        out.append(TokenLogprobs(token=step.token, top=top))
    return tuple(out)
