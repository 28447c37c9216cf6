"""The instance configs (dagster.yaml, deploy/dagster-k8s.yaml) against Dagster's own schema,
and the example project configs through the project's loader and resources."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from autointerp_assets.config_file import load_config
from autointerp_assets.store.store import ArtifactStore
from resources import build_resources

REPO = Path(__file__).parents[1]
LOCAL, K8S, POSTGRES = REPO / "dagster.yaml", REPO / "deploy" / "dagster-k8s.yaml", REPO / "deploy" / "dagster-postgres.yaml"
S3_EXAMPLE, VLLM_EXAMPLE = REPO / "deploy" / "autointerp.s3.yaml", REPO / "deploy" / "autointerp.vllm.yaml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "DAGSTER_PG_URL"):
        monkeypatch.setenv(var, "unused")
    return tmp_path


@pytest.mark.parametrize("path", [LOCAL, K8S, POSTGRES], ids=["local", "k8s", "postgres"])
def test_instance_config_matches_dagster_schema(home, path):
    shutil.copy(path, home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))  # raises DagsterInvalidConfigError on any schema error
    assert config["concurrency"]["pools"]["default_limit"] == 1  # an unset `gpu` pool still runs one at a time
    assert config["run_monitoring"]["enabled"]


def test_local_instance_is_sqlite_in_dagster_home(home):
    shutil.copy(LOCAL, home / "dagster.yaml")
    instance = dg.DagsterInstance.get()
    try:
        assert instance.run_monitoring_enabled and instance.global_op_concurrency_default_limit == 1
        instance.add_dynamic_partitions("layer", ["layers.6"])
        assert {p.name for p in home.rglob("*.db")} >= {"runs.db", "index.db", "schedules.db"}
    finally:
        instance.dispose()


def test_k8s_config_fits_the_k8s_and_postgres_classes(home):
    """Deeper than the schema: each pluggable class's own config type (needs the deploy packages)."""
    pytest.importorskip("dagster_k8s")
    pytest.importorskip("dagster_postgres")
    pytest.importorskip("dagster_aws")
    import importlib

    from dagster._config import process_config
    from dagster_postgres import PostgresRunStorage

    shutil.copy(K8S, home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))
    for section in ("run_launcher", "compute_logs"):
        klass = getattr(importlib.import_module(config[section]["module"]), config[section]["class"])
        assert process_config(klass.config_type(), config[section]["config"]).success, section
    assert process_config(PostgresRunStorage.config_type(), config["storage"]["postgres"]).success


def test_vllm_example_builds_an_openai_client(tmp_path, monkeypatch):
    cfg = load_config(VLLM_EXAMPLE)
    assert cfg.llm.backend == "openai" and cfg.storage_root.startswith("s3://")
    assert all(c.kind == "jumprelu" for c in cfg.hookpoints.values())
    monkeypatch.setenv(cfg.llm.api_key_env, "secret")
    with dg.build_resources({"llm": build_resources(cfg)["llm"]}) as resources:
        client = resources.llm.build(ArtifactStore(str(tmp_path)))
    assert client.model_name == cfg.llm.model


def test_s3_example_root_works_with_an_env_endpoint(s3_endpoint, monkeypatch):
    """The example holds no endpoint or keys: the standard AWS environment supplies them."""
    cfg = load_config(S3_EXAMPLE)
    bucket = cfg.storage_root.removeprefix("s3://").split("/")[0]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    store = build_resources(cfg)["storage"].store()
    store.write_parquet("probe/layers.6/00000-00031.parquet", pl.DataFrame({"latent": [1, 2]}))
    assert store.read_parquet("probe/layers.6/00000-00031.parquet")["latent"].to_list() == [1, 2]


def test_examples_are_plain_yaml_without_secrets():
    for path in (S3_EXAMPLE, VLLM_EXAMPLE, K8S):
        text = path.read_text().lower()
        assert "secret_access_key:" not in text and "password: " not in text, path
        assert yaml.safe_load(text)
