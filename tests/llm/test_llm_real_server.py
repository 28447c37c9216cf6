"""OpenAICompatibleLLM against a real server: `transformers serve` on the converted SmolLM2.

`transformers serve` answers chat completions but returns no logprobs, so this also
checks the client's logprob degradation against a real implementation. The server
takes about 5-6 s to answer /health on the 2-core dev machine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.transformers_server import transformers_serve

from autointerp_assets.data.model_files import loadable
from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.client import OpenAICompatibleLLM
from autointerp_assets.store.store import ArtifactStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")),
        reason="`transformers serve` needs the serving extra: pip install 'transformers[serving]'",
    ),
]

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base_url, model name) of a running `transformers serve`."""
    model_dir = loadable("smollm2-135m-instruct")
    with transformers_serve(model_dir, tmp_path_factory.mktemp("serve") / "serve.log") as base_url:
        yield base_url, model_dir


def test_chat_completions_logprob_degradation_and_cache(served: tuple[str, str], tmp_path: Path) -> None:
    base_url, model = served
    store = ArtifactStore(str(tmp_path / "store"))
    requests = [
        ChatRequest(messages=({"role": "user", "content": "Say hello."},), max_tokens=8, top_logprobs=3),
        ChatRequest(messages=({"role": "user", "content": "Name a colour."},), max_tokens=8, top_logprobs=3),
    ]
    llm = OpenAICompatibleLLM(base_url, model, None, max_concurrency=2, timeout_s=120, cache=ResponseCache(store))
    llm.check_reachable()
    out = llm.complete_many(requests)
    assert all(c.ok and c.text for c in out), out
    assert all(c.logprobs is None for c in out)  # transformers serve offers none
    assert not llm.supports_logprobs
    u = llm.usage
    assert u.failures == 0 and u.requests == 2
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 16

    again = OpenAICompatibleLLM(base_url, model, None, cache=ResponseCache(store))
    assert [c.text for c in again.complete_many(requests)] == [c.text for c in out]
    assert again.usage.cache_hits == 2 and again.usage.requests == 0


def test_prompt_scoring_against_a_server_without_prompt_logprobs(served: tuple[str, str]) -> None:
    """`transformers serve` ignores echo and logprobs on /v1/completions: the client notices, turns
    prompt scoring off, and counts every request as a failure that names the fix."""
    from autointerp_assets.llm.api import ScoreRequest

    base_url, model = served
    llm = OpenAICompatibleLLM(base_url, model, None, max_concurrency=1, timeout_s=120)
    out = llm.score_prompts([ScoreRequest("The cat sat on the mat.", 4), ScoreRequest("Hello there.", 0)])
    assert not llm.supports_prompt_logprobs
    assert all(not s.ok for s in out) and llm.usage.failures == 2
    assert "vLLM or llama.cpp" in out[-1].error
