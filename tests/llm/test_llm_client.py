"""OpenAICompatibleLLM against a fault-injecting OpenAI-compatible server on 127.0.0.1.

The server decides each response with `policy(request_number, body) -> action`, so each
test scripts exactly the faults it needs and reads back what the client really sent.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from support.fake_openai_server import FaultServer

from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.client import OpenAICompatibleLLM
from autointerp_assets.store.store import ArtifactStore
from resources.llm import LLMResource

SECRET = "sk-test-SECRET-0123456789abcdef"
HANG_TIMEOUT_S = 0.5  # only for tests that hang the server; others use a roomy timeout



@pytest.fixture
def server() -> Iterator[FaultServer]:
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "store"))


def make_llm(server: FaultServer, store: ArtifactStore | None = None, **kw: object) -> OpenAICompatibleLLM:
    kw = {"max_concurrency": 4, "timeout_s": 10.0, "max_retries": 2, "backoff_base_s": 0.01, **kw}
    cache = ResponseCache(store) if store is not None else None
    return OpenAICompatibleLLM(server.base_url, "test-model", SECRET, cache=cache, **kw)  # type: ignore[arg-type]


def reqs(n: int, top_logprobs: int | None = None) -> list[ChatRequest]:
    return [
        ChatRequest(messages=({"role": "user", "content": f"prompt {i}"},), max_tokens=8, top_logprobs=top_logprobs)
        for i in range(n)
    ]


def prompt_index(body: dict) -> int:
    return int(body["messages"][-1]["content"].split()[-1])


# -- retries -------------------------------------------------------------------------------------------
def test_transient_failures_are_retried_until_success(server: FaultServer) -> None:
    failures_per_prompt: dict[int, int] = {}

    def flaky(n: int, body: dict) -> str:
        i = prompt_index(body)
        seen = failures_per_prompt.get(i, 0)
        if seen < 2:
            failures_per_prompt[i] = seen + 1
            return ["500", "hang"][seen] if i % 2 else "500"
        return "ok"

    server.policy = flaky
    llm = make_llm(server, max_retries=2, timeout_s=HANG_TIMEOUT_S)
    out = llm.complete_many(reqs(4))
    assert [c.text for c in out] == [f"echo prompt {i}" for i in range(4)]
    assert llm.usage.retries == 8 and llm.usage.failures == 0 and llm.usage.requests == 4
    assert server.n_requests == 12
    assert llm.usage.prompt_tokens == 40 and llm.usage.completion_tokens == 12


def test_retry_after_is_honoured(server: FaultServer) -> None:
    server.policy = lambda n, body: "429" if n == 0 else "ok"
    llm = make_llm(server, backoff_base_s=0.001)
    start = time.monotonic()
    (c,) = llm.complete_many(reqs(1))
    assert c.ok and llm.usage.retries == 1
    assert time.monotonic() - start >= 0.3  # the server's Retry-After, not the 1 ms backoff


def test_persistent_failures_are_counted_by_kind(server: FaultServer) -> None:
    actions = {0: "429", 1: "500", 2: "hang", 3: "garbage", 4: "ok"}
    server.policy = lambda n, body: actions[prompt_index(body)]
    llm = make_llm(server, max_retries=1, backoff_base_s=0.001, timeout_s=HANG_TIMEOUT_S)
    out = llm.complete_many(reqs(5))
    assert len(out) == 5
    kinds = [c.error.split(":")[0] if c.error else None for c in out]
    assert kinds == ["rate_limit", "server", "timeout", "bad_response", None]
    assert all(c.text is None for c in out[:4]) and out[4].text == "echo prompt 4"
    u = llm.usage
    assert u.failures == 4 and u.requests == 5
    assert u.errors == {"rate_limit": 1, "server": 1, "timeout": 1, "bad_response": 1}
    # Transient kinds got one retry each; an unusable body is not retried.
    sent = [prompt_index(b) for b in server.bodies]
    assert sorted(sent) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert u.retries == 3


def test_flaky_server_yields_one_completion_per_request(server: FaultServer) -> None:
    rng = random.Random(0)
    lock = threading.Lock()

    def thirty_percent(n: int, body: dict) -> str:
        with lock:
            return "500" if rng.random() < 0.3 else "ok"

    server.policy = thirty_percent
    llm = make_llm(server, max_retries=0, max_concurrency=8)
    out = llm.complete_many(reqs(40))
    assert len(out) == 40
    failed = [c for c in out if not c.ok]
    assert 0 < len(failed) < 40
    assert llm.usage.failures == len(failed) == llm.usage.errors["server"]
    assert llm.usage.requests == 40 == server.n_requests
    assert all(c.text == f"echo prompt {i}" for i, c in enumerate(out) if c.ok)


def test_unreachable_endpoint_counts_connection_failures(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_base_s=0.001)
    out = llm.complete_many(reqs(2))
    assert [c.error.split(":")[0] for c in out if c.error] == ["connection", "connection"]
    assert llm.usage.errors == {"connection": 2} and llm.usage.retries == 2
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        llm.check_reachable()


def test_concurrency_is_bounded(server: FaultServer) -> None:
    server.policy = lambda n, body: "slow_ok"
    llm = make_llm(server, max_concurrency=3)
    assert all(c.ok for c in llm.complete_many(reqs(9)))
    assert 1 < server.max_in_flight <= 3


def test_rate_limit_spaces_requests(server: FaultServer) -> None:
    llm = make_llm(server, requests_per_minute=600)  # one start per 0.1 s
    start = time.monotonic()
    assert all(c.ok for c in llm.complete_many(reqs(5)))
    assert time.monotonic() - start >= 0.4


# -- cache ------------------------------------------------------------------------------------------------
def test_second_identical_run_makes_no_requests(server: FaultServer, store: ArtifactStore) -> None:
    first = make_llm(server, store).complete_many(reqs(3, top_logprobs=2))
    assert server.n_requests == 3 and not any(c.cached for c in first)
    again = make_llm(server, store)
    second = again.complete_many(reqs(3, top_logprobs=2))
    assert server.n_requests == 3
    assert all(c.cached for c in second)
    assert [(c.text, c.logprobs) for c in second] == [(c.text, c.logprobs) for c in first]
    assert again.usage.cache_hits == 3 and again.usage.requests == 0
    files = list(store.walk_files("llm_cache"))  # the three answers went into one segment of the scope
    assert len(files) == 1 and files[0].startswith("llm_cache/test-model/shared/")


def test_rerun_after_failures_sends_only_the_failed(server: FaultServer, store: ArtifactStore) -> None:
    server.policy = lambda n, body: "500" if prompt_index(body) % 3 == 0 else "ok"
    first = make_llm(server, store, max_retries=0).complete_many(reqs(6))
    failed = {i for i, c in enumerate(first) if not c.ok}
    assert failed == {0, 3}
    server.policy = lambda n, body: "ok"
    server.bodies.clear()
    llm = make_llm(server, store)
    second = llm.complete_many(reqs(6))
    assert sorted(prompt_index(b) for b in server.bodies) == sorted(failed)
    assert all(c.ok for c in second)
    assert llm.usage.cache_hits == 4 and llm.usage.requests == 2


def test_api_key_never_leaks(server: FaultServer, store: ArtifactStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    actions = {0: "ok", 1: "401_echo", 2: "500", 3: "garbage"}
    server.policy = lambda n, body: actions[prompt_index(body)]
    llm = make_llm(server, store, max_retries=1)
    out = llm.complete_many(reqs(4))
    assert server.auth_headers[0] == f"Bearer {SECRET}"  # the key is really sent
    assert out[1].error and out[1].error.startswith("auth:") and "***" in out[1].error
    visible = [caplog.text, repr(llm), json.dumps(llm.usage.as_metadata()), str(llm.usage)]
    visible += [c.error or "" for c in out]
    # Cache segments are compressed parquet: searched decoded, or a secret inside would go unseen.
    visible += [store.read_parquet(f).write_csv() if f.endswith(".parquet") else store.read_bytes(f).decode()
                for f in store.walk_files("")]
    assert len(list(store.walk_files(""))) == 1
    assert not any(SECRET in v for v in visible)


# -- logprobs ------------------------------------------------------------------------------------------------
def test_logprobs_are_returned_when_offered(server: FaultServer) -> None:
    llm = make_llm(server)
    (c,) = llm.complete_many(reqs(1, top_logprobs=3))
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["top_logprobs"] == 3
    assert c.logprobs is not None and [t.token for t in c.logprobs] == ["echo", "prompt", "0"]
    assert all(len(t.top) == 3 and t.token in t.top for t in c.logprobs)
    assert llm.supports_logprobs


@pytest.mark.parametrize("action", ["reject_logprobs", "ok_nologprobs"])
def test_logprobs_degrade_cleanly(server: FaultServer, action: str) -> None:
    server.policy = lambda n, body: action
    llm = make_llm(server, max_concurrency=1)
    out = llm.complete_many(reqs(3, top_logprobs=3))
    assert [c.text for c in out] == [f"echo prompt {i}" for i in range(3)]
    assert all(c.logprobs is None for c in out)
    assert not llm.supports_logprobs and llm.usage.failures == 0
    # After the first rejection or omission, logprobs are no longer asked for.
    assert [bool(b.get("logprobs")) for b in server.bodies][-2:] == [False, False]


def test_requests_without_top_logprobs_do_not_ask(server: FaultServer) -> None:
    make_llm(server).complete_many(reqs(1))
    assert "logprobs" not in server.bodies[0]


# -- the Dagster resource ------------------------------------------------------------------------------------
def test_resource_openai_without_base_url_names_the_field(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="base_url"):
        LLMResource(backend="openai", model="m").build(store)


def test_resource_remote_without_key_names_the_env_var(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        LLMResource(backend="openai", base_url="https://openrouter.ai/api/v1", model="m").build(store)


def test_resource_builds_a_working_client(server: FaultServer, store: ArtifactStore) -> None:
    resource = LLMResource(backend="openai", base_url=server.base_url, model="m", max_retries=0)
    resource.check_reachable()
    llm = resource.build(store)
    assert llm.complete_many(reqs(1))[0].text == "echo prompt 0"
    assert store.exists("llm_cache/m")


def test_resource_check_reachable_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"http://127.0.0.1:{port}/v1"):
        LLMResource(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m").check_reachable()


def test_resource_reads_the_key_from_an_env_var(
    server: FaultServer, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AUTOINTERP_TEST_KEY", SECRET)
    resource = LLMResource(
        backend="openai", base_url=server.base_url, model="m", api_key=dg.EnvVar("AUTOINTERP_TEST_KEY")
    )

    @dg.asset
    def explained(llm: LLMResource) -> dg.MaterializeResult:
        client = llm.build(store)
        client.complete_many(reqs(2))
        return dg.MaterializeResult(metadata=client.usage.as_metadata())

    result = dg.materialize([explained], resources={"llm": resource})
    assert result.success
    assert server.auth_headers == [f"Bearer {SECRET}"] * 2
    (mat,) = result.asset_materializations_for_node("explained")
    assert mat.metadata["llm_requests"].value == 2
    assert SECRET not in caplog.text


def test_unreadable_cache_entry_is_answered_afresh(server: FaultServer, store: ArtifactStore) -> None:
    (request,) = reqs(1)
    make_llm(server, store).complete_many([request])
    (segment,) = store.walk_files("llm_cache")
    store.write_bytes(segment, b"PAR1truncated")
    (c,) = make_llm(server, store).complete_many([request])
    assert c.ok and not c.cached and server.n_requests == 2
    cached = ResponseCache(store).get("test-model", request)
    assert cached is not None and cached.text == c.text
