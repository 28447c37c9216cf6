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
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from support.fake_openai_server import FaultServer

from autointerp_assets.errors import EndpointError
from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.client import OpenAICompatibleLLM, _RateLimiter
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
TRANSIENT = ["429", "500", "hang", "empty", "garbage", "truncated_body", "drop"]


def test_transient_failures_are_retried_until_success(server: FaultServer) -> None:
    failures_per_prompt: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(n: int, body: dict) -> str:  # each prompt meets two different faults, then an answer
        i = prompt_index(body)
        with lock:
            seen = failures_per_prompt.get(i, 0)
            failures_per_prompt[i] = seen + 1
        return TRANSIENT[(i + seen) % len(TRANSIENT)] if seen < 2 else "ok"

    server.policy = flaky
    server.retry_after = "0"
    llm = make_llm(server, max_retries=2, timeout_s=HANG_TIMEOUT_S)
    out = llm.complete_many(reqs(7))
    assert [c.text for c in out] == [f"echo prompt {i}" for i in range(7)]
    assert llm.usage.retries == 14 and llm.usage.failures == 0 and llm.usage.requests == 7
    assert server.n_requests == 21 and set(server.actions) == {*TRANSIENT, "ok"}
    assert llm.usage.prompt_tokens == 70 and llm.usage.completion_tokens == 21


def test_retry_after_is_honoured(server: FaultServer) -> None:
    server.policy = lambda n, body: "429" if n == 0 else "ok"
    slept: list[float] = []
    llm = make_llm(server, backoff_base_s=0.001, sleep=slept.append)
    (c,) = llm.complete_many(reqs(1))
    assert c.ok and llm.usage.retries == 1
    assert slept == [pytest.approx(0.3)]  # the server's Retry-After, not the ~1 ms backoff


def test_persistent_failures_are_counted_by_kind(server: FaultServer) -> None:
    actions = dict(enumerate([*TRANSIENT, "length", "ok"]))
    server.policy = lambda n, body: actions[prompt_index(body)]
    server.retry_after = "0"
    llm = make_llm(server, max_retries=1, backoff_base_s=0.001, timeout_s=HANG_TIMEOUT_S)
    out = llm.complete_many(reqs(len(actions)))
    kinds = [c.error.split(":")[0] if c.error else None for c in out]
    assert kinds == ["rate_limit", "server", "timeout", "bad_response", "bad_response", "connection", "connection",
                     None, None]
    assert all(c.text is None for c in out[:-2]) and out[-1].text == "echo prompt 8"
    # An answer cut at max_tokens is an answer: whether it is usable is the explainer's or scorer's call.
    assert out[7].text == "echo prompt 7"[: len("echo prompt 7") // 2]
    u = llm.usage
    assert u.failures == 7 and u.requests == 9
    assert u.errors == {"rate_limit": 1, "server": 1, "timeout": 1, "bad_response": 2, "connection": 2}
    # Transient kinds got their one retry; the answered ones were sent once.
    sent = sorted(prompt_index(b) for b in server.bodies)
    assert sent == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8]
    assert u.retries == 7


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


def free_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_unreachable_endpoint_fails_fast_naming_the_url() -> None:
    url, slept = free_url(), []
    llm = OpenAICompatibleLLM(url, "m", max_retries=5, max_concurrency=4, sleep=slept.append)
    with pytest.raises(EndpointError, match=f"LLM endpoint {url} is unreachable.*fix llm.base_url"):
        llm.complete_many(reqs(40))
    assert slept == []  # no backoff, no retries: the first refusal and one probe decide
    assert llm.usage.failures == 0  # nothing was marked failed: the run stops instead
    with pytest.raises(EndpointError, match=url):
        llm.check_reachable()


def test_endpoint_that_goes_down_mid_run_stops_after_the_retries(server: FaultServer) -> None:
    slept: list[float] = []
    llm = make_llm(server, max_retries=2, sleep=slept.append)
    assert all(c.ok for c in llm.complete_many(reqs(2)))
    server.close()
    later = [ChatRequest(messages=({"role": "user", "content": f"later {i}"},), max_tokens=8) for i in range(3)]
    with pytest.raises(EndpointError, match=server.base_url):
        llm.complete_many(later)
    assert len(slept) >= 2  # the endpoint had answered, so a refusal was first retried as transient


def test_a_refused_key_is_named_without_the_key(server: FaultServer) -> None:
    server.models_status = 401
    with pytest.raises(EndpointError, match="refused the API key") as err:
        make_llm(server).check_reachable()
    assert SECRET not in str(err.value)


def test_concurrency_is_bounded(server: FaultServer) -> None:
    server.policy = lambda n, body: "gather"  # each answer waits until 3 requests are in flight
    server.gather_n = 3
    llm = make_llm(server, max_concurrency=3)
    assert all(c.ok for c in llm.complete_many(reqs(9)))
    assert server.max_in_flight == 3


def test_rate_limit_spaces_request_starts() -> None:
    now, slept = [100.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = _RateLimiter(600, clock=lambda: now[0], sleep=sleep)  # one start per 0.1 s
    for _ in range(5):
        limiter.wait()
    assert slept == pytest.approx([0.1] * 4)


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
    files = list(store.walk_files("llm_cache"))
    assert len(files) == 3 and all(f.startswith("llm_cache/test-model/") for f in files)


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
    visible += [store.read_bytes(f).decode() for f in store.walk_files("")]
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
    url = free_url()
    with pytest.raises(EndpointError, match=url):
        LLMResource(backend="openai", base_url=url, model="m").check_reachable()


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
    path = ResponseCache(store).path("test-model", request)
    store.write_bytes(path, b"{truncated")
    (c,) = make_llm(server, store).complete_many([request])
    assert c.ok and not c.cached and server.n_requests == 2
    assert store.read_json(path)["text"] == c.text
