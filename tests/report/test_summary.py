"""The terminal summary: explanations beside their scores, lift over chance when the scorers
report a `<metric>_chance`, reviewers' edits and verdicts, and the cost."""

import polars as pl

from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.report import review, summary
from autointerp_assets.store.store import ArtifactStore, partition_path

LAYER, RANGE = "layers.3", "00000-00015"


def _store(tmp_path, chance: bool) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path))
    store.write_parquet(partition_path("explanations", LAYER, RANGE), pl.DataFrame([
        {"latent": i, "status": "ok" if i < 2 else "skipped", "explanation": f"tokens like x{i}" if i < 2 else None,
         "reason": None if i < 2 else "not selected", "explainer": "default", "explainer_model": "m",
         "prompt_version": "p", "n_examples": 10} for i in range(3)], schema=EXPLANATION_SCHEMA))
    scores = {"latent": [0, 1], "status": ["ok", "ok"], "detection_balanced_accuracy": [0.9, 0.5],
              "embedding_auroc": [0.8, 0.6]}
    if chance:
        scores |= {"detection_balanced_accuracy_chance": [0.5, 0.6], "embedding_auroc_chance": [0.45, 0.5]}
    store.write_parquet(partition_path("scores", LAYER, RANGE), pl.DataFrame(scores))
    for asset, requests in (("explanations", 2), ("scores", 10)):
        store.write_json(partition_path(asset, LAYER, RANGE, "usage.json"),
                         {"llm_requests": requests, "llm_cache_hits": 1, "llm_prompt_tokens": 100 * requests,
                          "llm_completion_tokens": 5, "llm_cost_usd": 0.001, "llm_failures": 0})
    return store


def test_scores_sit_beside_explanations_with_their_lift_best_first(tmp_path):
    text = summary.partition_table(_store(tmp_path, chance=True), LAYER, RANGE)
    lines = text.splitlines()
    assert lines[0] == f"{LAYER}|{RANGE}: 3 latents: explained 2, failed 0, skipped 1"
    assert lines[2].split() == ["latent", "explanation", "detect", "lift", "embed", "lift"]
    assert lines[3].split() == ["0", "tokens", "like", "x0", "0.90", "0.40", "0.80", "0.35"]
    assert lines[4].split()[-4:] == ["0.50", "-0.10", "0.60", "0.10"]
    assert lines[5].split() == ["mean", "0.70", "0.15", "0.70", "0.23"]
    assert lines[6] == "(detect: balanced accuracy, embed: AUROC)"


def test_a_likelihood_mode_run_is_headlined_by_its_auroc(tmp_path):
    """Likelihood mode ranks windows and decides nothing: balanced accuracy is null and the
    table shows the AUROC, the metric its lift and the review queue are judged by."""
    store = _store(tmp_path, chance=True)
    scores = store.read_parquet(partition_path("scores", LAYER, RANGE)).with_columns(
        detection_balanced_accuracy=pl.lit(None, pl.Float64), detection_auroc=pl.Series([0.7, 0.6]),
        detection_auroc_chance=pl.Series([0.5, 0.5]))
    store.write_parquet(partition_path("scores", LAYER, RANGE), scores)
    lines = summary.partition_table(store, LAYER, RANGE).splitlines()
    assert lines[3].split() == ["0", "tokens", "like", "x0", "0.70", "0.20", "0.80", "0.35"]
    assert lines[6] == "(detect: AUROC, embed: AUROC)"


def test_without_a_baseline_it_says_where_chance_lies_and_shows_edits(tmp_path):
    store = _store(tmp_path, chance=False)
    explained = store.read_parquet(partition_path("explanations", LAYER, RANGE))
    current = review.standing(explained, [])
    review.append(store, LAYER, RANGE, review.new_review(current, 1, "edit", "ana", "the letter x"))
    text = summary.partition_table(store, LAYER, RANGE)
    assert "lift" not in text and "at chance AUROC and balanced accuracy are 0.5" in text
    assert "[edit] the letter x" in text
    assert summary.cost_line(store, LAYER, RANGE).startswith("LLM: 12 requests (2 from the cache), 1,200 prompt")


def test_the_layer_report_rolls_up_intervention_scores_where_ranges_have_them(tmp_path):
    from autointerp_assets.report.rollup import build_report
    from autointerp_assets.store import layout

    store = _store(tmp_path, chance=True)
    scores = store.read_parquet(partition_path("scores", LAYER, RANGE)).with_columns(
        n_failed=pl.lit(0), intervention_auroc=pl.Series([0.9, None]), intervention_auroc_n=pl.Series([12, None]),
        intervention_auroc_chance=pl.Series([0.5, None]), intervention_auroc_lift=pl.Series([0.4, None]))
    store.write_parquet(partition_path("scores", LAYER, RANGE), scores)
    stats = pl.DataFrame({"latent": [0, 1, 2], "n_firing": [5, 9, 0], "density": [0.1, 0.2, 0.0], "max_act": [1.0, 2.0, 0.0]})
    layout.write_partition(store, "latent_shards", LAYER, RANGE, {"rows": pl.DataFrame({"latent": [0]}), "stats": stats})
    store.write_json(partition_path("intervention_scores", LAYER, RANGE, "usage.json"), {"llm_requests": 7})
    report = build_report(store, LAYER)
    assert report.metadata["mean_intervention_auroc_lift"] == 0.4 and report.metadata["n_latents_intervention_auroc"] == 1
    assert report.metadata["llm_requests"] == 2 + 10 + 7  # the steering run's LLM requests are in the cost
