import polars as pl

from autointerp_assets.data.sampling import CONTEXT_SCHEMA, SKIPPED_SCHEMA
from autointerp_assets.explain.explainer import select_latents


def contexts_for(latents):
    rows = [{"latent": lat, "split": "explain", "kind": "top", "quantile": -1, "seq": i, "start": 0, "peak_index": 0,
             "tokens": [1], "token_strs": ["a"], "acts": [1.0], "max_act": 1.0, "activating": True}
            for i, lat in enumerate(latents)]
    return pl.DataFrame(rows, schema=CONTEXT_SCHEMA)


STATS = pl.DataFrame({"latent": [0, 1, 2, 3], "n_firing": [5, 50, 20, 0]})
SKIPPED = pl.DataFrame({"latent": [3], "reason": ["dead"]}, schema=SKIPPED_SCHEMA)


def test_selection_keeps_the_chosen_and_records_the_rest_as_skipped():
    contexts, skipped = select_latents(contexts_for([0, 1, 2]), SKIPPED, STATS, only=[0, 2], max_latents=None)
    assert sorted(contexts["latent"].unique()) == [0, 2]
    assert dict(skipped.iter_rows()) == {3: "dead", 1: "not selected for this run (latent selection)"}


def test_max_latents_takes_the_most_frequent_first():
    contexts, skipped = select_latents(contexts_for([0, 1, 2]), SKIPPED, STATS, only=[], max_latents=2)
    assert sorted(contexts["latent"].unique()) == [1, 2]
    assert 0 in set(skipped["latent"])


def test_no_selection_changes_nothing():
    contexts, skipped = select_latents(contexts_for([0, 1, 2]), SKIPPED, STATS, only=[], max_latents=None)
    assert contexts.height == 3 and skipped.equals(SKIPPED)


def test_the_chance_baseline_shows_in_the_estimate_and_can_be_switched_off():
    from support.scoring_fixtures import SAMPLING, SKIPPED, TEST_ROWS, make_contexts

    from autointerp_assets.config import ExplainerConfig, LLMConfig, ScorerConfig
    from autointerp_assets.report.cost import estimate_cost

    contexts, llm = make_contexts([0, 1, 2]), LLMConfig(price_per_million_input=1.0)
    scorer = ScorerConfig(kinds=["detection", "fuzzing", "embedding"], prompt_mode="single")
    with_chance = estimate_cost(contexts, SKIPPED, ExplainerConfig(), scorer, SAMPLING, llm)
    without = estimate_cost(contexts, SKIPPED, ExplainerConfig(), scorer.model_copy(update={"chance_baseline": False}),
                            SAMPLING, llm)
    # 3 explainer requests (the skipped latent sends none); one per window and LLM scorer; embedding sends none
    assert without.requests == 3 + 2 * 3 * TEST_ROWS and without.chance_requests == 0
    assert with_chance.chance_requests == 2 * 3 * TEST_ROWS
    assert with_chance.requests == without.requests + with_chance.chance_requests
    assert 0 < with_chance.chance_cost_usd < with_chance.cost_usd
    assert with_chance.as_metadata()["estimated_chance_baseline_requests"] == with_chance.chance_requests
