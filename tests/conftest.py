"""Shared fixtures: a local S3 server, the real subject model, and the data half of one
partition of the small test project (tests/support/small.yaml), materialised once."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

TESTS = Path(__file__).parent
os.environ.setdefault("AUTOINTERP_CONFIG", str(TESTS / "support" / "small.yaml"))  # for code that loads the code location
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support.project import LAYER, key, run, small_config  # noqa: E402
from support.transformers_server import free_port  # noqa: E402

from autointerp_assets.partitions import register_partitions  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket `autointerp-test`."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ[name] = value
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


@pytest.fixture(scope="session")
def instance():
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("layer", [LAYER, "layers.3.mlp", "layers.99", "layers.1"])
    register_partitions(inst, small_config())
    inst.add_dynamic_partitions("latent_range", ["00256-00271"])  # beyond layers.3's coder, on purpose
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
