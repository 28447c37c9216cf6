"""Checks before a run: each failure names the field and the fix, and checking writes nothing."""

from __future__ import annotations

import os
import uuid

import pytest
from support.fake_openai_server import FaultServer
from support.inputs import free_url
from support.project import small_config

from autointerp_assets.config import LLMConfig
from autointerp_assets.errors import EndpointError, StorageError, UserError
from autointerp_assets.preflight import check_at_load, check_endpoint, check_storage_writable


def test_a_writable_root_passes_and_the_check_leaves_nothing(tmp_path):
    check_storage_writable(str(tmp_path / "a" / "b"))  # not there yet: its nearest parent is checked
    check_storage_writable(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("root, expected", [
    ("/proc/autointerp", "is not writable"),
    ("{tmp}/file.txt/data", "file.txt is a file, not a directory"),
])
def test_an_unwritable_root_is_named_with_the_fix(tmp_path, root, expected):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(StorageError, match=expected) as err:
        check_storage_writable(root.format(tmp=tmp_path))
    assert "storage_root" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_not_writable(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            check_storage_writable(str(tmp_path / "data"))
    finally:
        tmp_path.chmod(0o700)


def test_s3_roots_are_probed_and_a_missing_bucket_is_named(s3_endpoint):
    import s3fs

    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    prefix = f"s3://autointerp-test/preflight-{uuid.uuid4().hex}"
    check_storage_writable(prefix, options)
    assert s3fs.S3FileSystem(**options).find(prefix.removeprefix("s3://")) == []  # the probe was removed
    with pytest.raises(StorageError, match="storage_root 's3://no-such-bucket/x' is not writable.*create the bucket"):
        check_storage_writable("s3://no-such-bucket/x", options)


def test_the_endpoint_check(monkeypatch):
    check_endpoint(LLMConfig())  # the local backend needs no endpoint
    url = free_url()
    with pytest.raises(EndpointError, match=f"{url} is unreachable"):
        check_endpoint(LLMConfig(backend="openai", base_url=url))
    server = FaultServer()
    try:
        check_endpoint(LLMConfig(backend="openai", base_url=server.base_url))
        monkeypatch.delenv("AUTOINTERP_PREFLIGHT_KEY", raising=False)
        keyed = LLMConfig(backend="openai", base_url=server.base_url, api_key_env="AUTOINTERP_PREFLIGHT_KEY")
        with pytest.raises(UserError, match=r"\$AUTOINTERP_PREFLIGHT_KEY is not set"):
            check_endpoint(keyed)
        monkeypatch.setenv("AUTOINTERP_PREFLIGHT_KEY", "sk-test")
        check_endpoint(keyed)
        assert server.n_requests == 0  # a GET of /models, no chat request is paid for
    finally:
        server.close()


def test_the_checks_at_load_pass_for_the_test_project_and_write_nothing(tmp_path):
    cfg = small_config().model_copy(update={"storage_root": str(tmp_path / "data")})
    check_at_load(cfg)
    assert list(tmp_path.iterdir()) == []
