"""LocalChatLLM: the in-process SmolLM2 chat model answers, with valid logprobs, and caches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.local import LocalChatLLM
from autointerp_assets.store.store import ArtifactStore

REQUESTS = [
    ChatRequest(messages=({"role": "user", "content": "What is the capital of France?"},), max_tokens=8,
                top_logprobs=3),
    ChatRequest(
        messages=(
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "Is the sky blue? Answer yes or no."},
        ),
        max_tokens=4,
        top_logprobs=3,
    ),
    ChatRequest(messages=({"role": "user", "content": "Name a fruit."},), max_tokens=6),
]


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalChatLLM, list, Path]:
    root = tmp_path_factory.mktemp("store")
    llm = LocalChatLLM(cache=ResponseCache(ArtifactStore(str(root))))
    return llm, llm.complete_many(REQUESTS), root


def test_answers_chat_requests(answered: tuple[LocalChatLLM, list, Path]) -> None:
    llm, out, _ = answered
    assert len(out) == len(REQUESTS)
    for request, c in zip(REQUESTS, out, strict=True):
        assert c.ok and c.text and c.text.strip(), c
        assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= request.max_tokens
        assert not c.cached
    u = llm.usage
    assert u.requests == 3 and u.failures == 0 and u.cache_hits == 0 and u.cost_usd == 0
    assert u.completion_tokens == sum(c.completion_tokens for c in out)


def test_top_logprobs_are_valid(answered: tuple[LocalChatLLM, list, Path]) -> None:
    llm, out, _ = answered
    assert llm.supports_logprobs
    for request, c in zip(REQUESTS, out, strict=True):
        if request.top_logprobs is None:
            assert c.logprobs is None
            continue
        assert c.logprobs, c
        assert "".join(t.token for t in c.logprobs) == c.text
        for step in c.logprobs:
            assert step.token in step.top
            assert 1 <= len(step.top) <= request.top_logprobs + 1
            assert all(lp <= 0 and math.isfinite(lp) for lp in step.top.values())
            assert sum(math.exp(lp) for lp in step.top.values()) <= 1 + 1e-3
            # Greedy decoding: the generated token is the most likely one.
            assert step.top[step.token] == pytest.approx(max(step.top.values()), abs=1e-4)


def test_cache_answers_a_rerun_without_loading_the_model(answered: tuple[LocalChatLLM, list, Path]) -> None:
    _, first, root = answered
    fresh = LocalChatLLM(cache=ResponseCache(ArtifactStore(str(root))))
    again = fresh.complete_many(REQUESTS)
    assert all(c.cached for c in again)
    assert [(c.text, c.logprobs) for c in again] == [(c.text, c.logprobs) for c in first]
    assert fresh.usage.cache_hits == 3 and fresh.usage.requests == 0
    assert not fresh.is_loaded


def test_a_batch_sharing_a_prompt_prefix_answers_as_each_request_alone() -> None:
    """The batch's common prefix is computed once and its rows continue from it (pads in the
    middle, positions from the mask): in fp32 the answers match those of each request alone."""
    system = {"role": "system", "content": "You judge short texts. " * 12 + "Answer Yes or No."}
    requests = [ChatRequest(messages=(system, {"role": "user", "content": f"Is this text about {topic}? {text}"}),
                            max_tokens=3, top_logprobs=4)
                for topic, text in (("cats", "The cat sat on the mat."), ("the sea", "Waves broke on the shore at dawn."),
                                    ("cooking", "Stir the onions until golden."), ("cats", "Stocks fell sharply today."))]
    batched = LocalChatLLM(dtype="float32", batch_size=4).complete_many(requests)
    alone = LocalChatLLM(dtype="float32", batch_size=1)
    for request, together in zip(requests, batched, strict=True):
        (single,) = alone.complete_many([request])
        assert together.ok and single.ok and together.prompt_tokens == single.prompt_tokens
        first, reference = together.logprobs[0].top, single.logprobs[0].top
        shared = set(first) & set(reference)
        assert len(shared) >= 3  # the same alternatives, up to a near-tie at the edge of the top 4
        assert all(abs(first[t] - reference[t]) < 1e-3 for t in shared)
