"""End-to-end explain and score with scripted fake LLMs on a hand-built contexts table.

Fixture: every activating window contains " cat" (the only active token); no non-activating
window contains it. Each window carries a unique marker token " w<seq>" so that the prompts can
be traced back to rows. seq = 1000 * latent + i.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable, Sequence

import polars as pl
import pytest

from autointerp_assets.config import ExplainerConfig, SamplingConfig, ScorerConfig
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA, explain_latents
from autointerp_assets.explain.prompts import PROMPT_VERSIONS as EXPLAIN_PROMPT_VERSIONS
from autointerp_assets.llm.api import ChatRequest, Completion, TokenLogprobs, Usage
from autointerp_assets.scoring.classify import score_latents, score_schema
from autointerp_assets.scoring.prompts import PROMPT_VERSIONS as SCORER_PROMPT_VERSIONS

N_QUANTILES = 3
TEST_PER_QUANTILE = 2
TEST_NEGATIVES = 4
TEST_ROWS = N_QUANTILES * TEST_PER_QUANTILE + TEST_NEGATIVES  # 10 per latent
EXPLAIN_ACTIVATING = 4  # 3 top + 1 quantile
CONTEXTS_SCHEMA = {
    "latent": pl.Int64,
    "split": pl.Utf8,
    "kind": pl.Utf8,
    "quantile": pl.Int32,
    "seq": pl.Int64,
    "start": pl.Int64,
    "tokens": pl.List(pl.Int64),
    "token_strs": pl.List(pl.Utf8),
    "acts": pl.List(pl.Float32),
    "max_act": pl.Float32,
    "activating": pl.Boolean,
}

PROMPT_VERSIONS = {**EXPLAIN_PROMPT_VERSIONS, **SCORER_PROMPT_VERSIONS}


def make_contexts(latents: Sequence[int]) -> pl.DataFrame:
    rows = []

    def add(latent: int, split: str, kind: str, quantile: int, act: float) -> None:
        seq = 1000 * latent + len([r for r in rows if r["latent"] == latent])
        middle = [" cat", " sat"] if act > 0 else [" dog", " ran"]
        token_strs = [f" w{seq}", " the", *middle, "."]
        acts = [0.0, 0.0, act, 0.0, 0.0]
        rows.append(
            {
                "latent": latent,
                "split": split,
                "kind": kind,
                "quantile": quantile,
                "seq": seq,
                "start": 0,
                "tokens": list(range(len(token_strs))),
                "token_strs": token_strs,
                "acts": acts,
                "max_act": max(acts),
                "activating": act > 0,
            }
        )

    for latent in latents:
        for a in (9.0, 8.0, 7.5):
            add(latent, "explain", "top", N_QUANTILES - 1, a)
        add(latent, "explain", "quantile", 0, 1.0)
        add(latent, "explain", "random", -1, 0.0)
        add(latent, "explain", "hard_negative", -1, 0.0)
        for q in range(N_QUANTILES):
            for _ in range(TEST_PER_QUANTILE):
                add(latent, "test", "quantile", q, 1.0 + 2 * q)
        for i in range(TEST_NEGATIVES):
            add(latent, "test", "random" if i % 2 else "hard_negative", -1, 0.0)
    return pl.DataFrame(rows, schema=CONTEXTS_SCHEMA)


SKIPPED = pl.DataFrame(
    {"latent": [7], "reason": ["only 3 activating windows (< 8)"]}, schema={"latent": pl.Int64, "reason": pl.Utf8}
)


def markers(text: str) -> set[int]:
    return {int(m) for m in re.findall(r"\bw(\d+)\b", text)}


def examples_of(request: ChatRequest) -> list[str]:
    return re.findall(r"^Example \d+: (.*)$", request.messages[-1]["content"], re.M)


class FakeLLM:
    """Implements ChatLLM. `answer(request) -> Completion` decides each reply; every call and
    request is recorded."""

    def __init__(self, answer: Callable[[ChatRequest], Completion], supports_logprobs: bool = False):
        self.model_name = "fake-model"
        self.supports_logprobs = supports_logprobs
        self.usage = Usage()
        self.answer = answer
        self.calls: list[list[ChatRequest]] = []
        self.failed: list[ChatRequest] = []

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.calls.append(list(requests))
        out = [self.answer(r) for r in requests]
        self.failed += [r for r, c in zip(requests, out, strict=True) if not c.ok]
        self.usage.requests += len(requests)
        self.usage.failures += sum(not c.ok for c in out)
        return out

    @property
    def requests(self) -> list[ChatRequest]:
        return [r for call in self.calls for r in call]


def true_labels(request: ChatRequest) -> list[int]:
    """The correct answers, read from the windows: detection = contains cat; fuzzing (every
    window has a mark) = cat is the marked token."""
    examples = examples_of(request)
    if all("<<" in e for e in examples):
        return [int("<<cat>>" in e) for e in examples]
    return [int(" cat" in e) for e in examples]


def oracle(request: ChatRequest) -> Completion:
    labels = true_labels(request)
    text = "[" + ", ".join(map(str, labels)) + "]"
    if request.top_logprobs is None:
        return Completion(text)
    # Tokens "[", "1", ",", " 0", ...: confident and right, so the ranking is perfect.
    toks = [TokenLogprobs("[", {"[": 0.0})]
    for i, y in enumerate(labels):
        p1 = 0.9 if y else 0.2
        toks.append(TokenLogprobs(("" if i == 0 else " ") + str(y), {"1": math.log(p1), "0": math.log(1 - p1)}))
        toks.append(TokenLogprobs("," if i < len(labels) - 1 else "]", {",": 0.0}))
    return Completion(text, logprobs=tuple(toks))


def flaky(fraction: float) -> Callable[[ChatRequest], Completion]:
    """Fails a deterministic `fraction` of requests (by a hash of the prompt), else the oracle."""

    def answer(request: ChatRequest) -> Completion:
        if zlib.crc32(request.messages[-1]["content"].encode()) % 100 < 100 * fraction:
            return Completion(None, error="HTTP 503 after 5 retries")
        return oracle(request)

    return answer


def explained(latents: Sequence[int], **status: str) -> pl.DataFrame:
    """An explanations table: ok for every latent unless `status` names it (key 'l<latent>')."""
    rows = []
    for latent in latents:
        s = status.get(f"l{latent}", "ok")
        rows.append(
            {
                "latent": latent,
                "status": s,
                "explanation": "the word cat" if s == "ok" else None,
                "reason": None if s == "ok" else "no luck",
            }
        )
    return pl.DataFrame(
        rows, schema={k: EXPLANATION_SCHEMA[k] for k in ("latent", "status", "explanation", "reason")}
    )


SCORER_CFG = ScorerConfig(examples_per_prompt=3)
PROMPTS_PER_SCORER = math.ceil(TEST_ROWS / 3)  # 10 windows -> prompts of 3, 3, 3, 1


# ---------------------------------------------------------------- explaining


def explainer_answer(request: ChatRequest) -> Completion:
    return Completion('The marked token is always "cat".\n**Explanation:** "the word cat"')


def test_explain_default_one_batch_and_explain_split_only():
    contexts = make_contexts([0, 1, 2])
    llm = FakeLLM(explainer_answer)
    out = explain_latents(contexts, SKIPPED, llm, ExplainerConfig(), SamplingConfig())
    assert dict(out.schema) == EXPLANATION_SCHEMA
    assert out["latent"].to_list() == [0, 1, 2, 7]
    assert len(llm.calls) == 1 and len(llm.calls[0]) == 3  # one batch, skipped latent not asked
    ok = out.filter(pl.col("status") == "ok")
    assert ok["explanation"].to_list() == ["the word cat"] * 3
    assert ok["n_examples"].to_list() == [EXPLAIN_ACTIVATING] * 3
    assert set(out["prompt_version"]) == {PROMPT_VERSIONS["explain/default"]}
    assert set(out["explainer_model"]) == {"fake-model"}
    skipped = out.filter(pl.col("status") == "skipped").row(0, named=True)
    assert skipped["latent"] == 7 and skipped["reason"] == "only 3 activating windows (< 8)"
    explain_seqs = set(contexts.filter((pl.col("split") == "explain") & pl.col("activating"))["seq"])
    shown = set().union(*(markers(r.messages[-1]["content"]) for r in llm.requests))
    assert shown == explain_seqs  # every activating explain window, nothing from the test split


def test_explain_contrastive_shows_negatives_and_records_variant():
    contexts = make_contexts([0])
    llm = FakeLLM(explainer_answer)
    cfg = ExplainerConfig(kind="contrastive", show_activations=True)
    out = explain_latents(contexts, SKIPPED.clear(), llm, cfg, None)
    final = llm.requests[0].messages[-1]["content"]
    explain = contexts.filter(pl.col("split") == "explain")
    assert markers(final) == set(explain["seq"])  # activating and non-activating explain windows
    assert "Counter-example" in final and "Activations:" in final
    row = out.row(0, named=True)
    assert row["n_examples"] == explain.height
    assert row["prompt_version"] == PROMPT_VERSIONS["explain/contrastive+acts"]


def test_explain_failures_carry_reasons():
    def answer(request: ChatRequest) -> Completion:
        if markers(request.messages[-1]["content"]) & {0}:  # latent 0's windows
            return Completion(None, error="timeout")
        return Completion("Explanation: ???")

    out = explain_latents(make_contexts([0, 1]), SKIPPED.clear(), FakeLLM(answer), ExplainerConfig(), None)
    rows = {r["latent"]: r for r in out.iter_rows(named=True)}
    assert rows[0]["status"] == "failed" and rows[0]["reason"] == "llm error: timeout"
    assert rows[1]["status"] == "failed" and "no words" in rows[1]["reason"] and "???" in rows[1]["reason"]
    assert out["explanation"].null_count() == 2


def test_explain_top_tokens_needs_no_llm():
    out = explain_latents(make_contexts([0, 1]), SKIPPED, None, ExplainerConfig(kind="top_tokens"), None)
    ok = out.filter(pl.col("status") == "ok")
    assert ok.height == 2
    assert set(ok["explanation"]) == {'tokens: " cat"'}  # the only active token
    assert ok["explainer_model"].null_count() == 2
    assert set(out["prompt_version"]) == {PROMPT_VERSIONS["explain/top_tokens"]}


def test_explain_llm_kind_without_llm_is_an_error():
    with pytest.raises(ValueError, match="top_tokens"):
        explain_latents(make_contexts([0]), SKIPPED, None, ExplainerConfig(), None)


def test_sampling_seed_shuffles_example_order_only():
    contexts = make_contexts([0])
    orders = []
    for sampling in (None, SamplingConfig(seed=1), SamplingConfig(seed=2)):
        llm = FakeLLM(explainer_answer)
        explain_latents(contexts, SKIPPED.clear(), llm, ExplainerConfig(), sampling)
        orders.append([int(m) for m in re.findall(r"w(\d+)", llm.requests[0].messages[-1]["content"])])
    assert orders[0] == [0, 1, 2, 3]  # strongest first without a sampling config
    assert all(sorted(o) == orders[0] for o in orders)
    assert len({tuple(o) for o in orders}) > 1


# ---------------------------------------------------------------- scoring


def test_oracle_scores_perfectly_on_test_split_only():
    latents = [0, 1, 2]
    contexts = make_contexts(latents)
    llm = FakeLLM(oracle)
    out = score_latents(contexts, explained(latents), llm, SCORER_CFG, seed=0)
    assert dict(out.schema) == score_schema()
    assert len(llm.calls) == 1 and len(llm.calls[0]) == len(latents) * 2 * PROMPTS_PER_SCORER
    assert all(r.top_logprobs is None for r in llm.requests)

    # Scored windows are exactly the test split: disjoint from everything the explainer saw.
    scored = [markers(e) for r in llm.requests for e in examples_of(r)]
    assert all(len(m) == 1 for m in scored)
    scored_seqs = set().union(*scored)
    split_of = dict(zip(contexts["seq"], contexts["split"], strict=True))
    assert scored_seqs == {s for s, sp in split_of.items() if sp == "test"}
    assert all(len(examples_of(r)) <= 3 for r in llm.requests)

    for row in out.iter_rows(named=True):
        assert row["status"] == "ok" and row["reason"] is None and row["n_failed"] == 0
        assert json.loads(row["prompt_versions"]) == {s: PROMPT_VERSIONS[s] for s in ("detection", "fuzzing")}
        for s in ("detection", "fuzzing"):
            assert row[f"{s}_n"] == TEST_ROWS and row[f"{s}_n_failed"] == 0
            for m in ("balanced_accuracy", "precision", "recall", "f1", "negative_accuracy"):
                assert row[f"{s}_{m}"] == 1.0
            assert row[f"{s}_accuracy_by_quantile"] == [1.0] * N_QUANTILES
            assert row[f"{s}_auroc"] is None  # no logprobs


def test_fuzzing_labels_mix_correct_and_wrong_marks():
    llm = FakeLLM(oracle)
    score_latents(
        make_contexts([0]), explained([0]), llm, ScorerConfig(kinds=["fuzzing"], examples_per_prompt=3), seed=0
    )
    examples = [e for r in llm.requests for e in examples_of(r)]
    activating = [e for e in examples if "cat" in e]
    correct = [e for e in activating if "<<cat>>" in e]
    # half of the 6 activating windows keep their true marks; negatives are marked somewhere
    assert len(activating) == 6 and len(correct) == 3
    assert all("<<" in e for e in examples)


def test_auroc_only_with_logprobs():
    latents = [0, 1]
    llm = FakeLLM(oracle, supports_logprobs=True)
    out = score_latents(make_contexts(latents), explained(latents), llm, SCORER_CFG, seed=0)
    assert all(r.top_logprobs for r in llm.requests)
    # the oracle's P("1") is 0.9 for every positive and 0.2 for every negative: perfect ranking
    assert out["detection_auroc"].to_list() == [1.0, 1.0]
    assert out["fuzzing_auroc"].to_list() == [1.0, 1.0]


def test_failed_requests_are_counted_not_dropped():
    latents = [0, 1, 2, 3]
    llm = FakeLLM(flaky(0.3))
    out = score_latents(make_contexts(latents), explained(latents), llm, SCORER_CFG, seed=0)
    assert 0 < len(llm.failed) < len(llm.requests)  # the 30% fake really failed some, not all

    expected = {(latent, s): 0 for latent in latents for s in ("detection", "fuzzing")}
    for r in llm.failed:
        (latent,) = {seq // 1000 for seq in markers(r.messages[-1]["content"])}
        kind = "fuzzing" if all("<<" in e for e in examples_of(r)) else "detection"
        expected[(latent, kind)] += len(examples_of(r))
    for row in out.iter_rows(named=True):
        for s in ("detection", "fuzzing"):
            assert row[f"{s}_n_failed"] == expected[(row["latent"], s)]
            assert row[f"{s}_n"] + row[f"{s}_n_failed"] == TEST_ROWS
        assert row["n_failed"] == row["detection_n_failed"] + row["fuzzing_n_failed"]
        if row["n_failed"]:
            assert "503" in row["reason"]
    assert out["n_failed"].sum() == sum(len(examples_of(r)) for r in llm.failed)


def test_unparseable_answers_are_failures_with_reason():
    def answer(request: ChatRequest) -> Completion:
        if "<<" in examples_of(request)[0]:
            return Completion("I cannot tell.")  # fuzzing: garbage
        return Completion("[1]")  # detection: wrong length, unless the prompt has one window

    out = score_latents(make_contexts([0]), explained([0]), FakeLLM(answer), SCORER_CFG, seed=0).row(0, named=True)
    assert out["fuzzing_n"] == 0 and out["fuzzing_n_failed"] == TEST_ROWS
    assert out["fuzzing_balanced_accuracy"] is None and out["fuzzing_accuracy_by_quantile"] is None
    assert out["detection_n"] == 1 and out["detection_n_failed"] == TEST_ROWS - 1  # only the 1-window prompt
    assert out["status"] == "ok"
    assert "unparseable" in out["reason"] and "expected 3 answers, got 1" in out["reason"]


def test_every_answer_failed_gives_failed_status():
    out = score_latents(make_contexts([0]), explained([0]), FakeLLM(flaky(1.0)), SCORER_CFG, seed=0)
    row = out.row(0, named=True)
    assert row["status"] == "failed" and row["n_failed"] == 2 * TEST_ROWS
    assert all(
        row[f"{s}_{m}"] is None
        for s in ("detection", "fuzzing")
        for m in ("balanced_accuracy", "precision", "recall", "f1", "auroc")
    )


def test_unusable_explanations_are_unscored():
    contexts = make_contexts([0, 1])
    llm = FakeLLM(oracle)
    out = score_latents(contexts, explained([0, 1, 5], l1="failed"), llm, SCORER_CFG, seed=0)
    rows = {r["latent"]: r for r in out.iter_rows(named=True)}
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "unscored" and rows[1]["reason"] == "explanation failed: no luck"
    assert rows[5]["status"] == "unscored" and rows[5]["reason"] == "no test-split examples"
    assert rows[1]["detection_n"] == 0 and rows[1]["detection_balanced_accuracy"] is None
    assert {m // 1000 for r in llm.requests for m in markers(r.messages[-1]["content"])} == {0}


def test_seeded_order_is_deterministic():
    contexts, expl = make_contexts([0, 1]), explained([0, 1])

    def prompts(seed: int) -> list[str]:
        llm = FakeLLM(oracle)
        score_latents(contexts, expl, llm, SCORER_CFG, seed=seed)
        return [r.messages[-1]["content"] for r in llm.requests]

    assert prompts(3) == prompts(3)
    assert prompts(3) != prompts(4)


def test_only_configured_scorers_run():
    llm = FakeLLM(oracle)
    out = score_latents(make_contexts([0]), explained([0]), llm, ScorerConfig(kinds=["detection"]), seed=0)
    row = out.row(0, named=True)
    assert len(llm.requests) == math.ceil(TEST_ROWS / ScorerConfig().examples_per_prompt)
    assert row["detection_n"] == TEST_ROWS and row["fuzzing_n"] == 0 and row["fuzzing_f1"] is None
    assert json.loads(row["prompt_versions"]) == {"detection": PROMPT_VERSIONS["detection"]}


def test_metrics_aggregate_by_hand():
    """A detection fake that misses the weakest windows (quantile 0) and is otherwise right."""
    contexts = make_contexts([0])
    quantile_of = dict(zip(contexts["seq"], contexts["quantile"], strict=True))

    def answer(request: ChatRequest) -> Completion:
        labels = [int(" cat" in e and quantile_of[min(markers(e))] != 0) for e in examples_of(request)]
        return Completion(str(labels))

    cfg = ScorerConfig(kinds=["detection"], examples_per_prompt=4)
    row = score_latents(contexts, explained([0]), FakeLLM(answer), cfg, seed=0).row(0, named=True)
    # 6 activating (2 per quantile), 4 negatives; quantile 0 missed -> tp = 4, fn = 2, fp = 0, tn = 4
    assert row["detection_n"] == 10
    assert row["detection_precision"] == 1.0  # 4 / (4 + 0)
    assert row["detection_recall"] == pytest.approx(4 / 6)
    assert row["detection_balanced_accuracy"] == pytest.approx((4 / 6 + 4 / 4) / 2)  # 0.8333
    assert row["detection_f1"] == pytest.approx(8 / (8 + 0 + 2))  # 2tp / (2tp + fp + fn) = 0.8
    assert row["detection_accuracy_by_quantile"] == [0.0, 1.0, 1.0]
    assert row["detection_negative_accuracy"] == 1.0


def test_always_yes_detector():
    def answer(request: ChatRequest) -> Completion:
        return Completion(" ".join("1" for _ in examples_of(request)))

    cfg = ScorerConfig(kinds=["detection"], examples_per_prompt=3)
    row = score_latents(make_contexts([0]), explained([0]), FakeLLM(answer), cfg, seed=0).row(0, named=True)
    # tp = 6, fp = 4, tn = 0, fn = 0
    assert row["detection_balanced_accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert row["detection_precision"] == pytest.approx(0.6)  # 6 / 10
    assert row["detection_f1"] == pytest.approx(12 / 16)  # 12 / (12 + 4 + 0)
    assert row["detection_accuracy_by_quantile"] == [1.0, 1.0, 1.0]
    assert row["detection_negative_accuracy"] == 0.0
