"""Shared fixtures. The code location reads its config at import, so the tests'
small config is selected here, before anything imports autointerp_assets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
os.environ.setdefault("AUTOINTERP_CONFIG", str(TESTS / "data" / "small.yaml"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
