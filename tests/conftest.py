"""Shared fixtures. The code location reads its config at import, so the tests'
small config is selected here, before anything imports autointerp_assets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from autointerp_assets.local_server import free_port

TESTS = Path(__file__).parent
os.environ.setdefault("AUTOINTERP_CONFIG", str(TESTS / "data" / "small.yaml"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket `autointerp-test`."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ[key] = value
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="autointerp-test")
    yield url
    server.stop()


@pytest.fixture(scope="session")
def subject():
    """The real SmolLM2-135M-Instruct, loaded once per test session."""
    from resources.subject_model import SubjectModel

    return SubjectModel(model_id="smollm2-135m-instruct").load()


# -- the data half of one partition, materialised once per session with the real model --------
LAYER, RANGE = "layers.3", "00000-00015"


def key(layer=LAYER, latent_range=RANGE):
    from autointerp_assets.partitions import LATENTS_DIM, LAYER_DIM

    return dg.MultiPartitionKey({LAYER_DIM: layer, LATENTS_DIM: latent_range})


def run(selection, partition_key, root, instance, raise_on_error=True, tags=None, **resources):
    """Materialise `selection` into a storage root, with the project's resources unless overridden."""
    from autointerp_assets import assets
    from autointerp_assets.definitions import all_assets, build_resources
    from resources.storage import Storage

    resources = build_resources(assets.CFG) | {"storage": Storage(root=str(root))} | resources
    return dg.materialize(all_assets, selection=selection, partition_key=partition_key, resources=resources,
                          instance=instance, raise_on_error=raise_on_error, tags=tags)


@pytest.fixture(scope="session")
def instance():
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("layer", [LAYER, "layers.3.mlp", "layers.99", "layers.1"])
    return inst


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, instance):
    root = tmp_path_factory.mktemp("store")
    run(["corpus"], None, root, instance)
    run(["sparse_coder"], LAYER, root, instance)
    run(["activations"], LAYER, root, instance)
    run(["latent_shards"], key(), root, instance)
    run(["contexts"], key(), root, instance)
    return root


def on_disk_project(root: Path, layer: str, upstream: list[tuple[str, object]]) -> tuple[dg.DagsterInstance, pytest.MonkeyPatch]:
    """A $DAGSTER_HOME under `root` with the repo's dagster.yaml, a copy of the test config whose
    storage root is under `root` (set as $AUTOINTERP_CONFIG, for processes that load the code
    location), the layer registered, and `upstream` (asset, partition key) materialised in-process.
    The caller undoes the returned MonkeyPatch when done."""
    import yaml

    from autointerp_assets.config import project_config
    from autointerp_assets.definitions import all_assets, build_resources
    from resources.storage import Storage

    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(TESTS.parent / "dagster.yaml", home)
    raw = yaml.safe_load((TESTS / "data" / "small.yaml").read_text())
    raw["storage_root"] = str(root / "data")
    (root / "autointerp.yaml").write_text(yaml.safe_dump(raw))
    env = pytest.MonkeyPatch()
    env.setenv("DAGSTER_HOME", str(home))
    env.setenv("AUTOINTERP_CONFIG", str(root / "autointerp.yaml"))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("layer", [layer])
    resources = {**build_resources(project_config()), "storage": Storage(root=str(root / "data"))}
    for asset, key in upstream:
        dg.materialize(all_assets, selection=[asset], partition_key=key, resources=resources, instance=instance)
    return instance, env
