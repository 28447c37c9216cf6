"""The report's pictures and tables, on a layer whose scores are known: explanations scoring
well above their shuffled baseline, rare latents scoring worse."""

from __future__ import annotations

import base64

import dagster as dg
import numpy as np
import polars as pl
import pytest
from support.project import small_config

from autointerp_assets.assets.report import report
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.partitions import layer_partitions
from autointerp_assets.report import plots
from autointerp_assets.store import layout
from autointerp_assets.store.activations import activations_dataset
from autointerp_assets.store.store import ArtifactStore, partition_path
from resources.project import Project
from resources.storage import Storage

LAYER = "layers.3"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def store(tmp_path):
    """Two scored ranges of 16 latents: detection 0.6-0.95 rising with density, chance around 0.5."""
    store = ArtifactStore(str(tmp_path))
    rng = np.random.default_rng(0)
    activations_dataset(store, LAYER).commit("v1", {}, {"model_id": "m", "coder_hash": "c", "n_latents": 32})
    for lo in (0, 16):
        key = f"{lo:05d}-{lo + 15:05d}"
        latents = list(range(lo, lo + 16))
        density = np.logspace(-4, -1, 16)
        detection = 0.6 + 0.35 * (np.log10(density) + 4) / 3
        chance = rng.normal(0.5, 0.03, 16)
        store.write_parquet(partition_path("scores", LAYER, key), pl.DataFrame({
            "latent": latents, "status": ["ok"] * 16, "n_failed": [0] * 16,
            "detection_balanced_accuracy": detection, "detection_balanced_accuracy_chance": chance,
            "detection_balanced_accuracy_lift": detection - chance,
            "embedding_auroc": detection - 0.05}))
        stats = pl.DataFrame({"latent": latents, "n_firing": (density * 1e5).astype(int), "density": density,
                              "max_act": [1.0] * 16})
        layout.write_partition(store, "latent_shards", LAYER, key, {"rows": pl.DataFrame(), "stats": stats})
        store.write_parquet(partition_path("explanations", LAYER, key), pl.DataFrame([
            {"latent": i, "status": "ok", "explanation": f"token {i}", "reason": None, "explainer": "default",
             "explainer_model": "m", "prompt_version": "p", "n_examples": 10} for i in latents],
            schema=EXPLANATION_SCHEMA))
    return store


def test_plots_are_pngs_with_the_chance_baseline():
    table = pl.DataFrame({"detection_balanced_accuracy": [0.8, 0.9, None], "detection_balanced_accuracy_chance":
                          [0.5, 0.45, 0.55], "density": [0.01, 0.001, 0.1], "embedding_auroc": [None, None, None]})
    scores = ("detection_balanced_accuracy", "embedding_auroc")
    assert plots.plotted_scores(table, scores) == ["detection_balanced_accuracy"]  # nothing to draw for embedding
    for png in (plots.score_distributions(table, scores), plots.score_vs_frequency(table, scores)):
        assert png.startswith(PNG)
    assert plots.score_distributions(table, ("fuzzing_auroc",)) is None


def test_the_report_partition_shows_plots_and_typed_rounded_tables(store):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(layer_partitions.name, [LAYER])
    result = dg.materialize([report], partition_key=LAYER, instance=instance,
                            resources={"storage": Storage(root=store.root), "project": Project.of(small_config())})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    for name in ("score_distributions", "score_vs_frequency"):
        markdown = meta[name].value
        assert markdown.startswith("![") and "data:image/png;base64," in markdown
        assert base64.b64decode(markdown.split("base64,")[1].rstrip(")")).startswith(PNG)
        assert store.read_bytes(f"report/{LAYER}/{name}.png").startswith(PNG)
    latents = meta["latents"].value
    types = {c.name: c.type for c in latents.schema.columns}
    assert types["latent"] == "int" and types["detection_balanced_accuracy"] == "float"
    assert types["detection_balanced_accuracy_lift"] == "float" and types["explanation"] == "string"
    rows = [r.data for r in latents.records]
    assert len(rows) == 32 and rows[0]["detection_balanced_accuracy"] == max(r["detection_balanced_accuracy"] for r in rows)
    assert all(r["detection_balanced_accuracy"] == round(r["detection_balanced_accuracy"], 3) for r in rows)
    assert types["n_firing"] == "int" and rows[0]["n_firing"] == 10_000  # the densest latent fires most
    assert rows[0]["detection_balanced_accuracy_lift"] > 0.3  # the best latent beats its shuffled baseline
    by_frequency = [r.data for r in meta["detection_balanced_accuracy_by_frequency"].value.records]
    assert [r["log10_density"] for r in by_frequency] == sorted(r["log10_density"] for r in by_frequency)
    assert by_frequency[0]["mean_detection_balanced_accuracy"] < by_frequency[-1]["mean_detection_balanced_accuracy"]
    assert isinstance(meta["mean_detection_balanced_accuracy"].value, float)
    assert meta["mean_detection_balanced_accuracy"].value == round(meta["mean_detection_balanced_accuracy"].value, 3)


def test_numbers_are_rounded_for_reading():
    from autointerp_assets.lineage import rounded

    assert [rounded(v) for v in (0.61234, 0.000123456, 5923.432, float("nan"), 7)] == [0.612, 0.000123, 5923.4, None, 7]
