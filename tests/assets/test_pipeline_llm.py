"""The LLM half materialised through Dagster: the local default end to end, and an
OpenAI-compatible server that fails 30% of requests."""

import json
import random
import re
import shutil
import zlib

import dagster as dg
import polars as pl
import pytest
from support.fake_openai_server import FaultServer
from support.project import LAYER, RANGE, key, run

from autointerp_assets.report import review
from autointerp_assets.report.rollup import build_report
from autointerp_assets.store.store import ArtifactStore
from resources.llm import LLMResource

pytestmark = pytest.mark.slow


def metadata(result, asset):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_local_default_through_scores_and_report(data_root, instance):
    first = run(["explanations"], key(), data_root, instance)
    scored = run(["scores"], key(), data_root, instance)
    explained_meta, scores_meta = metadata(first, "explanations"), metadata(scored, "scores")
    assert explained_meta["llm_requests"] > 0 and scores_meta["llm_requests"] > 0

    scores = pl.read_parquet(data_root / "scores" / LAYER / f"{RANGE}.parquet")
    assert sorted(scores["latent"]) == list(range(16))  # one row per latent
    for column in ("detection_balanced_accuracy", "fuzzing_f1", "detection_auroc", "embedding_auroc", "n_failed",
                   "status"):
        assert column in scores.columns
    assert set(scores["status"]) <= {"ok", "failed", "unscored"}
    # Lineage: which model, SAE, corpus, prompts and LLM produced these scores.
    for field in ("model_id", "model_revision", "coder_id", "coder_hash", "corpus_hash", "prompt_versions", "llm_model",
                  "scorer_model", "explainer_model", "embedding_model"):
        assert scores_meta[field], field
    assert set(scores_meta["prompt_versions"]) >= {"detection", "fuzzing"}

    # A second run of the same partition is answered from the cache: zero LLM calls.
    again = run(["explanations", "scores"], key(), data_root, instance)
    for asset in ("explanations", "scores"):
        meta = metadata(again, asset)
        assert meta["llm_requests"] == 0 and meta["llm_cache_hits"] > 0
    assert pl.read_parquet(data_root / "scores" / LAYER / f"{RANGE}.parquet").equals(scores)

    # The estimate shown on `contexts` before paying assumes every explanation comes back, each
    # different: then it is exact. A failed explanation is not scored, and equal explanations send
    # equal requests once and lend no chance baseline to each other, so it is an upper bound whose
    # excess lies within the chance baseline's share and the failed latents' scoring.
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("contexts"), asset_partitions=[str(key())]), limit=1)
    shown = records.records[0].asset_materialization.metadata
    estimate = shown["estimated_llm_requests"].value
    sent = explained_meta["llm_requests"] + scores_meta["llm_requests"]
    assert sent <= estimate
    if explained_meta["n_failed"] == 0:
        assert estimate - sent <= shown["estimated_chance_baseline_requests"].value

    report = metadata(run(["report"], LAYER, data_root, instance), "report")
    assert report["n_latents"] == 16 and "detection" in report["report"] and report["n_reviewed"] == 0

    # A human verdict shows up beside the scores in the roll-up.
    explained = pl.read_parquet(data_root / "explanations" / LAYER / f"{RANGE}.parquet")
    latent = explained.filter(pl.col("status") == "ok")["latent"][0]
    store = ArtifactStore(str(data_root))
    review.append(store, LAYER, RANGE, review.new_review(review.standing(explained, []), latent, "reject", "ana"))
    table = build_report(store, LAYER).table
    assert table.filter(pl.col("latent") == latent)["review"].item() == "reject"
    assert table["review"].null_count() == 15


def plausible_answer(body: dict) -> str:
    """Explanations for explainer prompts; a 0/1 list of the asked length for scorer prompts."""
    wanted = re.search(r"list of exactly (\d+) values", body["messages"][-1]["content"])
    if wanted:
        return "[" + ", ".join(random.Random(body["messages"][-1]["content"]).choice("01")
                               for _ in range(int(wanted.group(1)))) + "]"
    return "Explanation: identifiers in Python source code"


@pytest.fixture
def server():
    s = FaultServer()
    s.answer = plausible_answer
    yield s
    s.close()


def test_thirty_percent_failures_complete_the_partition_and_rerun_retries_only_failures(
    data_root, instance, server, tmp_path
):
    root = tmp_path / "store"
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache"))
    llm = LLMResource(backend="openai", base_url=server.base_url, model="fault-model", max_retries=0,
                      timeout_s=10, max_concurrency=4)
    # 30% of prompts fail, chosen by content so the outcome does not depend on request order.
    server.policy = lambda n, body: "500" if zlib.crc32(json.dumps(body["messages"]).encode()) % 10 < 3 else "ok"

    explained = metadata(run(["explanations"], key(), root, instance, llm=llm), "explanations")
    scored = metadata(run(["scores"], key(), root, instance, llm=llm), "scores")
    assert explained["llm_failures"] > 0 and scored["llm_failures"] > 0
    explanations = pl.read_parquet(root / "explanations" / LAYER / f"{RANGE}.parquet")
    scores = pl.read_parquet(root / "scores" / LAYER / f"{RANGE}.parquet")
    # Every latent is explained or counted as failed, and scored or counted.
    assert sorted(explanations["latent"]) == sorted(scores["latent"]) == list(range(16))
    assert explanations.filter(pl.col("status") == "failed")["reason"].str.contains("server").all()
    assert (explanations["status"] == "failed").sum() + (explanations["status"] == "ok").sum() + \
        (explanations["status"] == "skipped").sum() == 16
    assert scores["n_failed"].sum() > 0
    assert json.loads((root / "scores" / LAYER / f"{RANGE}.usage.json").read_text())["llm_failures"] == \
        scored["llm_failures"]

    # Rerun against a healthy server: only the failed explanation requests are sent again.
    server.policy = lambda n, body: "ok"
    before = server.n_requests
    rerun = metadata(run(["explanations"], key(), root, instance, llm=llm), "explanations")
    assert server.n_requests - before == rerun["llm_requests"] == explained["llm_failures"]
    assert rerun["llm_cache_hits"] == explained["llm_requests"] - explained["llm_failures"]
    assert rerun["n_failed"] == 0


def test_output_side_explainer_shows_the_tokens_each_latent_promotes(data_root, instance, server, tmp_path):
    """The explanations asset with the output-side explainer: the layer's coder and the subject's
    unembedding read on the CPU, each latent's promoted tokens in its prompt, sent over HTTP."""
    from support.project import small_config

    root = tmp_path / "store"
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache"))
    cfg = small_config()
    cfg = cfg.model_copy(update={"explainer": cfg.explainer.model_copy(update={"kind": "output_side"}),
                                 "subject_model": cfg.subject_model.model_copy(update={"device": "no-such-device"})})
    llm = LLMResource(backend="openai", base_url=server.base_url, model="m", max_retries=0, timeout_s=10)
    explained = metadata(run(["explanations"], key(), root, instance, cfg=cfg, llm=llm), "explanations")
    asked = [b["messages"][-1]["content"] for b in server.bodies]
    assert explained["n_explained"] == len(asked) > 0
    promoted = [json.loads("[" + content.rsplit("Tokens the latent promotes: ", 1)[1] + "]") for content in asked]
    assert all(len(tokens) == 10 for tokens in promoted)  # ten promoted tokens per latent
    assert len({tuple(tokens) for tokens in promoted}) > 1  # each latent its own
