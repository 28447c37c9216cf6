"""Prompt scoring (`score_prompts`): in-process on the real SmolLM2, and over HTTP through the legacy
completions endpoint (echo + logprobs), with the same numbers, faults counted and a cache."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from support.fake_openai_server import FaultServer

from autointerp_assets.llm.api import ScoreRequest
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.client import OpenAICompatibleLLM
from autointerp_assets.llm.local import LocalChatLLM
from autointerp_assets.store.store import ArtifactStore

SECRET = "sk-test-SECRET-0123456789abcdef"
PREFIX = "Here is a fact about geography.\nFact:"
REQUESTS = [
    ScoreRequest(PREFIX + " The capital of France is Paris.", score_from=len(PREFIX), top_logprobs=4),
    ScoreRequest(PREFIX + " The capital of France is banana.", score_from=len(PREFIX), top_logprobs=4),
    ScoreRequest("def add(a, b):\n    return a + b\n", score_from=0),
]


@pytest.fixture(scope="module")
def local() -> LocalChatLLM:
    return LocalChatLLM()


@pytest.fixture(scope="module")
def scored(local: LocalChatLLM):
    return local.score_prompts(REQUESTS)


def test_local_scores_cover_the_text_from_score_from(scored):
    for request, score in zip(REQUESTS, scored, strict=True):
        assert score.ok and score.tokens and score.prompt_tokens > len(score.tokens) - 1
        assert all(t.offset >= request.score_from for t in score.tokens)
        # Tokens are contiguous and reach the end; the first token of the prompt is never scored.
        assert "".join(t.text for t in score.tokens) == request.prompt[score.tokens[0].offset :]
        assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in score.tokens)
        for t in score.tokens:
            if request.top_logprobs:
                assert t.top and 1 <= len(t.top) <= request.top_logprobs
                assert max(t.top.values()) >= t.logprob - 1e-4  # the best alternative is at least as likely
            else:
                assert t.top is None


def test_local_scores_know_a_fact(scored):
    paris, banana = scored[0], scored[1]
    assert paris.logprob_sum > banana.logprob_sum + 3  # "Paris" is far likelier than "banana"


def test_batching_and_padding_do_not_change_scores(local, scored):
    one_by_one = LocalChatLLM(batch_size=1)
    one_by_one._loaded = local._loaded  # the same weights, no second load
    again = one_by_one.score_prompts(REQUESTS)
    for a, b in zip(scored, again, strict=True):
        assert [t.text for t in a.tokens] == [t.text for t in b.tokens]
        assert a.logprob_sum == pytest.approx(b.logprob_sum, abs=1e-3)  # fp32 scoring: padding-proof


def test_local_cache_answers_without_loading(tmp_path, local):
    store = ArtifactStore(str(tmp_path))
    first = LocalChatLLM(cache=ResponseCache(store))
    first._loaded = local._loaded
    out = first.score_prompts(REQUESTS[:2])
    fresh = LocalChatLLM(cache=ResponseCache(store))
    again = fresh.score_prompts(REQUESTS[:2])
    assert all(s.cached for s in again) and not fresh.is_loaded
    assert [s.tokens for s in again] == [s.tokens for s in out]
    assert fresh.usage.cache_hits == 2 and fresh.usage.requests == 0 and first.usage.requests == 2


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FaultServer]:
    s = FaultServer()
    yield s
    s.close()


def client(server: FaultServer, **kw) -> OpenAICompatibleLLM:
    kw = {"max_concurrency": 2, "timeout_s": 30.0, "max_retries": 2, "backoff_base_s": 0.01, **kw}
    return OpenAICompatibleLLM(server.base_url, "test-model", SECRET, **kw)  # type: ignore[arg-type]


def test_http_scores_equal_the_in_process_model(server, local, scored):
    """The server computes prompt logprobs with the real model; the client maps echo, offsets and
    alternatives back to exactly what the in-process backend returns."""

    def real(prompt: str, n: int):
        tokens = local.score_prompts([ScoreRequest(prompt, 0, n)])[0].tokens
        return [(prompt[: tokens[0].offset], 0, None, {})] + [(t.text, t.offset, t.logprob, t.top) for t in tokens]

    server.prompt_logprobs = real
    llm = client(server)
    out = llm.score_prompts(REQUESTS)
    for a, b in zip(out, scored, strict=True):
        assert a.ok and [t.text for t in a.tokens] == [t.text for t in b.tokens]
        assert [t.offset for t in a.tokens] == [t.offset for t in b.tokens]
        assert a.logprob_sum == pytest.approx(b.logprob_sum, abs=1e-3)
        assert [sorted(t.top or {}) for t in a.tokens] == [sorted(t.top or {}) for t in b.tokens]
    bodies = [b for b in server.bodies if "prompt" in b]
    assert all(b["echo"] is True and b["max_tokens"] == 1 and b["logprobs"] >= 1 for b in bodies)
    assert llm.usage.requests == 3 and llm.usage.failures == 0 and llm.usage.prompt_tokens > 0


def test_http_cache_and_retries(server, tmp_path):
    server.policy = lambda n, body: "500" if n == 0 else "ok"
    store = ArtifactStore(str(tmp_path))
    llm = client(server, max_concurrency=1, cache=ResponseCache(store))
    out = llm.score_prompts(REQUESTS[:2])
    assert all(s.ok for s in out) and llm.usage.retries == 1 and llm.usage.failures == 0
    again = client(server, cache=ResponseCache(store))
    assert [s.tokens for s in again.score_prompts(REQUESTS[:2])] == [s.tokens for s in out]
    assert again.usage.requests == 0 and again.usage.cache_hits == 2


@pytest.mark.parametrize("action", ["reject_logprobs", "no_route", "ok_nologprobs"])
def test_server_without_prompt_logprobs_is_detected_and_every_request_counted(server, action):
    server.policy = lambda n, body: action
    llm = client(server, max_concurrency=1)
    out = llm.score_prompts(REQUESTS)
    assert not llm.supports_prompt_logprobs
    assert all(not s.ok and s.error.startswith(("unsupported", "bad_request")) for s in out)
    assert llm.usage.failures == 3 and server.n_requests == 1  # the rest are refused before sending
    assert SECRET not in " ".join(s.error for s in out)
    assert "vLLM or llama.cpp" in out[-1].error


def test_equal_requests_are_sent_once(server):
    llm = client(server)
    out = llm.score_prompts([REQUESTS[2], REQUESTS[0], REQUESTS[2]])
    assert server.n_requests == 2 and llm.usage.requests == 2
    assert out[0].tokens == out[2].tokens
