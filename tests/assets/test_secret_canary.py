"""The API key stays secret, end to end.

A unique canary key is read through `dg.EnvVar` (named by llm.api_key_env) and really sent to
an OpenAI-compatible server, which also echoes it back in some error bodies. After explaining
and scoring a partition into a persistent instance, the canary appears in no file under the
storage root or $DAGSTER_HOME (event log, run storage, compute logs, LLM cache), no log line or
console output, no event-log row and no run config or tag.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from support.fake_openai_server import FaultServer
from support.project import SMALL_CONFIG, key

from autointerp_assets.assets import ALL_ASSETS
from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import register_partitions
from resources import Storage, build_resources

pytestmark = pytest.mark.slow
KEY_ENV = "AUTOINTERP_CANARY_KEY"


def scoring_answer(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    return "[1, 0, 1, 0, 1]" if "list of exactly" in prompt else "Explanation: names of Python modules"


def readable(path: Path) -> bytes:
    """A file's bytes, and for parquet (compressed) its rows as text too."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        data += repr(pl.read_parquet(path).to_dicts()).encode()
    return data


def test_the_api_key_appears_nowhere(data_root, tmp_path: Path, monkeypatch, caplog, capfd):
    canary = f"sk-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, canary)
    server = FaultServer()
    server.answer = scoring_answer
    # Every fifth request is refused by a server that echoes the Authorization header back.
    server.policy = lambda n, body: "401_echo" if n % 5 == 1 else ("500" if n % 7 == 3 else "ok")
    caplog.set_level(logging.DEBUG)

    home, root = tmp_path / "dagster_home", tmp_path / "store"
    home.mkdir()
    shutil.copy(Path(__file__).parents[2] / "dagster.yaml", home)
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("explanations", "scores", "llm_cache"))
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["storage_root"] = str(root)
    raw["llm"] = {"backend": "openai", "base_url": server.base_url, "model": "canary-model", "api_key_env": KEY_ENV,
                  "max_retries": 1}
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "autointerp.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        with dg.DagsterInstance.get() as instance:
            register_partitions(instance, cfg, ["layers.3"])
            resources = build_resources(cfg) | {"storage": Storage(root=str(root))}
            for asset in ("explanations", "scores"):
                result = dg.materialize(ALL_ASSETS, selection=[asset], partition_key=key(), resources=resources,
                                        instance=instance)
                assert result.success
            runs = instance.get_runs()
            rows = [dg.serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id)]
            configs = [json.dumps(run.run_config, default=str) + json.dumps(run.tags) for run in runs]
    finally:
        server.close()

    assert f"Bearer {canary}" in server.auth_headers  # the key was really used...
    assert "401_echo" in server.actions  # ...and really echoed back at us
    assert len(rows) > 20 and len(runs) == 2
    out, err = capfd.readouterr()
    seen = {"log records": caplog.text, "console": out + err, "event-log rows": "\n".join(rows),
            "run configs and tags": "\n".join(configs)}
    for where, text in seen.items():
        assert canary not in text, where
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any("llm_cache" in p.parts for p in files)
    failed = pl.read_parquet(root / "explanations" / "layers.3" / "00000-00015.parquet").filter(
        pl.col("reason").str.contains("401"))
    assert failed.height > 0  # a refused request is recorded with its reason, the key masked
    leaked = [str(p) for p in files if canary.encode() in readable(p)]
    assert leaked == []
