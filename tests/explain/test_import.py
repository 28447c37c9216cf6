"""Explanations you bring: a CSV or parquet file stored as an explanations partition, with lineage,
through the CLI and the Dagster job; bad files are refused whole, with the reason."""

from __future__ import annotations

import hashlib

import dagster as dg
import polars as pl
import pytest
from support.project import SMALL_CONFIG

from autointerp_assets.cli import main
from autointerp_assets.code_location import build_definitions
from autointerp_assets.config_file import load_config
from autointerp_assets.explain import imported
from autointerp_assets.explain.explainer import EXPLANATION_SCHEMA
from autointerp_assets.partitions import partition_key, register_partitions

LAYER, RANGE = "layers.3", "00000-00015"


def write_csv(path, text: str):
    path.write_text(text)
    return str(path)


def test_a_file_becomes_the_partitions_table(tmp_path):
    source = imported.read_file(write_csv(tmp_path / "e.csv", "latent,explanation\n3,the word cat\n 5 ,\"digits, in numbers\"\n"))
    assert source.sha256 == hashlib.sha256((tmp_path / "e.csv").read_bytes()).hexdigest()
    table = imported.explanations_table(source, range(0, 16))
    assert dict(table.schema) == EXPLANATION_SCHEMA and table.height == 16
    ok = table.filter(pl.col("status") == "ok")
    assert dict(ok.select("latent", "explanation").iter_rows()) == {3: "the word cat", 5: "digits, in numbers"}
    assert set(table["explainer"]) == {"imported"} and set(table["prompt_version"]) == {f"import:{source.sha256[:12]}"}
    assert table.filter(pl.col("latent") == 0)["reason"].item().startswith("not in the imported file")
    parquet = tmp_path / "e.parquet"
    pl.DataFrame({"latent": [1], "explanation": ["x"], "extra": [0]}).write_parquet(parquet)
    assert imported.explanations_table(imported.read_file(str(parquet)), range(0, 16))["status"][1] == "ok"


@pytest.mark.parametrize(("content", "message"), [
    ("latent,text\n1,x\n", "lacks column(s) ['explanation']"),
    ("latent,explanation\none,x\n", "not an integer"),
    ("latent,explanation\n1,\n", "have an empty explanation"),
    ("latent,explanation\n1,x\n1,y\n", "appear more than once"),
    ("latent,explanation\n1,x\n40,y\n", "are not in this partition's range 0-15"),
])
def test_bad_files_are_refused_naming_the_problem(tmp_path, content, message):
    with pytest.raises(imported.ExplanationImportError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        imported.explanations_table(imported.read_file(write_csv(tmp_path / "e.csv", content)), range(0, 16))


def test_unknown_formats_and_missing_files(tmp_path):
    with pytest.raises(imported.ExplanationImportError, match="give a .csv or .parquet"):
        imported.read_file(str(tmp_path / "e.json"))
    with pytest.raises(imported.ExplanationImportError, match="cannot read"):
        imported.read_file(str(tmp_path / "missing.csv"))


def test_cli_imports_with_lineage_and_refuses_bad_files_writing_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the test config's storage root is the relative "data"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    stored = tmp_path / "data" / "explanations" / LAYER / f"{RANGE}.parquet"
    bad = write_csv(tmp_path / "bad.csv", "latent,explanation\n2,x\n2,y\n")
    assert main(["import-explanations", f"{LAYER}|{RANGE}", bad, "--by", "ana"]) == 2
    assert not stored.exists()

    good = write_csv(tmp_path / "good.csv", "latent,explanation\n2,the word cat\n")
    assert main(["import-explanations", f"{LAYER}|{RANGE}", good, "--by", "ana"]) == 0
    table = pl.read_parquet(stored)
    assert table.filter(pl.col("status") == "ok").select("latent", "explanation").rows() == [(2, "the word cat")]
    with dg.DagsterInstance.get() as instance:
        (record,) = instance.fetch_materializations(dg.AssetKey("explanations"), limit=5).records
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert meta["import_source"] == good and meta["imported_by"] == "ana" and meta["explainer"] == "imported"
    assert meta["import_sha256"] == hashlib.sha256((tmp_path / "good.csv").read_bytes()).hexdigest()

    assert main(["import-explanations", f"{LAYER}|{RANGE}", bad]) == 2
    assert pl.read_parquet(stored).equals(table)  # a refused file leaves the last import as it was


def test_the_import_job_takes_its_file_as_run_config(tmp_path):
    cfg = load_config(SMALL_CONFIG).model_copy(update={"storage_root": str(tmp_path / "data")})
    job = build_definitions(cfg).resolve_job_def("import_explanations_job")
    good = write_csv(tmp_path / "good.csv", "latent,explanation\n0,the word cat\n")
    with dg.DagsterInstance.ephemeral() as instance:
        register_partitions(instance, cfg, [LAYER])
        result = job.execute_in_process(
            run_config={"ops": {"explanations": {"config": {"import_from": good, "imported_by": "job"}}}},
            partition_key=str(partition_key(LAYER, RANGE)), instance=instance)
    assert result.success
    table = pl.read_parquet(tmp_path / "data" / "explanations" / LAYER / f"{RANGE}.parquet")
    assert table.filter(pl.col("latent") == 0)["explanation"].item() == "the word cat"
