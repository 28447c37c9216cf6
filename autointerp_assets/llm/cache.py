"""The on-disk response cache and the usage accounting shared by every `ChatLLM` backend.

Responses are stored per scope (one partition of one asset, e.g. `explanations/layers.6/00000-04095`)
as a few parquet segments keyed by the content hash of (model, messages, params):

    llm_cache/<model-slug>/<scope>/<segment>.parquet

A run loads its scope once (one listing and a few reads; more than `MAX_SEGMENTS` segments are
merged into one), answers lookups from memory, and appends new answers as a fresh segment every
`flush_every` answers or `flush_after_s` seconds and at the end of each `complete_many`; a crash
loses at most that much. Segments are immutable and uniquely named, so concurrent runs never
contend: runs of different partitions touch different directories, and two runs of the same
partition each add their own segment. A rerun answers every request it has seen from the cache,
so it never pays twice; only successful answers are cached, so a rerun retries exactly the failures.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from ..store.store import ArtifactStore
from .api import ChatRequest, Completion, PromptScore, PromptToken, ScoreRequest, TokenLogprobs, Usage, error_kind

log = logging.getLogger(__name__)

MAX_SEGMENTS = 16
# One row per answer: the content hash, the request and the answer as JSON (any request kind).
SEGMENT_SCHEMA = {"key": pl.Utf8, "request": pl.Utf8, "response": pl.Utf8}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def _scope_dir(scope: str) -> str:
    return "/".join(_slug(part) for part in scope.strip("/").split("/") if part) or "shared"


def _request_payload(model: str, request: ChatRequest | ScoreRequest) -> dict[str, Any]:
    if isinstance(request, ScoreRequest):  # its own key space: "kind" never appears in a chat payload
        return {"model": model, "kind": "prompt_logprobs", "prompt": request.prompt,
                "score_from": request.score_from, "top_logprobs": request.top_logprobs}
    return {"model": model, "messages": [dict(m) for m in request.messages], "max_tokens": request.max_tokens,
            "temperature": request.temperature, "top_logprobs": request.top_logprobs}


class ResponseCache:
    """Successful responses of one scope, looked up in memory after one load."""

    def __init__(self, store: ArtifactStore, prefix: str = "llm_cache", scope: str = "shared",
                 flush_every: int = 64, flush_after_s: float = 30.0):
        self.store = store
        self.prefix = prefix.strip("/")
        self.scope = _scope_dir(scope)
        self.flush_every, self.flush_after_s = flush_every, flush_after_s
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}  # model -> key -> row
        self._pending: dict[str, list[dict[str, Any]]] = {}  # model -> rows not yet written
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, request: ChatRequest | ScoreRequest) -> str:
        canonical = json.dumps(_request_payload(model, request), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def directory(self, model: str) -> str:
        return f"{self.prefix}/{_slug(model)}/{self.scope}"

    # -- chat completions ---------------------------------------------------------------------
    def get_many(self, model: str, requests: Sequence[ChatRequest]) -> list[Completion | None]:
        return [_completion(self.lookup(model, self.key(model, r))) for r in requests]

    # -- prompt logprobs (surprisal, simulation): the same segments, their own key space -------------

    def get_score(self, model: str, request: ScoreRequest) -> PromptScore | None:
        raw = self.lookup(model, self.key(model, request))
        if raw is None:
            return None
        try:
            tokens = tuple(PromptToken(t["text"], t["offset"], t["logprob"], t["top"]) for t in raw["tokens"])
            return PromptScore(tokens=tokens, cached=True, prompt_tokens=raw["prompt_tokens"])
        except (KeyError, TypeError) as e:  # a damaged entry is scored afresh
            log.warning("ignoring unreadable LLM cache entry: %s", e)
            return None

    def put_score(self, model: str, request: ScoreRequest, score: PromptScore) -> None:
        if not score.ok:
            return
        self.store_response(model, self.key(model, request), _request_payload(model, request), {
            "tokens": [{"text": t.text, "offset": t.offset, "logprob": t.logprob, "top": t.top}
                       for t in score.tokens or ()],
            "prompt_tokens": score.prompt_tokens,
        })

    def get(self, model: str, request: ChatRequest) -> Completion | None:
        return self.get_many(model, [request])[0]

    def put(self, model: str, request: ChatRequest, completion: Completion) -> None:
        if not completion.ok:
            return  # failures are not cached, so a rerun retries exactly them
        logprobs = completion.logprobs
        self.store_response(model, self.key(model, request), _request_payload(model, request), {
            "text": completion.text,
            "logprobs": [{"token": t.token, "top": t.top} for t in logprobs] if logprobs is not None else None,
            "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
        })

    # -- any request kind: a content hash, the request (for people to read), the response ------------
    def lookup(self, model: str, key: str) -> dict[str, Any] | None:
        """The stored response for a content hash, or None."""
        row = self._load(model).get(key)
        if row is None:
            return None
        try:
            return json.loads(row["response"])
        except ValueError as e:  # a damaged entry is answered afresh
            log.warning("ignoring unreadable LLM cache entry %s: %s", key, e)
            return None

    def _load(self, model: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            if model in self._entries:
                return self._entries[model]
            segments = [p for p in self.store.list(self.directory(model)) if p.endswith(".parquet")]
            frames, readable = [], []
            for path in segments:
                try:
                    frames.append(self.store.read_parquet(path).select(list(SEGMENT_SCHEMA)).cast(SEGMENT_SCHEMA))
                    readable.append(path)
                except Exception as e:  # noqa: BLE001 - an unreadable segment is answered afresh, not fatal
                    log.warning("ignoring unreadable LLM cache segment %s: %s: %s", path, type(e).__name__, e)
            merged = pl.concat(frames).unique("key", keep="first", maintain_order=True) if frames else None
            if merged is not None and len(readable) > MAX_SEGMENTS:
                self._write_segment(model, merged)  # written before the parts are deleted: nothing is lost
                for path in readable:
                    self.store.delete(path)
            self._entries[model] = {row["key"]: row for row in merged.iter_rows(named=True)} if merged is not None else {}
            return self._entries[model]

    def store_response(self, model: str, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Keep one successful response; written with the next segment. The request is kept so a
        person can read what was asked (it never holds the API key)."""
        row = {"key": key, "request": json.dumps(request, ensure_ascii=False),
               "response": json.dumps(response, ensure_ascii=False)}
        entries = self._load(model)
        with self._lock:
            entries[row["key"]] = row
            self._pending.setdefault(model, []).append(row)
            due = (sum(map(len, self._pending.values())) >= self.flush_every
                   or time.monotonic() - self._last_flush >= self.flush_after_s)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the answers not yet stored as one new segment per model."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        for model, rows in pending.items():
            if rows:
                self._write_segment(model, pl.DataFrame(rows, schema=SEGMENT_SCHEMA))

    def _write_segment(self, model: str, frame: pl.DataFrame) -> None:
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:8]}.parquet"
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd")
        self.store.write_bytes(f"{self.directory(model)}/{name}", buf.getvalue())


def _completion(raw: dict[str, Any] | None) -> Completion | None:
    if raw is None:
        return None
    try:
        logprobs = raw["logprobs"]
        return Completion(
            text=raw["text"],
            logprobs=tuple(TokenLogprobs(t["token"], t["top"]) for t in logprobs) if logprobs is not None else None,
            cached=True, prompt_tokens=raw["prompt_tokens"], completion_tokens=raw["completion_tokens"],
        )
    except (KeyError, TypeError) as e:  # a damaged entry is answered afresh
        log.warning("ignoring unreadable LLM cache entry: %s", e)
        return None


# -- shared accounting -------------------------------------------------------------------------
def once_each(model: str, requests: Sequence[Any], answer_distinct: Callable[[list[Any]], list[Any]]) -> list[Any]:
    """`answer_distinct` over the distinct requests only, its answers copied to the repeats: equal
    prompts in one call (two latents sharing a window and an explanation) are paid for once and get
    one answer, never two that differ with batch numerics."""
    keys = [ResponseCache.key(model, r) for r in requests]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if len(first) == len(requests):
        return answer_distinct(list(requests))
    answers = dict(zip(first, answer_distinct([requests[i] for i in first.values()]), strict=True))
    return [answers[key] for key in keys]


class CachedAccounting:
    """Cache lookup and `Usage` bookkeeping shared by the HTTP and in-process backends.

    Backends implement `_complete_many` and `_score_many` over distinct requests (`once_each`):
    `_lookup` first, `_finish` per answered request, and `_flush_cache` before they return."""

    model_name: str
    usage: Usage

    def __init__(self, cache: ResponseCache | None, price_in: float = 0.0, price_out: float = 0.0):
        self.cache = cache
        self.usage = Usage()
        self._price_in = price_in
        self._price_out = price_out
        self._usage_lock = threading.Lock()

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return once_each(self.model_name, requests, self._complete_many)

    def score_prompts(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        return once_each(self.model_name, requests, self._score_many)

    def chat_prompt(self, user: str) -> str | None:
        return None  # a remote server's chat template is not known to the client

    def _complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        raise NotImplementedError

    def _score_many(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        raise NotImplementedError

    def _lookup(self, requests: Sequence[ChatRequest]) -> tuple[list[Completion | None], list[int]]:
        """Cached answers in request order, and the indices still to be answered."""
        results = self.cache.get_many(self.model_name, requests) if self.cache else [None] * len(requests)
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
        self._count(score, score.prompt_tokens, completion_tokens, retries, sent)
        if self.cache is not None and score.ok:
            try:
                self.cache.put_score(self.model_name, request, score)
            except Exception as e:  # noqa: BLE001 - the score is still good; only a rerun pays again
                log.warning("could not cache a prompt score: %s: %s", type(e).__name__, e)
        return score

    def _finish(self, request: ChatRequest, completion: Completion, retries: int = 0) -> Completion:
        """Count one answered request and cache it if it succeeded."""
        self._count(completion, completion.prompt_tokens, completion.completion_tokens, retries, sent=True)
        if self.cache is not None and completion.ok:
            try:
                self.cache.put(self.model_name, request, completion)
            except Exception as e:  # noqa: BLE001 - the answer is still good; only a rerun pays again
                log.warning("could not cache an LLM response: %s: %s", type(e).__name__, e)
        return completion

    def _count(self, result: Completion | PromptScore, prompt_tokens: int, completion_tokens: int, retries: int,
               sent: bool) -> None:
        with self._usage_lock:
            u = self.usage
            u.requests += int(sent)
            u.retries += retries
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.cost_usd += (prompt_tokens * self._price_in + completion_tokens * self._price_out) / 1e6
            if not result.ok:
                u.failures += 1
                kind = error_kind(result)
                u.errors[kind] = u.errors.get(kind, 0) + 1

    def _flush_cache(self) -> None:
        if self.cache is not None:
            try:
                self.cache.flush()
            except Exception as e:  # noqa: BLE001 - the answers are still good; only a rerun pays again
                log.warning("could not store LLM responses in the cache: %s: %s", type(e).__name__, e)
