import os

import polars as pl
import pyarrow.parquet as pq
import pytest

from autointerp_assets.store.store import ArtifactStore, partition_path
from resources.storage import Storage

FRAME = pl.DataFrame({"latent": [3, 1, 2], "explanation": ["a", "b", None]})


def test_local_round_trip_and_layout(tmp_path):
    store = ArtifactStore(str(tmp_path))
    rel = partition_path("scores", "layers.6", "00000-00063")
    store.write_parquet(rel, FRAME)
    assert (tmp_path / "scores" / "layers.6" / "00000-00063.parquet").exists()
    assert store.read_parquet(rel).equals(FRAME)
    # Readable directly by polars and pyarrow, no custom code.
    assert pl.read_parquet(store.uri(rel)).equals(FRAME)
    assert pq.read_table(store.uri(rel)).num_rows == 3
    assert store.list("scores/layers.6") == [rel]


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path))
    store.write_bytes("x/a.bin", b"old")

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.write_bytes("x/a.bin", b"new")
    monkeypatch.undo()
    assert store.read_bytes("x/a.bin") == b"old"
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a.bin"]


def test_s3_round_trip_through_a_real_s3_server(s3_endpoint):
    resource = Storage(root="s3://autointerp-test/run1", endpoint_url=s3_endpoint)
    store = resource.store()
    rel = partition_path("contexts", "layers.6", "00000-00063")
    store.write_parquet(rel, FRAME)
    store.write_json("corpus/meta.json", {"content_hash": "abc"})
    assert store.read_parquet(rel).equals(FRAME)
    assert store.read_json("corpus/meta.json") == {"content_hash": "abc"}
    assert store.list("contexts/layers.6") == [rel]
    # polars reads the same object straight from S3.
    direct = pl.read_parquet(store.uri(rel), storage_options={
        "aws_endpoint_url": s3_endpoint, "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing", "aws_region": "us-east-1", "aws_allow_http": "true"})
    assert direct.equals(FRAME)
    store.delete("contexts")
    assert not store.exists(rel)
