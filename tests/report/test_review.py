from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from autointerp_assets.cli import main
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.report.review import ReviewError, add_review, latest_reviews

EXPLANATIONS = pl.DataFrame(
    [{"latent": 0, "status": "ok", "explanation": "def keywords", "reason": None, "explainer": "default",
      "explainer_model": "m", "prompt_version": "abc", "n_examples": 10},
     {"latent": 1, "status": "failed", "explanation": None, "reason": "llm error: server", "explainer": "default",
      "explainer_model": "m", "prompt_version": "abc", "n_examples": 10}],
    schema=EXPLANATION_SCHEMA,
)
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_history_keeps_every_review_and_the_latest_stands():
    h = add_review(None, EXPLANATIONS, 0, "accept", "ana", now=NOW)
    h = add_review(h, EXPLANATIONS, 0, "edit", "ben", "the keyword def opening a function", now=NOW)
    assert h.height == 2
    (standing,) = latest_reviews(h).iter_rows(named=True)
    assert standing["verdict"] == "edit" and standing["reviewer"] == "ben"
    assert standing["explanation"] == "the keyword def opening a function"
    assert standing["original_explanation"] == "def keywords" and standing["prompt_version"] == "abc"


@pytest.mark.parametrize(("latent", "verdict", "text", "message"), [
    (1, "accept", None, "no explanation to review (status failed: llm error: server)"),
    (7, "accept", None, "latent 7 is not in this range"),
    (0, "edit", None, "an edit needs the new explanation text"),
    (0, "reject", "x", "--text only goes with 'edit'"),
])
def test_bad_reviews_are_refused_with_the_reason(latent, verdict, text, message):
    with pytest.raises(ReviewError, match=message.replace("(", r"\(").replace(")", r"\)")):
        add_review(None, EXPLANATIONS, latent, verdict, "ana", text)


def test_cli_records_the_review_in_storage_and_in_the_dagster_instance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the test config's storage root is the relative "data"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "data" / "explanations" / "layers.3").mkdir(parents=True)
    EXPLANATIONS.write_parquet(tmp_path / "data" / "explanations" / "layers.3" / "00000-00015.parquet")

    assert main(["review", "layers.3", "00000-00015", "0", "reject", "--reviewer", "ana"]) == 0
    assert main(["review", "layers.3", "00000-00015", "1", "accept", "--reviewer", "ana"]) == 2  # failed latent
    reviews = pl.read_parquet(tmp_path / "data" / "reviews" / "layers.3" / "00000-00015.parquet")
    assert reviews.select("latent", "verdict", "reviewer").rows() == [(0, "reject", "ana")]

    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_observations(dg.AssetKey("explanations"), limit=5).records
    assert len(records) == 1
    meta = records[0].asset_observation.metadata
    assert meta["review_verdict"].value == "reject" and meta["reviewer"].value == "ana"
    assert records[0].asset_observation.partition == "layers.3|00000-00015"
