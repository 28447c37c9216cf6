"""The embedding scorer with the real all-MiniLM-L6-v2 (shipped in a PyPI package, offline)."""

import polars as pl
import pytest

from autointerp_assets.data.sampling import CONTEXT_SCHEMA
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.scoring.embedding import SentenceEncoder, score_embedding

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
    assert by_latent[0]["embedding_auroc"] == 1.0 and by_latent[0]["embedding_n"] == 6
    assert by_latent[1]["embedding_auroc"] is None and by_latent[1]["embedding_n"] == 0  # no explanation
    assert by_latent[2]["embedding_n"] == 0  # no test windows


def test_a_misleading_explanation_ranks_them_last(encoder):
    rows = [window(0, t, True) for t in THREADS] + [window(0, t, False) for t in OTHER[:2]]
    contexts = pl.DataFrame(rows, schema=CONTEXT_SCHEMA)
    scores = score_embedding(contexts, pl.DataFrame([explained(0, "baking bread and winter weather")],
                                                     schema=EXPLANATION_SCHEMA), encoder)
    assert scores["embedding_auroc"].item() == 0.0
