"""The embedding scorer with the real all-MiniLM-L6-v2 (shipped in a PyPI package, offline)."""

import polars as pl
import pytest

from autointerp_assets.config import SamplingConfig, ScorerConfig
from autointerp_assets.data.sampling import CONTEXT_SCHEMA
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.scoring.embedding import SentenceEncoder, token_phrase
from autointerp_assets.scoring.scores import score_latents

THREADS = ["t = threading.Thread(target=worker)", "lock = _thread.allocate_lock()", "thread.join(timeout=5)"]
OTHER = ["Add two cups of flour and stir", "The river froze over in winter", "print(sum(values) / len(values))"]


def window(latent, text, activating, split="test"):
    return {"latent": latent, "split": split, "kind": "quantile" if activating else "random", "quantile": 0,
            "seq": hash(text) % 1000, "start": 0, "peak_index": 0, "tokens": [0], "token_strs": [text],
            "acts": [1.0 if activating else 0.0], "max_act": 1.0 if activating else 0.0, "activating": activating}


def explained(latent, text, status="ok"):
    return {"latent": latent, "status": status, "explanation": text if status == "ok" else None,
            "reason": None if status == "ok" else "llm error", "explainer": "default", "explainer_model": "m",
            "prompt_version": "v", "n_examples": 3}


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


SAMPLING = SamplingConfig(min_test_positives=2, min_test_negatives=2)


def score_embedding(contexts, explanations, encoder, **cfg):
    """An embedding-only scores table (no LLM anywhere)."""
    cfg = ScorerConfig(kinds=["embedding"], **{"min_auroc_n": 4, **cfg})
    return score_latents(contexts, explanations, None, cfg, SAMPLING, encoder=lambda: encoder)


def test_a_fitting_explanation_retrieves_the_activating_windows(encoder):
    rows = [window(0, t, True) for t in THREADS] + [window(0, t, False) for t in OTHER]
    rows += [window(0, "threading.Thread(target=shown_to_explainer)", True, split="explain")]  # not scored
    rows += [window(1, t, True) for t in THREADS] + [window(1, t, False) for t in OTHER]
    contexts = pl.DataFrame(rows, schema=CONTEXT_SCHEMA)
    explanations = pl.DataFrame([explained(0, "threads and thread synchronisation"),
                                 explained(1, "", status="failed"),
                                 explained(2, "cooking recipes")], schema=EXPLANATION_SCHEMA)
    scores = score_embedding(contexts, explanations, encoder)
    by_latent = {r["latent"]: r for r in scores.iter_rows(named=True)}
    assert by_latent[0]["embedding_auroc"] == 1.0 and by_latent[0]["embedding_auroc_n"] == 6
    # An embedding-only run scores its latents, and names no LLM: none ran.
    assert by_latent[0]["status"] == "ok" and by_latent[0]["scorer_model"] is None
    assert by_latent[0]["llm_scorer_mode"] is None and by_latent[0]["prompt_versions"] == "{}"
    # Chance: the only other usable explanation (latent 2's, which has no windows of its own).
    assert by_latent[0]["chance_latent"] == 2 and by_latent[0]["embedding_auroc_chance_n"] == 6
    assert by_latent[1]["embedding_auroc"] is None and by_latent[1]["status"] == "unscored"  # no explanation
    assert by_latent[2]["reason"] == "no test-split examples"


def test_a_misleading_explanation_ranks_them_last(encoder):
    rows = [window(0, t, True) for t in THREADS] + [window(0, t, False) for t in OTHER[:2]]
    contexts = pl.DataFrame(rows, schema=CONTEXT_SCHEMA)
    scores = score_embedding(contexts, pl.DataFrame([explained(0, "baking bread and winter weather")],
                                                     schema=EXPLANATION_SCHEMA), encoder, min_auroc_n=2)
    assert scores["embedding_auroc"].item() == 0.0


def test_the_chance_baseline_runs_the_same_windows_with_the_other_explanation(encoder):
    rows = [window(0, t, True) for t in THREADS] + [window(0, t, False) for t in OTHER]
    rows += [window(1, t, True) for t in OTHER] + [window(1, t, False) for t in THREADS]
    contexts = pl.DataFrame(rows, schema=CONTEXT_SCHEMA)
    explanations = pl.DataFrame([explained(0, "threads and thread synchronisation"),
                                 explained(1, "cooking, weather and arithmetic")], schema=EXPLANATION_SCHEMA)
    out = score_embedding(contexts, explanations, encoder, min_auroc_n=2)
    assert out["chance_latent"].to_list() == [1, 0]
    assert out["embedding_auroc"].to_list() == [1.0, 1.0]
    assert out["embedding_auroc_chance"].to_list() == [0.0, 0.0]  # each other's explanation ranks them backwards
    assert out["embedding_auroc_lift"].to_list() == [1.0, 1.0] and out["embedding_auroc_chance_n"].to_list() == [6, 6]


def test_tokens_are_phrased_as_explanations_name_them():
    assert token_phrase(" return") == 'the token "return"'
    assert token_phrase("\n") == 'the token "\\n"'

