"""Known answers through the real pipeline: a JumpReLU coder configured as the `embed_tokens`
hookpoint of the shipped SmolLM2, each latent firing exactly on chosen tokens (so its true
explanation is known); corpus ... contexts materialised; the true explanations imported as
`explanations` from a file; `scores` materialised. Each latent is also scored, through the same
scorer on the same windows, with a shuffled explanation (another latent's: the chance baseline),
and the true explanations must beat it by a clear margin. `bench/known_answer.py` runs the same
path on all 16 latents with a shuffled assignment imported as well (the README's figures). The
one-class and confidently-wrong cases are in test_trust.py.
"""

from __future__ import annotations

import re

import pytest
from support import known_answer as ka
from support.fake_openai_server import FaultServer

from autointerp_assets.scoring.registry import SCORERS

TRIGGERS = ka.TRIGGERS[::2]  # every other known-answer latent: single tokens and token classes
MARGIN = 0.25  # mean AUROC lift over the chance baseline; measured lifts are in the README
SURPRISAL_MARGIN = 0.08  # about half the measured mean lift (0.155, README), fp32 prompt scoring
DETECTION_MARGIN = 0.12  # about half the measured mean lift of the local default (likelihood mode, README)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, subject):
    run = ka.Pipeline(tmp_path_factory.mktemp("known"), subject, TRIGGERS)
    run.prepare()
    return run


@pytest.fixture(scope="module")
def embedding_scores(pipeline):
    pipeline.import_explanations(pipeline.true_texts(), "true")
    return pipeline.scores(kinds=["embedding"])


def test_true_explanations_beat_shuffled_ones_with_the_embedding_scorer(embedding_scores):
    table = embedding_scores
    assert table["status"].to_list() == ["ok"] * len(TRIGGERS) and table["chance_latent"].null_count() == 0
    assert table["embedding_auroc_lift"].mean() >= MARGIN
    gap = table["embedding_auroc"] - table["embedding_auroc_chance"] - table["embedding_auroc_lift"]
    assert (gap.abs() < 1e-12).all()
    assert (table["embedding_auroc_n"] == table["n_test_positives"] + table["n_test_negatives"]).all()
    assert (table["embedding_auroc_chance_n"] == table["embedding_auroc_n"]).all()
    assert table["scorer_model"].null_count() == table.height  # no LLM ran, none is named


def test_every_score_column_has_its_n_chance_and_lift(embedding_scores):
    columns = set(embedding_scores.columns)
    for s, scorer in SCORERS.items():
        for m in scorer.metrics:
            assert {f"{s}_{m}_n", f"{s}_{m}_chance", f"{s}_{m}_chance_n", f"{s}_{m}_lift"} <= columns
    metric_columns = [c for c in columns if c.endswith(("_auroc", "_balanced_accuracy", "_f1", "_precision", "_recall"))]
    assert metric_columns and all(f"{c}_chance" in columns and f"{c}_lift" in columns for c in metric_columns)


def keyword_reader(body: dict) -> str:
    """An LLM that can only do one thing: answer Yes when a term the description quotes ("def")
    is in the excerpt (detection) or is the marked span (fuzzing). Descriptions without a quoted
    term get No. It reads the prompt as the real scorer sends it over HTTP."""
    content = body["messages"][-1]["content"]
    excerpt = re.search(r"<excerpt>(.*)</excerpt>", content).group(1)
    terms = re.findall(r'"([^"]+)"', re.search(r"<description>(.*)</description>", content).group(1))
    if "<<" in excerpt:
        hit = any(span.strip() in terms for span in re.findall(r"<<(.*?)>>", excerpt))
    else:
        hit = any(re.search(rf"(?<!\w){re.escape(t)}(?!\w)", excerpt) for t in terms)
    return "Yes" if hit else "No"


def test_llm_scorers_over_http_separate_true_from_shuffled_explanations(pipeline):
    """The LLM scorers' whole path (asset, resource, HTTP client, prompts, P(yes) from logprobs,
    metrics, chance baseline): with a reader that follows the explanation, the true explanations
    beat the shuffled ones. How far the shipped 135M model gets is measured in bench/ (README)."""
    server = FaultServer()
    server.answer = keyword_reader
    try:
        pipeline.import_explanations(pipeline.true_texts(), "true")
        table = pipeline.scores(llm={"backend": "openai", "base_url": server.base_url, "model": "reader"},
                                kinds=["detection", "fuzzing"], prompt_mode="single")
    finally:
        server.close()
    assert set(table["llm_scorer_mode"]) == {"single"} and table["n_failed"].sum() == 0
    quoted = [i for i, t in enumerate(TRIGGERS) if '"' in t.explanation]
    assert len(quoted) >= len(TRIGGERS) // 2
    for s in ("detection", "fuzzing"):
        assert table[f"{s}_auroc_lift"].mean() >= MARGIN
        assert table[f"{s}_balanced_accuracy_lift"].mean() >= MARGIN
        assert table[f"{s}_auroc"].gather(quoted).mean() >= 0.9  # where the reader can read, it is right


def simulation_reader(body: dict) -> str:
    """A simulator that can only do one thing: write 10 on the tokens the explanation quotes, 0 elsewhere."""
    content = body["messages"][-1]["content"]
    terms = re.findall(r'"([^"]+)"', re.search(r"Explanation: (.*)\n", content).group(1))
    block = content.split("<start>\n", 1)[1].split("<end>", 1)[0]
    lines = [line.rsplit("\t", 1)[0] for line in block.splitlines()]
    return "<start>\n" + "".join(f"{t}\t{10 if t.strip() in terms else 0}\n" for t in lines) + "<end>\n"


def test_simulation_over_http_separates_true_from_shuffled_explanations(pipeline):
    """The simulation scorer's whole path over HTTP, on a server without prompt logprobs (it falls
    back to chat): a simulator that follows the explanation correlates with the true activations
    under the true explanations, far less under shuffled ones."""
    server = FaultServer()
    server.answer = simulation_reader
    server.policy = lambda n, body: "no_route" if "prompt" in body else "ok"  # no /completions route
    try:
        pipeline.import_explanations(pipeline.true_texts(), "true")
        table = pipeline.scores(llm={"backend": "openai", "base_url": server.base_url, "model": "reader"},
                                kinds=["simulation"])
    finally:
        server.close()
    assert table["status"].to_list() == ["ok"] * len(TRIGGERS)
    assert (table["simulation_n_failed"] == 0).all()
    windows = table["n_test_positives"] + table["n_test_negatives"]
    assert (table["simulation_n"] == windows).all()  # every window simulated, one chat request each
    quoted = [i for i, t in enumerate(TRIGGERS) if '"' in t.explanation and len(t.tokens) == 1]
    # The reader also marks the trigger's spelling without a leading space, which the latent ignores.
    assert table["simulation_r"].gather(quoted).min() >= 0.5
    assert table["simulation_r_lift"].mean() >= MARGIN
    for i in range(table.height):  # a null r always says why
        if table["simulation_r"][i] is None:
            assert "simulation r null" in table["reason"][i]


@pytest.mark.slow
def test_surprisal_with_the_shipped_model_separates_true_from_shuffled_explanations(pipeline):
    """Surprisal through the pipeline with the in-process SmolLM2 (prompt logprobs, no server)."""
    pipeline.import_explanations(pipeline.true_texts(), "true")
    table = pipeline.scores(kinds=["surprisal"])
    print("surprisal AUROC", table["surprisal_auroc"].round(2).to_list(),
          "chance", table["surprisal_auroc_chance"].round(2).to_list())
    assert table["status"].to_list() == ["ok"] * len(TRIGGERS) and (table["surprisal_n_failed"] == 0).all()
    assert (table["surprisal_auroc_n"] == table["n_test_positives"] + table["n_test_negatives"]).all()
    assert table["surprisal_auroc_lift"].mean() >= SURPRISAL_MARGIN


@pytest.mark.slow
def test_detection_as_configured_by_default_separates_true_from_shuffled_explanations(pipeline):
    """The default offline LLM scorer: detection with the in-process SmolLM2, whose mode the local
    backend resolves to `likelihood`."""
    pipeline.import_explanations(pipeline.true_texts(), "true")
    table = pipeline.scores(kinds=["detection"])
    print("detection AUROC", table["detection_auroc"].round(2).to_list(),
          "chance", table["detection_auroc_chance"].round(2).to_list())
    assert table["llm_scorer_mode"].to_list() == ["likelihood"] * len(TRIGGERS)
    assert table["status"].to_list() == ["ok"] * len(TRIGGERS) and (table["detection_n_failed"] == 0).all()
    assert (table["detection_auroc_n"] == table["n_test_positives"] + table["n_test_negatives"]).all()
    assert table["detection_balanced_accuracy"].is_null().all()  # a ranking: no 0/1 decisions
    assert table["detection_auroc_lift"].mean() >= DETECTION_MARGIN
