"""The observable sources: what a revision is for each kind of model and coder, observing them
through Dagster, and the hookpoint sensor that registers layers."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import torch
import yaml
from dagster._core.definitions.observe import observe
from support.project import SMALL_CONFIG

from autointerp_assets.coders import TopKSAE, save_topk_sae
from autointerp_assets.config import (
    JumpReLUCoderConfig,
    NeuronsCoderConfig,
    TopKCoderConfig,
    TrainTopKCoderConfig,
)
from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import register_partitions
from resources.storage import Storage
from sensors import build_hookpoint_sensor, build_source_assets
from sensors.sources import coder_revision, coder_revisions

TOPK, NEURONS = "layers.3", "layers.3.mlp"


def _sae(path: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, d = 32, 576
    save_topk_sae(TopKSAE(torch.randn(n, d, generator=g), torch.zeros(n), torch.randn(n, d, generator=g),
                          torch.zeros(d), k=4), path)


@pytest.fixture
def project(tmp_path):
    """A config whose model and coder are files we can change: a stand-in model dir and a TopK SAE."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    _sae(tmp_path / "sae", seed=0)
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["subject_model"]["id"] = str(model)
    raw["hookpoints"] = {TOPK: {"kind": "topk", "path": str(tmp_path / "sae"), "n_latents": 32},
                         NEURONS: {"kind": "neurons", "n_latents": 1536, "top_k": 16}}
    raw["storage_root"] = str(tmp_path / "data")
    (tmp_path / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path, load_config(tmp_path / "autointerp.yaml")


def test_a_local_coder_is_versioned_by_the_files_its_loader_reads(tmp_path):
    _sae(tmp_path / "sae", seed=0)
    coder = TopKCoderConfig(kind="topk", path=str(tmp_path / "sae"), n_latents=32)
    first = coder_revision(coder)
    (tmp_path / "sae" / "README.md").write_text("notes")  # not read by the loader
    assert coder_revision(coder) == first
    _sae(tmp_path / "sae", seed=1)  # new weights
    assert coder_revision(coder) != first


class FakeHub:
    """The hub's per-file listing (blob ids / LFS sha256), as `HfApi.get_paths_info` answers it."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.asked: list[list[str]] = []

    def __call__(self, repo_id: str, revision: str | None, paths: list[str]) -> dict[str, str]:
        self.asked.append(paths)
        return {p: self.files[p] for p in paths if p in self.files}


def test_a_hub_coder_is_versioned_by_its_own_files_not_the_repository_commit():
    hub = FakeHub({"README.md": "r1", "layer_12/width_16k/params.npz": "a1", "layer_12/width_16k/cfg.json": "c1",
                   "layer_20/width_16k/params.npz": "b1"})
    coder = JumpReLUCoderConfig(kind="jumprelu", path="google/gemma-scope-2b-pt-res#layer_12/width_16k", n_latents=16)
    first = coder_revision(coder, listing=hub)
    assert hub.asked[0] == ["layer_12/width_16k/cfg.json", "layer_12/width_16k/params.npz",
                            "layer_12/width_16k/sae_weights.safetensors"]
    hub.files |= {"README.md": "r2", "layer_20/width_16k/params.npz": "b2"}  # a README edit, another layer's SAE
    assert coder_revision(coder, listing=hub) == first
    hub.files["layer_12/width_16k/params.npz"] = "a2"  # this layer's weights
    assert coder_revision(coder, listing=hub) != first


def test_trained_and_neuron_coders_are_versioned_by_their_settings():
    trained = TrainTopKCoderConfig(n_latents=256)
    assert coder_revision(trained) == coder_revision(TrainTopKCoderConfig(n_latents=256))
    assert coder_revision(trained) != coder_revision(TrainTopKCoderConfig(n_latents=256, k=8))
    assert coder_revision(NeuronsCoderConfig(kind="neurons", n_latents=1536)) != coder_revision(
        NeuronsCoderConfig(kind="neurons", n_latents=1536, top_k=16))


def test_an_unreadable_coder_is_reported_and_the_others_still_read(project, tmp_path):
    _, cfg = project
    broken = cfg.model_copy(update={"hookpoints": {
        **cfg.hookpoints, "layers.5": TopKCoderConfig(kind="topk", path=str(tmp_path / "gone"), n_latents=32)}})
    revisions, errors = coder_revisions(broken, [TOPK, NEURONS, "layers.5"])
    assert set(revisions) == {TOPK, NEURONS}
    assert "gone" in errors["layers.5"] and "cfg.json" in errors["layers.5"]


def test_observing_records_revisions_as_data_versions(project):
    """What the UI's "Observe sources" and automation's cron both run."""
    tmp_path, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])

    def observed() -> dict:
        result = observe(build_source_assets(cfg), instance=instance,
                         resources={"storage": Storage(root=str(tmp_path / "data"))})
        assert result.success
        return {(e.asset_key.to_user_string(), e.partition): e.tags["dagster/data_version"]
                for e in (ev.asset_observation_data.asset_observation for ev in result.get_asset_observation_events())}

    first = observed()
    assert set(first) == {("subject_model_source", None), ("sparse_coder_source", TOPK), ("sparse_coder_source", NEURONS)}
    _sae(tmp_path / "sae", seed=1)
    second = observed()
    assert [k for k in first if first[k] != second[k]] == [("sparse_coder_source", TOPK)]
    (tmp_path / "model" / "weights.bin").write_bytes(b"v2")
    assert [k for k in second if second[k] != observed()[k]] == [("subject_model_source", None)]


def test_hookpoint_sensor_adds_missing_layers_once(project):
    _, cfg = project
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg, [TOPK, NEURONS])
    instance.delete_dynamic_partition("layer", NEURONS)
    sensor = build_hookpoint_sensor(cfg)
    result = sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [[NEURONS]]
    instance.add_dynamic_partitions("layer", [NEURONS])
    assert isinstance(sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
