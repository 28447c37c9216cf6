"""The per-partition LLM response cache: a few reads per partition, no contention, nothing paid twice."""

from __future__ import annotations

import threading

from autointerp_assets.llm.api import ChatRequest, Completion, TokenLogprobs
from autointerp_assets.llm.cache import MAX_SEGMENTS, CachedAccounting, ResponseCache
from autointerp_assets.store.store import ArtifactStore


def request(i: int, scope: str = "") -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": f"{scope} prompt {i}"},), max_tokens=8, top_logprobs=2)


def answer(i: int) -> Completion:
    return Completion(text=f"answer {i}", logprobs=(TokenLogprobs("a", {"a": -0.1, "b": -2.5}),),
                      prompt_tokens=10 + i, completion_tokens=2)


class Counting(ArtifactStore):
    """Counts file reads, to show what a lookup costs."""

    reads = 0

    def read_bytes(self, rel: str) -> bytes:
        self.reads += 1
        return super().read_bytes(rel)


def test_a_partition_loads_in_a_few_reads_and_answers_every_request(tmp_path):
    writer = ResponseCache(ArtifactStore(str(tmp_path)), scope="scores/layers.6/00000-00063", flush_every=50)
    for i in range(500):
        writer.put("m", request(i), answer(i))
    writer.flush()
    store = Counting(str(tmp_path))
    reader = ResponseCache(store, scope="scores/layers.6/00000-00063")
    got = reader.get_many("m", [request(i) for i in range(500)] + [request(9999)])
    assert [c.text if c else None for c in got] == [f"answer {i}" for i in range(500)] + [None]
    assert all(c.cached and c.logprobs == answer(0).logprobs for c in got[:500])
    assert got[7].prompt_tokens == 17 and got[7].completion_tokens == 2
    assert store.reads == 500 // 50  # one read per segment, not one per response
    reader.get_many("m", [request(1)])
    assert store.reads == 500 // 50  # later lookups are answered from memory


def test_partitions_are_separate_and_many_segments_are_merged(tmp_path):
    store = ArtifactStore(str(tmp_path))
    one = ResponseCache(store, scope="explanations/layers.6/00000-00063", flush_every=1)
    for i in range(MAX_SEGMENTS + 4):  # one segment per answer
        one.put("m", request(i), answer(i))
    other = ResponseCache(store, scope="explanations/layers.6/00064-00127")
    assert other.get_many("m", [request(0)]) == [None]  # another partition sees none of them
    assert len(store.list(one.directory("m"))) == MAX_SEGMENTS + 4
    merged = ResponseCache(store, scope="explanations/layers.6/00000-00063")
    assert all(c is not None for c in merged.get_many("m", [request(i) for i in range(MAX_SEGMENTS + 4)]))
    assert len(store.list(one.directory("m"))) == 1  # merged on load, parts deleted after the merge landed
    again = ResponseCache(store, scope="explanations/layers.6/00000-00063")
    assert all(c is not None for c in again.get_many("m", [request(i) for i in range(MAX_SEGMENTS + 4)]))


def test_concurrent_runs_lose_nothing(tmp_path):
    """Four runs at once: three partitions, two of them writing the same partition."""
    scopes = ["scores/a/0", "scores/a/1", "scores/a/2", "scores/a/2"]

    def run(scope: str, offset: int) -> None:
        cache = ResponseCache(ArtifactStore(str(tmp_path)), scope=scope, flush_every=7)
        for i in range(offset, offset + 60):
            cache.put("m", request(i, scope), answer(i))
        cache.flush()

    threads = [threading.Thread(target=run, args=(s, 100 * n)) for n, s in enumerate(scopes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, scope in enumerate(scopes):
        got = ResponseCache(ArtifactStore(str(tmp_path)), scope=scope).get_many(
            "m", [request(i, scope) for i in range(100 * n, 100 * n + 60)])
        assert all(c is not None and c.text == f"answer {100 * n + k}" for k, c in enumerate(got))


def test_a_crash_loses_at_most_the_unflushed_answers(tmp_path):
    cache = ResponseCache(ArtifactStore(str(tmp_path)), scope="s", flush_every=4)
    for i in range(10):
        cache.put("m", request(i), answer(i))
    # No flush: the process dies here. Two full segments of four were written on the way.
    after = ResponseCache(ArtifactStore(str(tmp_path)), scope="s").get_many("m", [request(i) for i in range(10)])
    assert [c is not None for c in after] == [True] * 8 + [False] * 2


class Echo(CachedAccounting):
    """The smallest backend using the shared accounting, as the HTTP and local backends do."""

    def __init__(self, cache: ResponseCache):
        super().__init__(cache)
        self.model_name, self.supports_logprobs, self.sent = "echo", True, 0

    def _complete_many(self, requests):
        results, misses = self._lookup(requests)
        for i in misses:
            self.sent += 1
            ok = "fail" not in requests[i].messages[0]["content"]
            results[i] = self._finish(requests[i], Completion(text="ok" if ok else None, error=None if ok else "server: x",
                                                              prompt_tokens=5))
        self._flush_cache()
        return results




def test_rerun_makes_zero_calls_and_retries_only_failures(tmp_path):
    reqs = [request(i) for i in range(5)] + [ChatRequest(messages=({"role": "user", "content": "fail"},))]
    first = Echo(ResponseCache(ArtifactStore(str(tmp_path)), scope="p"))
    first.complete_many(reqs)
    assert first.sent == 6 and first.usage.failures == 1
    again = Echo(ResponseCache(ArtifactStore(str(tmp_path)), scope="p"))
    out = again.complete_many(reqs)
    assert again.sent == 1 and again.usage.cache_hits == 5 and not out[-1].ok  # only the failure is sent again
    assert again.usage.cost_usd == 0 and [c.cached for c in out[:5]] == [True] * 5


def test_equal_requests_in_one_call_are_sent_once_and_share_the_answer(tmp_path):
    reqs = [request(0), request(1), request(0), request(0)]
    echo = Echo(ResponseCache(ArtifactStore(str(tmp_path)), scope="p"))
    out = echo.complete_many(reqs)
    assert echo.sent == 2 and echo.usage.requests == 2
    assert out[0] is out[2] is out[3] and out[1] is not out[0]


def test_the_cache_works_on_a_real_s3_server(s3_endpoint):
    def store() -> ArtifactStore:
        return ArtifactStore("s3://autointerp-test/llm-cache-test", {"client_kwargs": {"endpoint_url": s3_endpoint}})

    first = Echo(ResponseCache(store(), scope="scores/layers.6/00000-00063"))
    first.complete_many([request(i) for i in range(12)])
    again = Echo(ResponseCache(store(), scope="scores/layers.6/00000-00063"))
    assert all(c.cached for c in again.complete_many([request(i) for i in range(12)])) and again.sent == 0
