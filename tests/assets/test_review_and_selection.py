"""Latent selections and reviews through the CLI and Dagster, against a real OpenAI-compatible
HTTP server (tests/support/fake_openai_server.py) that records every prompt it is sent."""

from __future__ import annotations

import re
import shutil

import dagster as dg
import polars as pl
import pytest
import yaml
from support.fake_openai_server import FaultServer
from support.project import LAYER, RANGE, SMALL_CONFIG, key, run

from autointerp_assets.cli import main
from autointerp_assets.config_file import load_config
from autointerp_assets.explain.selection import NOT_SELECTED
from autointerp_assets.report.rollup import build_report
from autointerp_assets.store import layout
from autointerp_assets.store.store import ArtifactStore

pytestmark = pytest.mark.slow
KEY = f"{LAYER}|{RANGE}"


def answer(body: dict) -> str:
    wanted = re.search(r"list of exactly (\d+) values", body["messages"][-1]["content"])
    if wanted:
        return "[" + ", ".join("1" for _ in range(int(wanted.group(1)))) + "]"
    return "Explanation: identifiers in Python source code"


@pytest.fixture
def project(data_root, tmp_path, monkeypatch):
    """The data half of the test partition, a config whose LLM is the recording server, and
    a fresh $DAGSTER_HOME: what an operator's shell has."""
    server = FaultServer()
    server.answer = answer
    root = tmp_path / "data"
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache", "reviews"))
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw |= {"storage_root": str(root), "llm": {"backend": "openai", "base_url": server.base_url, "model": "fault-model"}}
    raw["scorer"]["kinds"] = ["detection"]
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(tmp_path / "autointerp.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    yield root, server, load_config(tmp_path / "autointerp.yaml")
    server.close()


def explained(root) -> pl.DataFrame:
    return pl.read_parquet(root / "explanations" / LAYER / f"{RANGE}.parquet")


def ok_latents(root) -> list[int]:
    return explained(root).filter(pl.col("status") == "ok")["latent"].to_list()


def explainer_prompts(server: FaultServer) -> int:
    return sum("list of exactly" not in b["messages"][-1]["content"] for b in server.bodies)


def test_a_selection_is_kept_for_later_runs_and_a_narrower_run_keeps_what_was_paid_for(project):
    root, server, cfg = project
    sampled = sorted(layout.read_partition(ArtifactStore(str(root)), "contexts", LAYER, RANGE)["latent"].unique().to_list())
    a, b, c = sampled[:3]
    assert main(["explain", KEY, "--latents", f"{a},{b}"]) == 0
    assert ok_latents(root) == [a, b] and explainer_prompts(server) == 2
    left_out = explained(root).filter(pl.col("latent") == c)
    assert left_out["status"].item() == "skipped" and left_out["reason"].item() == NOT_SELECTED

    with dg.DagsterInstance.get() as instance:  # what automation launches: no run config, so the stored selection
        automated = run(["explanations"], key(), root, instance, cfg=cfg)
    meta = automated.get_asset_materialization_events()[0].materialization.metadata
    assert meta["latent_selection"].value == {"source": "stored", "latents": [a, b]}
    assert ok_latents(root) == [a, b] and explainer_prompts(server) == 2  # nothing new was sent

    assert main(["explain", KEY, "--latents", str(c)]) == 0  # narrower: only c
    assert explainer_prompts(server) == 3
    assert ok_latents(root) == [a, b, c]  # a and b were paid for: kept


def test_an_edit_is_what_scores_read_and_the_report_shows_the_verdict_on_it(project, capsys):
    root, server, _ = project
    assert main(["explain", KEY, "--max-latents", "2"]) == 0
    first, second = ok_latents(root)
    assert main(["review", KEY, str(first), "accept", "--reviewer", "ana"]) == 0
    assert main(["review", KEY, "9999", "accept", "--reviewer", "ana"]) == 2  # refused, nothing recorded
    assert "latent 9999 has no explanation" in capsys.readouterr().err
    assert main(["review", KEY, str(second), "edit", "--text", "the word def", "--reviewer", "ben"]) == 0

    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey("reviews"), limit=10).records
    versions = [r.asset_materialization.tags["dagster/data_version"] for r in reversed(records)]
    assert len(versions) == 2 and versions[0] != versions[1]  # the edit changed what scores depend on
    assert records[0].asset_materialization.metadata["review_verdict"].value == "edit"

    before = len(server.bodies)
    assert main(["explain", KEY]) == 0  # scores again (explanations from the cache)
    scored = [b["messages"][-1]["content"] for b in server.bodies[before:]]
    assert any("the word def" in prompt for prompt in scored)
    table = build_report(ArtifactStore(str(root)), LAYER).table
    edited = table.filter(pl.col("latent") == second).row(0, named=True)
    assert (edited["explanation"], edited["review"]) == ("the word def", "edit")
    assert table.filter(pl.col("latent") == first)["review"].item() == "accept"


def test_the_cli_refuses_keys_in_the_wrong_form_and_names_the_right_one(project, capsys):
    assert main(["review", f"{RANGE}|{LAYER}", "1", "accept"]) == 2
    assert f"the layer comes first: '{KEY}'" in capsys.readouterr().err
    assert main(["explain", f"{LAYER}|00256-00271"]) == 2  # beyond the coder's 256 latents
    assert "is not a range of layers.3's coder" in capsys.readouterr().err
    assert main(["explain", "layers.3%7C00000-00015", "--latents", "0"]) == 0  # as copied from a UI URL
