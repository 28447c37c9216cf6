"""Human review: an append-only log keyed by the explanation's version, the verdict standing on
the current explanation, edits carried into what scores read, and concurrent reviewers."""

import multiprocessing
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.report import review
from autointerp_assets.report.review import ReviewError
from autointerp_assets.store.store import ArtifactStore

LAYER, RANGE = "layers.3", "00000-00015"
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def explanations(texts: dict[int, str | None], model="m", prompt="p1") -> pl.DataFrame:
    rows = [{"latent": latent, "status": "ok" if text else "failed", "explanation": text,
             "reason": None if text else "llm error: server", "explainer": "default", "explainer_model": model,
             "prompt_version": prompt, "n_examples": 10} for latent, text in texts.items()]
    return pl.DataFrame(rows, schema=EXPLANATION_SCHEMA)


def record(store, explained, latent, verdict, reviewer, text=None, minutes=0):
    current = review.standing(explained, review.read_log(store, LAYER, RANGE))
    r = review.new_review(current, latent, verdict, reviewer, text, now=T0 + timedelta(minutes=minutes))
    review.append(store, LAYER, RANGE, r)
    return r


def test_every_review_is_kept_and_the_last_on_the_current_explanation_stands(tmp_path):
    store = ArtifactStore(str(tmp_path))
    explained = explanations({0: "def keywords", 1: None})
    record(store, explained, 0, "accept", "ana", minutes=1)
    record(store, explained, 0, "edit", "ben", "the keyword def opening a function", minutes=2)
    record(store, explained, 0, "reject", "cy", minutes=3)  # judges ben's edit, the current explanation
    log = review.read_log(store, LAYER, RANGE)
    assert [r.verdict for r in log] == ["accept", "edit", "reject"]
    (row,) = review.standing(explained, log).iter_rows(named=True)
    assert row["explanation"] == "the keyword def opening a function"
    assert row["explainer_explanation"] == "def keywords"
    assert (row["verdict"], row["reviewer"], row["n_reviews"], row["n_superseded"]) == ("reject", "cy", 3, 0)
    assert row["explanation_version"] == log[2].explanation_version != log[0].explanation_version


def test_a_new_explanation_drops_verdicts_on_the_old_one(tmp_path):
    store = ArtifactStore(str(tmp_path))
    record(store, explanations({0: "def keywords"}), 0, "accept", "ana")
    regenerated = explanations({0: "function definitions"}, prompt="p2")
    (row,) = review.standing(regenerated, review.read_log(store, LAYER, RANGE)).iter_rows(named=True)
    assert row["verdict"] is None and row["explanation"] == "function definitions"
    assert (row["n_reviews"], row["n_superseded"]) == (1, 1)
    same_again = explanations({0: "def keywords"})  # the same explanation regenerated: the review applies again
    assert review.standing(same_again, review.read_log(store, LAYER, RANGE))["verdict"].to_list() == ["accept"]


def test_scores_read_the_edit_and_only_an_edit_changes_what_they_depend_on(tmp_path):
    store = ArtifactStore(str(tmp_path))
    explained = explanations({0: "def keywords", 1: "commas"})
    digest = review.edits_digest(review.standing(explained, []))
    record(store, explained, 1, "accept", "ana")
    after_accept = review.standing(explained, review.read_log(store, LAYER, RANGE))
    assert review.edits_digest(after_accept) == digest
    assert review.apply_edits(explained, after_accept).equals(explained)
    record(store, explained, 0, "edit", "ben", "def opening a function", minutes=1)
    after_edit = review.standing(explained, review.read_log(store, LAYER, RANGE))
    assert review.edits_digest(after_edit) != digest
    scored = review.apply_edits(explained, after_edit)
    assert scored["explanation"].to_list() == ["def opening a function", "commas"]
    assert scored.schema == explained.schema


def test_a_review_of_a_version_no_longer_current_is_refused(tmp_path):
    store = ArtifactStore(str(tmp_path))
    explained = explanations({0: "def keywords"})
    seen = review.standing(explained, [])["explanation_version"].item()
    record(store, explained, 0, "edit", "ben", "def opening a function")
    current = review.standing(explained, review.read_log(store, LAYER, RANGE))
    with pytest.raises(ReviewError, match="changed since version"):
        review.new_review(current, 0, "accept", "ana", expected_version=seen)


@pytest.mark.parametrize(("latent", "verdict", "text", "message"), [
    (1, "accept", None, "latent 1 has no explanation in this range to review"),
    (7, "accept", None, "latent 7 has no explanation"),
    (0, "edit", None, "an edit needs the new explanation text"),
    (0, "reject", "x", "a text only goes with 'edit'"),
    (0, "maybe", None, "verdict 'maybe' is not one of accept, reject, edit"),
])
def test_bad_reviews_are_refused_with_the_reason(latent, verdict, text, message):
    current = review.standing(explanations({0: "def keywords", 1: None}), [])
    with pytest.raises(ReviewError, match=message):
        review.new_review(current, latent, verdict, "ana", text)


def _review_in_a_process(root: str, reviewer: str, start) -> None:
    store = ArtifactStore(root)
    start.wait()
    current = review.standing(explanations({0: "def keywords"}), review.read_log(store, LAYER, RANGE))
    review.append(store, LAYER, RANGE, review.new_review(current, 0, "accept", reviewer))


def test_concurrent_reviewers_never_lose_a_review(tmp_path):
    """Eight processes read the log and append at the same moment: all eight reviews are kept."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_review_in_a_process, args=(str(tmp_path), f"r{i}", start)) for i in range(8)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    log = review.read_log(ArtifactStore(str(tmp_path)), LAYER, RANGE)
    assert sorted(r.reviewer for r in log) == [f"r{i}" for i in range(8)]
