"""`ChatLLM` over any OpenAI-compatible endpoint.

Works against vLLM, OpenRouter, OpenAI, llama.cpp's server and `transformers serve`.
Retries are ours (the openai client's own are disabled) so every retry and failure
is counted in `Usage`. A request that still fails becomes a `Completion` carrying
`error="<kind>: <message>"`; it is never dropped. The one thing raised is an endpoint
that is down (`EndpointError`, naming the URL): when a request cannot connect and the
server has never answered (or this request has used its retries), one probe decides
between a transient fault (retry) and a dead endpoint (stop every request at once).

Prompt scoring (`score_prompts`) uses the legacy completions endpoint with `echo` and
`logprobs` (vLLM, llama.cpp); a server that rejects or ignores them turns
`supports_prompt_logprobs` off, and every later request is a counted failure, never sent.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import openai

from ..errors import EndpointError
from .api import (
    ChatRequest,
    Completion,
    PromptScore,
    PromptToken,
    ScoreRequest,
    TokenLogprobs,
    failed,
    failed_score,
)
from .cache import CachedAccounting, ResponseCache

log = logging.getLogger(__name__)

# Local servers run without auth, but the openai client refuses an empty key.
PLACEHOLDER_API_KEY = "no-key"
# Kinds worth another attempt; the rest (auth, bad_request, bad_response) fail the same way again.
# bad_response here is an exception while reading the body (empty, invalid JSON): a gateway hiccup.
RETRYABLE = frozenset({"rate_limit", "server", "timeout", "connection", "bad_response"})
MAX_RETRY_AFTER_S = 300.0
PROBE_TIMEOUT_S = 10.0
PROBE_TTL_S = 5.0  # a probe's verdict is reused this long by the other workers
_NO_PROMPT_LOGPROBS = ("{} returns no prompt logprobs (completions with echo + logprobs); serve the model with "
                       "vLLM or llama.cpp, or use llm.backend: local for surprisal, simulation and intervention")
T = TypeVar("T")


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


# -- rate limit -----------------------------------------------------------------------------------
class _RateLimiter:
    """Spaces request starts evenly (60/rpm seconds apart) across all worker threads."""

    def __init__(self, requests_per_minute: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


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
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(cache, price_per_million_input, price_per_million_output)
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.supports_logprobs = True  # optimistic until the server rejects or omits them
        self.supports_prompt_logprobs = True  # likewise, for echoed prompt logprobs
        self.max_concurrency = max(1, max_concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._secret = api_key or None  # only for redaction; never logged or stored
        self._sleep = sleep
        self._limiter = _RateLimiter(requests_per_minute, sleep=sleep)
        self._answered = False  # the server has sent at least one HTTP response
        self._probe_lock = threading.Lock()
        self._probe: tuple[float, EndpointError | None] | None = None  # (when, verdict)
        self._down: EndpointError | None = None  # set once a probe finds the endpoint down
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
        """Raise `EndpointError` naming the URL if the endpoint cannot be reached or refuses the key."""
        try:
            self._client.models.list(timeout=min(self.timeout_s, PROBE_TIMEOUT_S))
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            raise EndpointError(
                f"LLM endpoint {self.base_url} is unreachable ({self._redact(_reason(cause))}); start the server, "
                "or fix llm.base_url"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise EndpointError(
                f"LLM endpoint {self.base_url} refused the API key (HTTP {e.status_code}); put a valid key in the "
                "environment variable named by llm.api_key_env"
            ) from None
        except openai.APIStatusError:
            pass  # it answered; some servers simply have no /models route
        self._answered = True

    def _complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Answer each request; raises `EndpointError` only when the endpoint is down."""
        results, misses = self._lookup(requests)
        return self._send(self._answer, requests, results, misses)

    def _send(self, send: Callable[[Any], Any], requests: Sequence[Any], results: list[Any],
              misses: list[int]) -> list[Any]:
        """`send` each missed request, `max_concurrency` at a time, into `results`."""
        if misses:
            workers = min(self.max_concurrency, len(misses))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
                futures = [(i, pool.submit(send, requests[i])) for i in misses]
                try:
                    for i, future in futures:
                        results[i] = future.result()
                except EndpointError:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                finally:
                    self._flush_cache()  # answers already paid for survive an endpoint that went down
        return results  # every slot is filled

    def _endpoint_down(self) -> EndpointError | None:
        """One probe at a time; its verdict is shared by every worker for PROBE_TTL_S."""
        with self._probe_lock:
            now = time.monotonic()
            if self._probe is None or now - self._probe[0] > PROBE_TTL_S:
                try:
                    self.check_reachable()
                    verdict = None
                except EndpointError as e:
                    verdict = e
                self._probe = (time.monotonic(), verdict)
            self._down = self._probe[1]
            return self._down

    def _answer(self, request: ChatRequest) -> Completion:
        def attempt() -> Completion:
            want_logprobs = bool(request.top_logprobs) and self.supports_logprobs
            response = self._client.chat.completions.create(
                model=self.model_name,
                messages=list(request.messages),  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                **({"logprobs": True, "top_logprobs": request.top_logprobs} if want_logprobs else {}),
            )
            self._answered = True
            return self._parse(response, want_logprobs)

        def drop_logprobs(e: Exception, kind: str) -> bool:
            if request.top_logprobs and self.supports_logprobs and kind == "bad_request" and "logprob" in str(e).lower():
                log.info("%s rejects logprobs; continuing without them", self.base_url)
                self.supports_logprobs = False
                return True
            return False

        completion, retries = self._retrying(attempt, drop_logprobs, failed)
        return self._finish(request, completion, retries)

    def _retrying(self, attempt: Callable[[], T], downgrade: Callable[[Exception, str], bool],
                  failure: Callable[[str, str], T]) -> tuple[T, int]:
        """Call `attempt` until it returns, retrying retryable errors with backoff; `downgrade(error,
        kind)` may change the request and ask for an immediate retry. Returns (result, retries);
        raises `EndpointError` when a probe finds the endpoint down."""
        retries = 0  # extra attempts of any cause, for `usage.retries`
        failures = 0  # failed attempts, bounded by max_retries
        while True:
            if self._down is not None:
                raise EndpointError(str(self._down))
            self._limiter.wait()
            try:
                return attempt(), retries
            except Exception as e:  # noqa: BLE001 - every failure becomes a counted result
                kind = _classify(e)
                if isinstance(e, openai.APIStatusError):
                    self._answered = True
                if downgrade(e, kind):
                    retries += 1
                    continue
                if kind in ("connection", "timeout") and (not self._answered or failures >= self.max_retries):
                    down = self._endpoint_down()  # never answered, or retries used up: flaky or dead?
                    if down is not None:
                        raise EndpointError(str(down)) from None
                cause = f" ({e.__cause__})" if e.__cause__ is not None and str(e.__cause__) else ""
                message = self._redact(f"{type(e).__name__}: {e}{cause}")[:300]
                if kind not in RETRYABLE or failures >= self.max_retries:
                    if kind in RETRYABLE:
                        message = f"{message} (after {failures} retries)"
                    return failure(kind, message), retries
                delay = self._backoff(failures, _retry_after_s(e))
                log.warning("LLM request failed (%s); retry %d in %.2fs", kind, failures + 1, delay)
                self._sleep(delay)
                failures += 1
                retries += 1

    # -- prompt scoring (legacy completions with echo + logprobs) -----------------------------
    def _score_many(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Score each prompt; raises `EndpointError` only when the endpoint is down."""
        results, misses = self._lookup_scores(requests)
        return self._send(self._score, requests, results, misses)

    def _score(self, request: ScoreRequest) -> PromptScore:
        if not self.supports_prompt_logprobs:
            return self._finish_score(request, failed_score("unsupported", _NO_PROMPT_LOGPROBS.format(self.base_url)),
                                      sent=False)
        billed: list[int] = [0]

        def attempt() -> PromptScore:
            response = self._client.completions.create(
                model=self.model_name, prompt=request.prompt, max_tokens=1, temperature=0.0, echo=True,
                logprobs=max(1, request.top_logprobs or 1),
            )
            self._answered = True
            billed[0] = getattr(getattr(response, "usage", None), "completion_tokens", 0) or 0
            score = _prompt_score(response, request)
            if score is None:
                self.supports_prompt_logprobs = False
                return failed_score("unsupported", _NO_PROMPT_LOGPROBS.format(self.base_url))
            return score

        def unsupported(e: Exception, kind: str) -> bool:
            status = getattr(e, "status_code", None)
            if status == 404 or (kind == "bad_request" and any(w in str(e).lower() for w in ("echo", "logprob"))):
                log.info("%s offers no prompt logprobs (%s)", self.base_url, type(e).__name__)
                self.supports_prompt_logprobs = False
            return False

        score, retries = self._retrying(attempt, unsupported, failed_score)
        return self._finish_score(request, score, retries, completion_tokens=billed[0])

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


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


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



def _prompt_score(response: Any, request: ScoreRequest) -> PromptScore | None:
    """The echoed prompt's tokens from `score_from` on, or None when the server sent no prompt logprobs."""
    choices = getattr(response, "choices", None)
    logprobs = getattr(choices[0], "logprobs", None) if choices else None
    tokens, values = getattr(logprobs, "tokens", None), getattr(logprobs, "token_logprobs", None)
    offsets = getattr(logprobs, "text_offset", None)
    if not tokens or values is None or offsets is None or len({len(tokens), len(values), len(offsets)}) != 1:
        return None
    tops = getattr(logprobs, "top_logprobs", None) or [None] * len(tokens)
    out, in_prompt, asked = [], 0, 0
    for index, (text, value, offset, top) in enumerate(zip(tokens, values, offsets, tops, strict=False)):
        if offset >= len(request.prompt):
            break  # the generated token
        in_prompt += 1
        if offset < request.score_from or index == 0:
            continue  # before the scored part, or the first token (nothing predicts it)
        asked += 1
        if value is not None:
            alternatives = {str(k): float(v) for k, v in top.items()} if request.top_logprobs and top else None
            out.append(PromptToken(str(text), int(offset), float(value), alternatives))
    if len(out) < asked:
        return None  # tokens to score, but their logprobs did not come back
    usage = getattr(response, "usage", None)
    return PromptScore(tokens=tuple(out), prompt_tokens=getattr(usage, "prompt_tokens", 0) or in_prompt)
