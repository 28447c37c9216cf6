"""The LLM half through Dagster against an endpoint that shows every fault a real one does.

The fault-injecting server answers each prompt's first attempt with a fault chosen by the
prompt's content (429 with Retry-After, 500, a hang past the timeout, an empty body, invalid
JSON, a body cut off mid-transfer, a dropped connection, an answer cut at max_tokens), and
some prompts keep failing on their retry. Then:
- every partition completes;
- every latent ends explained/scored, or counted as failed with its reason (a scorer answer
  cut off mid-list does not parse and is counted too);
- a rerun against the healed server sends exactly the failed requests again and nothing
  that was answered before: it pays for nothing twice.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
import zlib
from collections import Counter

import polars as pl
import pytest
from support.fake_openai_server import FAULTS, FaultServer
from support.project import LAYER, RANGE, key, run

from resources.llm import LLMResource

pytestmark = pytest.mark.slow
KINDS = {"rate_limit", "server", "timeout", "bad_response", "connection"}
ANSWERED = {"ok", "length"}  # a cut-off answer is still an answer: paid for, cached, judged by the parser


def answer(body: dict) -> str:
    """An explanation for explainer prompts; for scorer prompts a 0/1 list of the asked length
    (list mode) or Yes/No (single mode), drawn from the prompt."""
    prompt = body["messages"][-1]["content"]
    wanted = re.search(r"list of exactly (\d+) values", prompt)
    if wanted:
        rng = random.Random(prompt)
        return "[" + ", ".join(rng.choice("01") for _ in range(int(wanted.group(1)))) + "]"
    if "Answer Yes or No" in prompt:
        return random.Random(prompt).choice(["Yes", "No"])
    return "Explanation: identifiers in Python source code"


def identity(body: dict) -> str:
    """What a request asks, independent of whether logprobs were requested this time."""
    return json.dumps([body["messages"], body.get("max_tokens")], sort_keys=True)


def form(body: dict) -> tuple[str, bool]:
    """A request as the cache keys it: what it asks, and whether it asked for logprobs."""
    return identity(body), bool(body.get("top_logprobs"))


class Faults:
    """First attempt of a prompt: a fault picked by its content (or an answer); a third of the
    faulted prompts fail their retry too. The outcome never depends on request order."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, n: int, body: dict) -> str:
        ident = identity(body)
        with self.lock:
            attempt = self.attempts[ident]
            self.attempts[ident] += 1
        h = zlib.crc32(ident.encode())
        fault = (FAULTS + ("ok", "ok", "ok", "ok"))[h % (len(FAULTS) + 4)]
        if fault == "ok" or (attempt >= 1 and (h // 16) % 3 != 0):
            return "ok"
        return fault


def outcomes(server: FaultServer, since: int = 0) -> dict[str, str]:
    """Request identity -> the action of its last attempt, for requests from `since` on."""
    last: dict[str, str] = {}
    for body, action in list(zip(server.bodies, server.actions, strict=True))[since:]:
        last[identity(body)] = action
    return last


@pytest.fixture
def server():
    s = FaultServer()
    s.answer, s.retry_after = answer, "0.2"
    s.hang_s = 5.0  # well past the client's timeout, which stays well above a normal answer's time
    yield s
    s.close()


def test_every_fault_is_survived_counted_and_retried_once(data_root, instance, server, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache"))
    llm = LLMResource(backend="openai", base_url=server.base_url, model="fault-model", max_retries=1,
                      timeout_s=2.5, max_concurrency=4)
    server.policy = Faults()

    explained = run(["explanations"], key(), root, instance, llm=llm)
    scored = run(["scores"], key(), root, instance, llm=llm)
    assert explained.success and scored.success  # every partition completes
    assert set(FAULTS) <= set(server.actions), Counter(server.actions)  # every fault really happened

    explanations = pl.read_parquet(root / "explanations" / LAYER / f"{RANGE}.parquet")
    scores = pl.read_parquet(root / "scores" / LAYER / f"{RANGE}.parquet")
    assert sorted(explanations["latent"]) == sorted(scores["latent"]) == list(range(16))
    failed = explanations.filter(pl.col("status") == "failed")
    assert set(explanations["status"]) <= {"ok", "failed", "skipped"} and failed.height > 0
    assert failed["reason"].null_count() == 0  # each says why: the error kind, or the unusable answer
    assert failed["reason"].str.extract(r"llm error: (\w+):").drop_nulls().is_in(list(KINDS)).all()
    assert set(scores["status"]) <= {"ok", "failed", "unscored"}
    assert scores.filter(pl.col("status") != "ok")["reason"].null_count() == 0
    assert scores["n_failed"].sum() > 0  # failed scorer answers are counted, not dropped

    # Every request whose last attempt was not an answer is a counted failure, in metadata too.
    first = outcomes(server)
    explain_meta = explained.asset_materializations_for_node("explanations")[0].metadata
    score_meta = scored.asset_materializations_for_node("scores")[0].metadata
    n_failed_requests = sum(action not in ANSWERED for action in first.values())
    assert explain_meta["llm_failures"].value + score_meta["llm_failures"].value == n_failed_requests

    # The endpoint heals; a rerun retries exactly the failures and re-sends nothing that was answered.
    server.policy = lambda n, body: "ok"
    before = server.n_requests
    run(["explanations"], key(), root, instance, llm=llm)
    run(["scores"], key(), root, instance, llm=llm)
    answered_before = {ident for ident, action in first.items() if action in ANSWERED}
    failed_before = set(first) - answered_before
    resent = set(outcomes(server, since=before))
    # Pays for nothing twice in the same form. After the server refused logprobs, the first run asked
    # without them; the rerun's fresh client asks with them again: a different request, sent once more.
    answered_forms = {form(b) for b, a in zip(server.bodies[:before], server.actions[:before]) if a in ANSWERED}
    assert not answered_forms & {form(b) for b in server.bodies[before:]}
    assert failed_before <= resent  # every failure is retried...
    without_logprobs = {identity(b) for b, a in zip(server.bodies[:before], server.actions[:before])
                        if a in ANSWERED and not b.get("top_logprobs")}
    new = resent - failed_before - without_logprobs  # ...and the only new prompts score explanations
    assert all("<description>" in json.loads(ident)[0][-1]["content"] for ident in new)  # that failed before
    again = pl.read_parquet(root / "explanations" / LAYER / f"{RANGE}.parquet")
    assert not again["reason"].str.contains("llm error").any()
    rescored = pl.read_parquet(root / "scores" / LAYER / f"{RANGE}.parquet")
    # What still fails is an answer cut off mid-list: paid for once, kept, counted as unparseable.
    assert rescored["n_failed"].sum() < scores["n_failed"].sum()
    assert not rescored["reason"].str.contains("llm error").any()
