"""Asset checks on hand-built partition tables, and a blocking check stopping a run."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from support.project import small_config

from autointerp_assets import checks
from autointerp_assets.code_location import build_assets
from autointerp_assets.config import ChecksConfig
from autointerp_assets.data.sampling import CONTEXT_SCHEMA, SKIPPED_SCHEMA
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.partitions import layer_range_partitions
from autointerp_assets.scoring.scores import score_schema
from autointerp_assets.store import layout
from autointerp_assets.store.store import ArtifactStore
from resources.storage import Storage

LAYER, RANGE = "layers.3", "00000-00015"


def _stats(n_firing: list[int], n_tokens: int = 100) -> pl.DataFrame:
    return pl.DataFrame({"latent": list(range(len(n_firing))), "n_firing": n_firing}).with_columns(
        (pl.col("n_firing") / n_tokens).alias("density"), (pl.col("n_firing") == 0).alias("dead"))


def _contexts(windows: list[tuple[int, str, int, int]], length: int = 4) -> pl.DataFrame:
    """(latent, split, seq, start) -> rows of the contexts schema."""
    return pl.DataFrame([
        {"latent": latent, "split": split, "kind": "top", "quantile": -1, "seq": seq, "start": start,
         "peak_index": 1, "tokens": [1] * length, "token_strs": ["a"] * length, "acts": [0.5] * length,
         "max_act": 0.5, "activating": True}
        for latent, split, seq, start in windows
    ], schema=CONTEXT_SCHEMA)


def _explanations(statuses: list[str]) -> pl.DataFrame:
    return pl.DataFrame([{"latent": i, "status": s, "explanation": "x" if s == "ok" else None}
                         for i, s in enumerate(statuses)], schema=EXPLANATION_SCHEMA)


def _scores(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(status, n_failed answers, answered per scorer)."""
    return pl.DataFrame([{"latent": i, "status": s, "n_failed": f, "detection_n": n, "fuzzing_n": n}
                         for i, (s, f, n) in enumerate(rows)], schema=score_schema())


def test_shard_stats_checks():
    assert checks.dead_fraction(_stats([0, 0, 5, 9]), max_fraction=0.5).passed
    assert not checks.dead_fraction(_stats([0, 0, 0, 9]), max_fraction=0.5).passed
    assert checks.density_bounds(_stats([10, 40]), max_density=0.5).passed
    too_dense = checks.density_bounds(_stats([10, 60]), max_density=0.5)
    assert not too_dense.passed and too_dense.metadata["too_dense"] == [1]
    assert not checks.density_bounds(_stats([10, 120]), max_density=1.0).passed  # density > 1: corrupt stats
    assert checks.not_empty(_stats([0, 3])).passed
    assert not checks.not_empty(_stats([0, 0])).passed


def test_schema_check_names_missing_and_mistyped_columns():
    assert checks.schema_matches(_contexts([(0, "explain", 0, 0)]), CONTEXT_SCHEMA).passed
    broken = _contexts([(0, "explain", 0, 0)]).drop("acts").with_columns(pl.col("seq").cast(pl.Int32))
    outcome = checks.schema_matches(broken, CONTEXT_SCHEMA)
    assert not outcome.passed and "acts" in outcome.description and "seq" in outcome.description
    extra = checks.schema_matches(_explanations(["ok"]).with_columns(pl.lit(1).alias("new")), EXPLANATION_SCHEMA)
    assert extra.passed and extra.metadata["extra_columns"] == ["new"]


def test_splits_disjoint():
    clean = _contexts([(0, "explain", 0, 0), (0, "test", 0, 4), (0, "test", 1, 0), (1, "explain", 0, 0)])
    assert checks.splits_disjoint(clean).passed  # the same window may serve two latents
    shared = checks.splits_disjoint(_contexts([(0, "explain", 0, 0), (0, "test", 0, 0)]))
    assert not shared.passed and shared.metadata["latents_affected"] == [0]
    overlap = checks.splits_disjoint(_contexts([(2, "explain", 5, 0), (2, "test", 5, 3)]))
    assert not overlap.passed and "1 overlapping" in overlap.description


def test_failure_ceilings():
    assert checks.latent_failures(_explanations(["ok", "failed", "skipped", "skipped"]), 0.5).passed
    assert not checks.latent_failures(_explanations(["ok", "failed", "failed", "skipped"]), 0.5).passed
    assert checks.latent_failures(_explanations(["skipped"]), 0.0).passed  # nothing attempted
    assert checks.score_failures(_scores([("ok", 1, 10), ("ok", 0, 10), ("unscored", 0, 0)]), 0.5).passed
    assert not checks.score_failures(_scores([("ok", 0, 10), ("failed", 0, 0), ("failed", 0, 0)]), 0.5).passed
    many_bad_answers = checks.score_failures(_scores([("ok", 30, 5)]), 0.5)  # 30 of 40 answers failed
    assert not many_bad_answers.passed and many_bad_answers.metadata["answer_failure_rate"] == 0.75


def test_every_asset_has_a_code_version():
    versions = {k.to_user_string(): v for a in build_assets(small_config()) for k, v in a.code_versions_by_key.items()}
    assert versions and all(versions.values()), versions


@pytest.mark.parametrize("leaky", [False, True])
def test_blocking_check_stops_the_run(tmp_path, leaky):
    """Stand-ins for contexts/explanations: a leaky contexts partition fails its blocking check,
    and explanations of that partition never run."""
    store = ArtifactStore(str(tmp_path))
    ran: list[str] = []

    @dg.asset(name="contexts", partitions_def=layer_range_partitions)
    def contexts_stub() -> None:
        windows = [(0, "explain", 0, 0), (0, "test", 0, 2 if leaky else 8)]
        layout.write_partition(store, "contexts", LAYER, RANGE,
                               {"examples": _contexts(windows), "skipped": pl.DataFrame(schema=SKIPPED_SCHEMA)})

    @dg.asset(name="explanations", partitions_def=layer_range_partitions, deps=["contexts"])
    def explanations_stub() -> None:
        ran.append("explanations")

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("layer", [LAYER])
    instance.add_dynamic_partitions("latent_range", [RANGE])
    context_checks = [c for c in checks.build_asset_checks(ChecksConfig()) if c.node_def.name == "contexts_checks"]
    result = dg.materialize(
        [contexts_stub, explanations_stub, *context_checks], instance=instance, raise_on_error=False,
        partition_key=dg.MultiPartitionKey({"layer": LAYER, "range": RANGE}),
        resources={"storage": Storage(root=str(tmp_path))},
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["schema"].passed
    assert evaluations["disjoint_splits"].passed is not leaky
    assert evaluations["disjoint_splits"].partition == f"{LAYER}|{RANGE}"
    assert result.success is not leaky and ran == ([] if leaky else ["explanations"])


def test_intervention_scores_checks_read_its_schema_and_failures():
    from autointerp_assets.scoring import intervention_scores

    _, defs = checks.CHECKS["intervention_scores"]
    table = pl.DataFrame({"latent": [0, 1, 2], "status": ["ok", "failed", "unscored"]}).join(
        pl.DataFrame(schema=intervention_scores.schema()).drop("status"), on="latent", how="left")
    table = table.select(list(intervention_scores.schema())).cast(intervention_scores.schema())
    outcomes = {d.name: d.run(table, ChecksConfig(max_failure_rate=0.4)) for d in defs}
    assert outcomes["schema"].passed
    assert not outcomes["failure_rate"].passed and "1/2 intervention scores failed" in outcomes["failure_rate"].description
    assert not {d.name: d.run(table.drop("steering_kl"), ChecksConfig()) for d in defs}["schema"].passed
