"""Explainers end to end with scripted fake LLMs on a hand-built contexts table (support/scoring_fixtures)."""

from __future__ import annotations

import re

import polars as pl
import pytest
from support.scoring_fixtures import EXPLAIN_ACTIVATING, SKIPPED, FakeLLM, make_contexts, markers

from autointerp_assets.config import ExplainerConfig, SamplingConfig
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA, explain_latents
from autointerp_assets.explain.prompts import PROMPT_VERSIONS
from autointerp_assets.llm.api import ChatRequest, Completion

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




def test_single_token_and_output_side_explainers_run_through_explain_latents():
    contexts = make_contexts([0, 1])
    llm = FakeLLM(explainer_answer)
    out = explain_latents(contexts, SKIPPED.clear(), llm, ExplainerConfig(kind="single_token"), SamplingConfig())
    assert out["status"].to_list() == ["ok", "ok"]
    assert set(out["prompt_version"]) == {PROMPT_VERSIONS["explain/single_token"]}
    final = llm.requests[0].messages[-1]["content"]
    assert final.count("<<") == final.count("Example ")  # one marked token per example
    llm = FakeLLM(explainer_answer)
    promoted = {0: [" meow", " purr"], 1: [" bark"]}
    out = explain_latents(contexts, SKIPPED.clear(), llm, ExplainerConfig(kind="output_side"), SamplingConfig(), promoted)
    assert set(out["prompt_version"]) == {PROMPT_VERSIONS["explain/output_side"]}
    asked = sorted(r.messages[-1]["content"].rsplit("promotes: ", 1)[1] for r in llm.requests)
    assert asked == ['" bark"', '" meow", " purr"']
    with pytest.raises(ValueError, match="promoted tokens"):
        explain_latents(contexts, SKIPPED.clear(), llm, ExplainerConfig(kind="output_side"), SamplingConfig())
    with pytest.raises(ValueError, match="apply to kinds default and contrastive"):
        ExplainerConfig(kind="single_token", show_activations=True)
