"""The tests' small project: its config, one partition's keys, and materialising assets into a root."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from autointerp_assets.code_location import build_assets
from autointerp_assets.config import ProjectConfig
from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import partition_key, register_partitions
from resources import Project, Storage, build_resources

SUPPORT = Path(__file__).parent
SMALL_CONFIG = SUPPORT / "small.yaml"
LAYER, RANGE = "layers.3", "00000-00015"


def small_config() -> ProjectConfig:
    return load_config(SMALL_CONFIG)


def key(layer=LAYER, latent_range=RANGE):
    return partition_key(layer, latent_range)


def run(selection, partition_key, root, instance, raise_on_error=True, tags=None, cfg: ProjectConfig | None = None,
        **resources):
    """Materialise `selection` into a storage root, with the resources of `cfg` (default: the small
    project) unless overridden."""
    cfg = cfg or small_config()
    resources = build_resources(cfg) | {"storage": Storage(root=str(root))} | resources
    return dg.materialize(build_assets(cfg), selection=selection, partition_key=partition_key, resources=resources,
                          instance=instance, raise_on_error=raise_on_error, tags=tags)


def on_disk_project(root: Path, layer: str, upstream: list[tuple[str, object]],
                    overrides: dict | None = None) -> tuple[dg.DagsterInstance, pytest.MonkeyPatch]:
    """A $DAGSTER_HOME under `root` with the repo's dagster.yaml, a copy of the test config whose
    storage root is under `root` (set as $AUTOINTERP_CONFIG, for processes that load the code
    location), the layer registered, and `upstream` (asset, partition key) materialised in-process.
    `overrides`: top-level config sections replaced. The caller undoes the returned MonkeyPatch."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(SUPPORT.parents[1] / "dagster.yaml", home)
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw |= {"storage_root": str(root / "data"), **(overrides or {})}
    (root / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    env = pytest.MonkeyPatch()
    env.setenv("DAGSTER_HOME", str(home))
    env.setenv("AUTOINTERP_CONFIG", str(root / "autointerp.yaml"))
    instance = dg.DagsterInstance.get()
    cfg = load_config(root / "autointerp.yaml")
    register_partitions(instance, cfg, [layer])
    resources = {**build_resources(cfg), "storage": Storage(root=str(root / "data"))}
    for asset, partition in upstream:
        dg.materialize(build_assets(cfg), selection=[asset], partition_key=partition, resources=resources,
                       instance=instance)
    return instance, env


__all__ = ["LAYER", "RANGE", "SMALL_CONFIG", "Project", "key", "on_disk_project", "run", "small_config"]
