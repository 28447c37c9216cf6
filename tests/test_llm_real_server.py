"""OpenAICompatibleLLM against a real server: `transformers serve` on the converted SmolLM2.

`transformers serve` answers chat completions but returns no logprobs, so this also
checks the client's logprob degradation against a real implementation. The server
takes about 5-6 s to answer /health on the 2-core dev machine.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from autointerp_assets.hf_models import loadable
from autointerp_assets.llm_api import ChatRequest
from autointerp_assets.llm_client import OpenAICompatibleLLM, ResponseCache
from autointerp_assets.storage import ArtifactStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")),
        reason="`transformers serve` needs the serving extra: pip install 'transformers[serving]'",
    ),
]

START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base_url, model name) of a running `transformers serve`."""
    model_dir = loadable("smollm2-135m-instruct")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir,
             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            start_new_session=True,  # its own process group, so teardown stops all of it
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/health", log_path)
        yield f"http://127.0.0.1:{port}/v1", model_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"transformers serve did not answer {url} within {START_TIMEOUT_S:.0f}s")


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
