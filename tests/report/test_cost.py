"""The cost estimate shown on `contexts` before anyone pays: the chance baseline's share is in it."""

from support.scoring_fixtures import SAMPLING, SKIPPED, TEST_ROWS, make_contexts

from autointerp_assets.config import ExplainerConfig, LLMConfig, ScorerConfig
from autointerp_assets.report.cost import estimate_cost


def test_the_chance_baseline_shows_in_the_estimate_and_can_be_switched_off():
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
