"""The demo as a newcomer runs it: plain progress lines with the asset checks, no Dagster DEBUG
events, then the partition's explanations beside their scores, the cost, and where to look
next. The small project, its LLM a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import re

import pytest
import yaml
from support.fake_openai_server import FaultServer
from support.project import SMALL_CONFIG

from autointerp_assets.cli import main

pytestmark = pytest.mark.slow


def _answer(body: dict) -> str:
    wanted = re.search(r"list of exactly (\d+) values", body["messages"][-1]["content"])
    if wanted:
        return "[" + ", ".join("1" if i % 2 else "0" for i in range(int(wanted.group(1)))) + "]"
    return "Explanation: Python keywords"


def test_demo_prints_progress_checks_and_a_summary(tmp_path, monkeypatch, capfd):
    server = FaultServer()
    server.answer = _answer
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw |= {"storage_root": str(tmp_path / "data"), "llm": {"backend": "openai", "base_url": server.base_url,
                                                           "model": "fault-model"}}
    raw["scorer"]["kinds"] = ["detection"]
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(tmp_path / "autointerp.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    try:
        assert main(["demo", "--max-latents", "4"]) == 0
    finally:
        server.close()
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("autointerp demo: layers.3|00000-00015 through report")
    assert [line.split(" [")[0] for line in lines if line.startswith("[")] == [
        f"[{i}/8] {stage}" for i, stage in enumerate(
            ["corpus", "sparse_coder", "activations", "latent_shards", "contexts", "explanations", "scores", "report"], 1)]
    assert sum(line.strip().startswith("done in") for line in lines) == 8
    assert "checks: disjoint_splits ok, schema ok" in out and "checks: dead_fraction" in out
    assert "DEBUG" not in out + err and "STEP_START" not in out + err  # no Dagster event stream
    head = next(line for line in lines if line.startswith("layers.3|00000-00015: 16 latents"))
    assert "skipped" in head
    table = lines[lines.index(head) + 2:]
    assert table[0].split()[:3] == ["latent", "explanation", "detect"]
    assert sum("Python keywords" in line for line in table) >= 1
    assert any(line.startswith("LLM: ") and "requests" in line for line in lines)
    assert "Where to look next:" in out and "dagster dev" in out and "review 'layers.3|00000-00015'" in out
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()  # runs recorded for the UI
