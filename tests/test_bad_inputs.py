"""Bad input, tried as a user would: `python -m autointerp_assets demo|add-layer|review ...`.

Each case must end with one message that names the file or field and the fix, exit status 2,
no traceback, nothing written under the storage root and nothing registered (no Dagster
instance is even created). The same inputs through `dagster asset materialize` are in
tests/assets/test_bad_inputs_dagster.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from support.inputs import free_url, sae_dir, truncate
from support.project import SMALL_CONFIG

from autointerp_assets.cli import main

PASTED_KEY = "sk-live-0123456789abcdefPASTED"


@dataclass
class Case:
    """A project under `tmp` made bad by `setup(raw config, tmp)`, then `args` on the CLI."""

    name: str
    setup: Callable[[dict, Path], None]
    expect: list[str]  # each must appear in the message
    args: list[str] = field(default_factory=lambda: ["demo"])
    env: dict[str, str] = field(default_factory=dict)


def at(raw: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def coder(raw: dict, **fields: object) -> None:
    raw["hookpoints"]["layers.3"] = {**raw["hookpoints"]["layers.3"], **fields}


def with_sae(raw: dict, tmp: Path, spoil: Callable[[Path], None] = lambda d: None, n_latents: int = 64) -> None:
    directory = sae_dir(tmp)
    spoil(directory)
    raw["hookpoints"] = {"layers.3": {"kind": "topk", "path": str(directory), "n_latents": n_latents}}


def openai(raw: dict, **llm: object) -> None:
    raw["llm"] = {"backend": "openai", "model": "m", **llm}


CASES = [
    # config
    Case("config_typo", lambda raw, tmp: at(raw, "storage_rot", "x"), ["storage_rot", "did you mean 'storage_root'"]),
    Case("config_cross_field", lambda raw, tmp: at(raw, "sampling.example_ctx_len", 128),
         ["sampling.example_ctx_len=128 exceeds corpus.ctx_len=64", "lower"]),
    Case("config_wrong_type", lambda raw, tmp: at(raw, "subject_model.batch_size", "sixteen"),
         ["subject_model.batch_size", "valid integer", "'sixteen'"]),
    Case("config_unknown_coder_kind", lambda raw, tmp: coder(raw, kind="topkk"),
         ["hookpoints.layers.3", "'topkk'", "'train_topk'"]),
    Case("config_k_above_width", lambda raw, tmp: coder(raw, k=999),
         ["k=999 exceeds n_latents=256", "lower k"]),
    # coder files
    Case("coder_truncated_weights", lambda raw, tmp: with_sae(raw, tmp, lambda d: truncate(d / "sae.safetensors")),
         ["sae/sae.safetensors is truncated", "re-download or re-save"]),
    Case("coder_cfg_not_json", lambda raw, tmp: with_sae(raw, tmp, lambda d: (d / "cfg.json").write_text("{k: 4")),
         ["sae/cfg.json is not valid JSON", "restore the file"]),
    Case("coder_wrong_width", lambda raw, tmp: with_sae(raw, tmp, n_latents=128),
         ["has 64 latents", "hookpoints.layers.3.n_latents is 128", "set n_latents: 64"]),
    Case("coder_missing", lambda raw, tmp: at(raw, "hookpoints", {"layers.3": {
        "kind": "topk", "path": str(tmp / "none"), "n_latents": 64}}),
         ["no sparsify SAE", "none", "point `path` at the directory"]),
    # the subject model
    Case("model_dir_without_config", lambda raw, tmp: ((tmp / "model").mkdir(), at(raw, "subject_model.id",
                                                                                   str(tmp / "model"))),
         ["subject_model.id", "has no config.json", "point it at a directory saved with save_pretrained"]),
    Case("model_path_missing", lambda raw, tmp: at(raw, "subject_model.id", str(tmp / "no-model")),
         ["subject_model.id", "does not exist"]),
    # corpus
    Case("corpus_matches_nothing", lambda raw, tmp: at(raw, "corpus", {"source": "files",
                                                                        "paths": [str(tmp / "*.none")]}),
         ["corpus.paths", "matched no files"]),
    Case("corpus_path_is_a_directory", lambda raw, tmp: ((tmp / "texts").mkdir(), at(raw, "corpus", {
        "source": "files", "paths": [str(tmp / "texts")]})), ["is a directory", "/**/*.txt"]),
    Case("corpus_files_without_paths", lambda raw, tmp: at(raw, "corpus", {"source": "files"}),
         ["corpus.source 'files' needs corpus.paths"]),
    # partition keys
    Case("key_swapped", lambda raw, tmp: None, ["swapped", "--layer layers.3 --range 00000-00015"],
         args=["demo", "--layer", "00000-00015", "--range", "layers.3"]),
    Case("key_not_a_range", lambda raw, tmp: None, ["latent range 'abc'", "valid ranges: 00000-00015",
                                                    "zero-padded"], args=["demo", "--range", "abc"]),
    Case("key_range_misaligned", lambda raw, tmp: None, ["'00000-00099'", "valid ranges"],
         args=["demo", "--range", "00000-00099"]),
    Case("key_unknown_layer", lambda raw, tmp: None, ["layer 'layers.99'", "valid layers: layers.3, layers.3.mlp"],
         args=["demo", "--layer", "layers.99"]),
    Case("add_layer_unknown", lambda raw, tmp: None, ["layer 'layers.99'", "hookpoints:"],
         args=["add-layer", "layers.99"]),
    Case("review_bad_range", lambda raw, tmp: None, ["latent range 'x'", "valid ranges"],
         args=["review", "layers.3", "x", "3", "accept"]),
    # storage
    Case("storage_unwritable", lambda raw, tmp: at(raw, "storage_root", "/proc/autointerp-data"),
         ["storage_root '/proc/autointerp-data' is not writable", "choose a writable directory"]),
    Case("storage_under_a_file", lambda raw, tmp: ((tmp / "plain.txt").write_text("x"),
                                                   at(raw, "storage_root", str(tmp / "plain.txt" / "data"))),
         ["plain.txt is a file, not a directory"]),
    # credentials
    Case("api_key_unset", lambda raw, tmp: openai(raw, base_url=free_url(), api_key_env="AUTOINTERP_TEST_UNSET_KEY"),
         ["$AUTOINTERP_TEST_UNSET_KEY is not set", "export AUTOINTERP_TEST_UNSET_KEY="]),
    Case("api_key_pasted_as_name", lambda raw, tmp: openai(raw, base_url=free_url(), api_key_env=PASTED_KEY),
         ["llm.api_key_env takes the NAME of an environment variable"]),
    Case("remote_endpoint_without_key", lambda raw, tmp: openai(raw, base_url="https://llm.example.com/v1"),
         ["llm.base_url https://llm.example.com/v1 is remote", "llm.api_key_env"]),
    # endpoints
    Case("endpoint_unreachable", lambda raw, tmp: openai(raw, base_url=free_url()),
         ["LLM endpoint http://127.0.0.1:", "is unreachable", "fix llm.base_url"]),
    Case("endpoint_missing_base_url", lambda raw, tmp: openai(raw), ["needs llm.base_url"]),
    Case("endpoint_not_a_url", lambda raw, tmp: openai(raw, base_url="localhost:8000"),
         ["'localhost:8000' is not an http(s) URL"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_message_and_writes_nothing(case: Case, tmp_path: Path, monkeypatch, capsys):
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["storage_root"] = str(tmp_path / "data")
    case.setup(raw, tmp_path)
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(tmp_path / "autointerp.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("AUTOINTERP_TEST_UNSET_KEY", raising=False)
    before = sorted(p.name for p in tmp_path.iterdir())

    assert main(case.args) == 2
    out, err = capsys.readouterr()
    assert err.startswith("autointerp: ") and "Traceback" not in err + out
    for expected in case.expect:
        assert expected in err, (expected, err)
    assert PASTED_KEY not in err
    # Nothing written (no storage root) and nothing registered (no instance was created).
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "data").exists() and not (tmp_path / "dagster_home").exists()


def test_a_config_file_that_is_not_yaml_or_missing(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "broken.yaml").write_text("hookpoints: [\n  oops")
    for path, expected in ((tmp_path / "broken.yaml", "is not valid YAML"), (tmp_path / "none.yaml", "does not exist")):
        monkeypatch.setenv("AUTOINTERP_CONFIG", str(path))
        assert main(["demo"]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and expected in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks(tmp_path: Path, monkeypatch, capsys):
    raw = yaml.safe_load(SMALL_CONFIG.read_text()) | {"storage_root": str(tmp_path / "data")}
    at(raw, "subject_model.device", "cuda")
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(tmp_path / "autointerp.yaml"))
    assert main(["demo"]) == 2
    assert "set subject_model.device: cpu" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_there_are_at_least_fifteen_cases_across_every_kind_of_input():
    kinds = {c.name.split("_")[0] for c in CASES}
    assert len(CASES) >= 15
    assert {"config", "coder", "model", "corpus", "key", "storage", "api", "endpoint"} <= kinds
    assert os.environ.get("AUTOINTERP_TEST_UNSET_KEY") is None
