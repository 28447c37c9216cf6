"""What makes a score evidence: one window per request with P(yes), AUROC from probabilities (a
confidently wrong scorer), the chance baseline of a shuffled explanation, test sets that can measure,
escalation to review. Scripted fake LLMs on the hand-built contexts of support/scoring_fixtures."""

from __future__ import annotations

import json

import polars as pl
import pytest
from support.scoring_fixtures import (
    SAMPLING,
    TEST_ROWS,
    Completion,
    FakeLLM,
    examples_of,
    explained,
    is_single,
    make_contexts,
    markers,
    oracle,
    true_labels,
    yes_no,
)

from autointerp_assets.config import ScorerConfig
from autointerp_assets.llm.api import ChatRequest
from autointerp_assets.scoring import chance
from autointerp_assets.scoring.prompts import SINGLE_MAX_TOKENS
from autointerp_assets.scoring.scores import score_latents
from autointerp_assets.scoring.summary import review_queue, score_summary

LLM_SCORERS = ["detection", "fuzzing"]


def score(contexts, explanations, llm, mode="single", **cfg):
    return score_latents(contexts, explanations, llm, ScorerConfig(kinds=LLM_SCORERS, **cfg), SAMPLING, mode=mode)


def test_single_mode_asks_one_window_per_request_and_reads_p_yes():
    llm = FakeLLM(oracle, supports_logprobs=True)
    row = score(make_contexts([0]), explained([0]), llm).row(0, named=True)
    assert len(llm.requests) == 2 * TEST_ROWS  # one request per window and scorer
    assert all(is_single(r) and len(examples_of(r)) == 1 for r in llm.requests)
    assert all(r.max_tokens == SINGLE_MAX_TOKENS and r.top_logprobs for r in llm.requests)
    assert all(len(r.messages) == 2 for r in llm.requests)  # no worked example: no answer to copy
    assert row["llm_scorer_mode"] == "single" and '"detection": "single:' in row["prompt_versions"]
    for s in LLM_SCORERS:
        assert row[f"{s}_auroc"] == 1.0 and row[f"{s}_auroc_n"] == TEST_ROWS
        assert row[f"{s}_balanced_accuracy"] == 1.0


def test_single_mode_without_logprobs_still_decides_but_has_no_auroc():
    row = score(make_contexts([0]), explained([0]), FakeLLM(oracle)).row(0, named=True)
    assert row["detection_balanced_accuracy"] == 1.0
    assert row["detection_auroc"] is None and "no window has a probability" in row["reason"]


def test_auroc_comes_from_probabilities_not_from_the_answers():
    """Always answers "Yes", but less sure on the windows that are really negative: the 0/1
    answers carry nothing (balanced accuracy 0.5), the probabilities rank perfectly."""

    def yes_man(request: ChatRequest) -> Completion:
        return yes_no(1, 0.95 if true_labels(request)[0] else 0.6, logprobs=True)

    row = score(make_contexts([0]), explained([0]), FakeLLM(yes_man, supports_logprobs=True)).row(0, named=True)
    assert row["detection_balanced_accuracy"] == 0.5 and row["detection_answers_constant"] is True
    assert row["detection_auroc"] == 1.0


def test_a_confidently_wrong_scorer_scores_below_chance_and_goes_to_review():
    """Answers the opposite of the truth with 99% confidence; a shuffled explanation gets the
    same wrong answers, so the lift is nothing, and the latent is flagged."""

    def contrarian(request: ChatRequest) -> Completion:
        truth = true_labels(request)[0]
        return yes_no(1 - truth, 0.01 if truth else 0.99, logprobs=True)

    texts = {0: "the word cat", 1: "the word dog"}
    out = score(make_contexts([0, 1]), explained([0, 1], texts), FakeLLM(contrarian, supports_logprobs=True))
    row = out.row(0, named=True)
    for s in LLM_SCORERS:
        assert row[f"{s}_auroc"] == 0.0 and row[f"{s}_balanced_accuracy"] == 0.0
        assert row[f"{s}_auroc_chance"] == 0.0 and row[f"{s}_auroc_lift"] == 0.0
    flagged = review_queue(out, LLM_SCORERS, min_lift=0.1, max_disagreement=0.3)
    assert flagged["latent"].to_list() == [0, 1]
    assert "detection: auroc lift +0.00 over chance < 0.1" in flagged["reasons"][0]


def explanation_reader(request: ChatRequest) -> Completion:
    """Answers from the explanation: yes when the word it names is in the window (marked, for fuzzing)."""
    content = request.messages[-1]["content"]
    word = content.split("the word ", 1)[1].split("<", 1)[0].strip()
    window = examples_of(request)[0]
    hit = f"<<{word}>>" in window if "<<" in window else f" {word}" in window
    return yes_no(int(hit), 0.9 if hit else 0.1, logprobs=True)


def test_chance_baseline_is_another_latents_explanation_through_the_same_scorer():
    texts = {0: "the word cat", 1: "the word zebra", 2: "the word yak"}
    llm = FakeLLM(explanation_reader, supports_logprobs=True)
    out = score(make_contexts([0, 1, 2]), explained([0, 1, 2], texts), llm)
    donors = chance.donors(texts, SAMPLING.seed)
    assert out["chance_latent"].to_list() == [donors[0], donors[1], donors[2]]
    assert all(donors[latent] != latent for latent in donors)
    assert len(llm.requests) == 2 * 2 * 3 * TEST_ROWS  # scorers x (explanation, chance) x latents x windows
    for row in out.iter_rows(named=True):
        latent, donor = row["latent"], row["chance_latent"]
        # The chance run saw this latent's windows with the donor's explanation.
        asked = [r for r in llm.requests if {m // 1000 for m in markers(examples_of(r)[0])} == {latent}
                 and texts[donor] in r.messages[-1]["content"]]
        assert len(asked) == 2 * TEST_ROWS
        for s in LLM_SCORERS:
            expected_true = 1.0 if latent == 0 else 0.5  # only "cat" is in the windows at all
            assert row[f"{s}_auroc"] == pytest.approx(expected_true)
            assert row[f"{s}_auroc_chance"] == pytest.approx(1.0 if donor == 0 else 0.5)
            assert row[f"{s}_auroc_lift"] == pytest.approx(row[f"{s}_auroc"] - row[f"{s}_auroc_chance"])
            assert row[f"{s}_auroc_chance_n"] == TEST_ROWS
    summary = score_summary(out, LLM_SCORERS)
    assert summary["n_latents_detection_auroc"] == 3 and "mean_detection_auroc_lift" in summary


def test_chance_baseline_can_be_switched_off():
    texts = {0: "the word cat", 1: "the word dog"}
    llm = FakeLLM(oracle, supports_logprobs=True)
    out = score(make_contexts([0, 1]), explained([0, 1], texts), llm, chance_baseline=False)
    assert len(llm.requests) == 2 * 2 * TEST_ROWS
    assert out["detection_auroc_chance"].null_count() == 2 and out["chance_latent"].null_count() == 2
    assert out["reason"].null_count() == 2  # off by choice: nothing to report


def reader_of_both_forms(request: ChatRequest) -> Completion:
    """Like `explanation_reader`, and also reads the top-tokens form `tokens: " cat", ...`."""
    description = request.messages[-1]["content"].split("<description>", 1)[1].split("</description>", 1)[0]
    if not description.startswith("tokens: "):
        return explanation_reader(request)
    words = [w.strip() for w in json.loads("[" + description.removeprefix("tokens: ") + "]")]
    window = examples_of(request)[0]
    hit = any((f"<<{w}>>" in window) if "<<" in window else (f" {w}" in window) for w in words)
    return yes_no(int(hit), 0.9 if hit else 0.1, logprobs=True)


def test_top_tokens_baseline_says_how_much_the_llm_explanation_adds():
    """Latent 0's explanation is right, latent 1's names a word its windows never hold; the
    top-tokens baseline (" cat", the explain split's heaviest token) reads both right."""
    texts = {0: "the word cat", 1: "the word zebra"}
    llm = FakeLLM(reader_of_both_forms, supports_logprobs=True)
    out = score(make_contexts([0, 1]), explained([0, 1], texts), llm, chance_baseline=False, top_tokens_baseline=True)
    assert out["top_tokens_explanation"].to_list() == ['tokens: " cat"'] * 2  # the only active token
    assert len(llm.requests) == 2 * 2 * 2 * TEST_ROWS  # scorers x (explanation, top tokens) x latents x windows
    for s in LLM_SCORERS:
        assert out[f"{s}_auroc_top_tokens"].to_list() == pytest.approx([1.0, 1.0])
        assert out[f"{s}_auroc_top_tokens_n"].to_list() == [TEST_ROWS] * 2
        assert out[f"{s}_auroc_over_top_tokens"].to_list() == pytest.approx([0.0, -0.5])
    assert out["detection_auroc_chance"].null_count() == 2  # the baselines are independent switches
    summary = score_summary(out, LLM_SCORERS)
    assert summary["mean_detection_auroc_over_top_tokens"] == pytest.approx(-0.25)


def one_class(contexts: pl.DataFrame, activating: bool) -> pl.DataFrame:
    """Drop one class from the test split of latent 0."""
    drop = (pl.col("latent") == 0) & (pl.col("split") == "test") & (pl.col("activating") == activating)
    return contexts.filter(~drop)


@pytest.mark.parametrize("missing", [True, False])
def test_a_test_set_without_both_classes_is_unscored(missing):
    llm = FakeLLM(oracle, supports_logprobs=True)
    out = score(one_class(make_contexts([0, 1]), missing), explained([0, 1], {1: "the word dog"}), llm)
    row = out.row(0, named=True)
    assert row["status"] == "unscored" and row["reason"].startswith("test set has ")
    assert "sampling.min_test_positives=3" in row["reason"]
    assert all(row[c] is None for c in out.columns if c.endswith(("_auroc", "_balanced_accuracy", "_lift")))
    assert {m // 1000 for r in llm.requests for m in markers(r.messages[-1]["content"])} == {1}
    assert score_summary(out, LLM_SCORERS)["n_unscored_test_set"] == 1


def test_scorers_that_disagree_go_to_review():
    table = pl.DataFrame({"latent": [0, 1], "status": ["ok", "ok"],
                          "detection_auroc": [0.9, 0.9], "detection_auroc_lift": [0.4, 0.4],
                          "embedding_auroc": [0.85, 0.5], "embedding_auroc_lift": [0.35, 0.0]})
    flagged = review_queue(table, ["detection", "embedding"], min_lift=0.1, max_disagreement=0.3)
    assert flagged["latent"].to_list() == [1]
    assert "scorers disagree: detection lift +0.40 vs embedding +0.00" in flagged["reasons"][0]
