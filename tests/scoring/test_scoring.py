"""The LLM scorers end to end with scripted fake LLMs on a hand-built contexts table
(support/scoring_fixtures): list mode, failures, metrics by hand. Single mode, the chance
baseline and the test-set rules are in test_trust.py."""

from __future__ import annotations

import json
import math

import pytest
from support.scoring_fixtures import (
    N_QUANTILES,
    SAMPLING,
    TEST_ROWS,
    Completion,
    FakeLLM,
    examples_of,
    explained,
    flaky,
    make_contexts,
    markers,
    oracle,
)

from autointerp_assets.config import ScorerConfig
from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.scoring.prompts import PROMPT_VERSIONS, SHOT_SIZE
from autointerp_assets.scoring.scores import score_latents, score_schema

SCORER_CFG = ScorerConfig(kinds=["detection", "fuzzing"], examples_per_prompt=3, prompt_mode="list")
PROMPTS_PER_SCORER = math.ceil(TEST_ROWS / 3)  # 10 windows -> prompts of 3, 3, 3, 1


def score(contexts, explanations, llm, cfg=SCORER_CFG, mode="list"):
    return score_latents(contexts, explanations, llm, cfg, SAMPLING, mode=mode)


def test_oracle_scores_perfectly_on_test_split_only():
    latents = [0, 1, 2]
    contexts = make_contexts(latents)
    llm = FakeLLM(oracle)
    out = score(contexts, explained(latents), llm)
    assert dict(out.schema) == score_schema()
    # One call per scorer; every explanation is the same text, so no chance baseline is possible.
    assert len(llm.calls) == 2 and all(len(c) == len(latents) * PROMPTS_PER_SCORER for c in llm.calls)
    assert all(r.top_logprobs is None for r in llm.requests)

    # Scored windows are exactly the test split: disjoint from everything the explainer saw.
    scored = [markers(e) for r in llm.requests for e in examples_of(r)]
    assert all(len(m) == 1 for m in scored)
    split_of = dict(zip(contexts["seq"], contexts["split"], strict=True))
    assert set().union(*scored) == {s for s, sp in split_of.items() if sp == "test"}
    assert all(len(examples_of(r)) <= 3 for r in llm.requests)

    for row in out.iter_rows(named=True):
        assert row["status"] == "ok" and row["n_failed"] == 0 and row["llm_scorer_mode"] == "list"
        assert row["n_test_positives"] == 6 and row["n_test_negatives"] == 4
        assert json.loads(row["prompt_versions"]) == {
            s: f"list:{PROMPT_VERSIONS[f'{s}/list']}" for s in ("detection", "fuzzing")}
        for s in ("detection", "fuzzing"):
            assert row[f"{s}_n"] == TEST_ROWS and row[f"{s}_n_failed"] == 0
            for m in ("balanced_accuracy", "precision", "recall", "f1"):
                assert row[f"{s}_{m}"] == 1.0
            assert row[f"{s}_balanced_accuracy_n"] == TEST_ROWS
            assert row[f"{s}_accuracy_by_quantile"] == [1.0] * N_QUANTILES
            assert row[f"{s}_random_negative_accuracy"] == 1.0 and row[f"{s}_hard_negative_accuracy"] == 1.0
            assert row[f"{s}_auroc"] is None and row[f"{s}_auroc_n"] == 0  # no logprobs
        assert "detection auroc null: no window has a probability" in row["reason"]
        assert "no chance baseline" in row["reason"] and row["chance_latent"] is None


def test_fuzzing_labels_mix_correct_and_wrong_marks():
    llm = FakeLLM(oracle)
    score(make_contexts([0]), explained([0]), llm, ScorerConfig(kinds=["fuzzing"], examples_per_prompt=3))
    examples = [e for r in llm.requests for e in examples_of(r)]
    activating = [e for e in examples if "cat" in e]
    correct = [e for e in activating if "<<cat>>" in e]
    # half of the 6 activating windows keep their true marks; every window has one marked span of one token
    assert len(activating) == 6 and len(correct) == 3
    assert all(e.count("<<") == 1 for e in examples)


def test_auroc_from_logprobs_with_its_n():
    latents = [0, 1]
    llm = FakeLLM(oracle, supports_logprobs=True)
    out = score(make_contexts(latents), explained(latents), llm)
    assert all(r.top_logprobs for r in llm.requests)
    # the oracle's P("1") is 0.9 for every positive and 0.2 for every negative: perfect ranking
    assert out["detection_auroc"].to_list() == [1.0, 1.0] and out["detection_auroc_n"].to_list() == [10, 10]
    assert out["fuzzing_auroc"].to_list() == [1.0, 1.0]


def test_auroc_below_its_minimum_n_is_null_with_the_reason():
    cfg = SCORER_CFG.model_copy(update={"kinds": ["detection"], "min_auroc_n": 11})
    row = score(make_contexts([0]), explained([0]), FakeLLM(oracle, supports_logprobs=True), cfg).row(0, named=True)
    assert row["detection_auroc"] is None and row["detection_auroc_n"] == 10
    assert "10 windows with a score < scorer.min_auroc_n=11" in row["reason"]
    assert row["detection_balanced_accuracy"] == 1.0  # the decisions still count


def test_failed_requests_are_counted_not_dropped():
    latents = [0, 1, 2, 3]
    llm = FakeLLM(flaky(0.3))
    out = score(make_contexts(latents), explained(latents), llm)
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

    row = score(make_contexts([0]), explained([0]), FakeLLM(answer)).row(0, named=True)
    assert row["fuzzing_n"] == 0 and row["fuzzing_n_failed"] == TEST_ROWS
    assert row["fuzzing_balanced_accuracy"] is None and row["fuzzing_accuracy_by_quantile"] is None
    assert row["detection_n"] == 1 and row["detection_n_failed"] == TEST_ROWS - 1  # only the 1-window prompt
    assert row["status"] == "ok"
    assert "unparseable" in row["reason"] and "expected 3 answers, got 1" in row["reason"]


def test_every_answer_failed_gives_failed_status():
    row = score(make_contexts([0]), explained([0]), FakeLLM(flaky(1.0))).row(0, named=True)
    assert row["status"] == "failed" and row["n_failed"] == 2 * TEST_ROWS
    assert all(row[f"{s}_{m}"] is None for s in ("detection", "fuzzing")
               for m in ("balanced_accuracy", "precision", "recall", "f1", "auroc"))


def test_unusable_explanations_are_unscored():
    llm = FakeLLM(oracle)
    out = score(make_contexts([0, 1]), explained([0, 1, 5], l1="failed"), llm)
    rows = {r["latent"]: r for r in out.iter_rows(named=True)}
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "unscored" and rows[1]["reason"] == "explanation failed: no luck"
    assert rows[5]["status"] == "unscored" and rows[5]["reason"] == "no test-split examples"
    assert rows[1]["detection_n"] == 0 and rows[1]["detection_balanced_accuracy"] is None
    assert {m // 1000 for r in llm.requests for m in markers(r.messages[-1]["content"])} == {0}


def test_seeded_order_is_deterministic_and_the_worked_example_varies():
    contexts, expl = make_contexts([0, 1]), explained([0, 1])

    def prompts(seed: int) -> list[tuple[str, str]]:
        llm = FakeLLM(oracle)
        sampling = SAMPLING.model_copy(update={"seed": seed})
        score_latents(contexts, expl, llm, SCORER_CFG, sampling, mode="list")
        return [(r.messages[-1]["content"], r.messages[2]["content"]) for r in llm.requests]

    assert prompts(3) == prompts(3)
    assert prompts(3) != prompts(4)
    assert len({example_answer for _, example_answer in prompts(3)}) > 1  # not one list to copy


def test_only_configured_scorers_run():
    llm = FakeLLM(oracle)
    row = score(make_contexts([0]), explained([0]), llm, ScorerConfig(kinds=["detection"])).row(0, named=True)
    assert len(llm.requests) == math.ceil(TEST_ROWS / ScorerConfig().examples_per_prompt)
    assert row["detection_n"] == TEST_ROWS and row["fuzzing_n"] == 0 and row["fuzzing_f1"] is None
    assert json.loads(row["prompt_versions"]) == {"detection": f"list:{PROMPT_VERSIONS['detection/list']}"}


def test_metrics_aggregate_by_hand():
    """A detection fake that misses the weakest windows (quantile 0) and is otherwise right."""
    contexts = make_contexts([0])
    quantile_of = dict(zip(contexts["seq"], contexts["quantile"], strict=True))

    def answer(request: ChatRequest) -> Completion:
        labels = [int(" cat" in e and quantile_of[min(markers(e))] != 0) for e in examples_of(request)]
        return Completion(str(labels))

    cfg = ScorerConfig(kinds=["detection"], examples_per_prompt=4)
    row = score(contexts, explained([0]), FakeLLM(answer), cfg).row(0, named=True)
    # 6 activating (2 per quantile), 4 negatives; quantile 0 missed -> tp = 4, fn = 2, fp = 0, tn = 4
    assert row["detection_n"] == 10
    assert row["detection_precision"] == 1.0  # 4 / (4 + 0)
    assert row["detection_recall"] == pytest.approx(4 / 6)
    assert row["detection_balanced_accuracy"] == pytest.approx((4 / 6 + 4 / 4) / 2)  # 0.8333
    assert row["detection_f1"] == pytest.approx(8 / (8 + 0 + 2))  # 2tp / (2tp + fp + fn) = 0.8
    assert row["detection_accuracy_by_quantile"] == [0.0, 1.0, 1.0]
    assert row["detection_accuracy_by_quantile_n"] == [2, 2, 2]
    assert row["detection_random_negative_accuracy"] == 1.0 and row["detection_random_negative_accuracy_n"] == 2
    assert row["detection_answers_constant"] is False


def test_always_yes_detector_is_flagged_constant():
    def answer(request: ChatRequest) -> Completion:
        return Completion(" ".join("1" for _ in examples_of(request)))

    cfg = ScorerConfig(kinds=["detection"], examples_per_prompt=3)
    row = score(make_contexts([0]), explained([0]), FakeLLM(answer), cfg).row(0, named=True)
    # tp = 6, fp = 4, tn = 0, fn = 0
    assert row["detection_balanced_accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert row["detection_precision"] == pytest.approx(0.6)  # 6 / 10
    assert row["detection_f1"] == pytest.approx(12 / 16)  # 12 / (12 + 4 + 0)
    assert row["detection_accuracy_by_quantile"] == [1.0, 1.0, 1.0]
    assert row["detection_random_negative_accuracy"] == 0.0
    assert row["detection_answers_constant"] is True


def test_answers_that_copy_the_worked_example_are_counted_and_left_out():
    def copier(request: ChatRequest) -> Completion:
        if len(examples_of(request)) == 4:  # as many windows as the worked example: copy its answer list
            return Completion(request.messages[2]["content"])
        return oracle(request)

    assert SHOT_SIZE == 4
    cfg = ScorerConfig(kinds=["detection"], examples_per_prompt=4)  # prompts of 4, 4 and 2 windows
    row = score(make_contexts([0]), explained([0]), FakeLLM(copier), cfg).row(0, named=True)
    assert row["detection_n_copied"] == 8 and row["detection_n_failed"] == 8
    assert row["detection_n"] == 2  # the oracle's answers to the prompt of 2
    assert "8/10 samples failed, e.g. answer copies the prompt's worked example" in row["reason"]
