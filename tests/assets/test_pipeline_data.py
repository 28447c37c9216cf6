"""The data half materialised through Dagster with the real SmolLM2, plus bad-input failures."""

import dagster as dg
import polars as pl
import pytest
import torch
from support.project import LAYER, RANGE, key, run, small_config

from autointerp_assets.coders import TopKSAE, save_topk_sae
from autointerp_assets.config import TopKCoderConfig
from autointerp_assets.store import layout
from autointerp_assets.store.store import ArtifactStore

pytestmark = pytest.mark.slow


def materialization(instance, asset, partition):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1)
    return records.records[0].asset_materialization


def test_data_half_writes_shards_and_contexts(data_root, instance):
    store = ArtifactStore(str(data_root))
    stats = layout.read_partition(store, "latent_shards", LAYER, RANGE, ".stats")
    assert stats["latent"].to_list() == list(range(16))
    examples, skipped = layout.read_partition_tables(store, "contexts", LAYER, RANGE).values()
    # Every latent is accounted for: sampled or skipped with a reason.
    assert set(examples["latent"]) | set(skipped["latent"]) == set(range(16))
    assert skipped["reason"].null_count() == 0
    for _, group in examples.group_by("latent"):
        explain = set(group.filter(pl.col("split") == "explain").select("seq", "start").iter_rows())
        test = set(group.filter(pl.col("split") == "test").select("seq", "start").iter_rows())
        assert explain and test and not explain & test
    meta = materialization(instance, "contexts", str(key())).metadata
    for field in ("model_id", "model_revision", "corpus_hash", "coder_hash", "sampling_config"):
        assert field in meta
    trained = materialization(instance, "sparse_coder", LAYER).metadata
    assert 0 < trained["fvu"].value < 1 and trained["l0"].value > 0


def test_activations_are_bucketed_by_latent_range_under_a_committed_run(data_root):
    import json

    layer_dir = data_root / "activations" / LAYER
    manifest = json.loads((layer_dir / "manifest.json").read_text())
    run_dir = layer_dir / manifest["version"]
    listed = {f[0]: f for files in manifest["buckets"].values() for f in files}
    on_disk = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*.parquet")}
    assert on_disk == set(listed) and len(manifest["buckets"]) == 256 // 16
    total = 0
    for bucket, files in manifest["buckets"].items():
        lo, hi = map(int, bucket.split("-"))
        for name, nbytes, nrows in files:
            rows = pl.read_parquet(run_dir / name)  # plain parquet, readable by anyone
            assert rows.height == nrows and (run_dir / name).stat().st_size == nbytes
            assert rows["latent"].min() >= lo and rows["latent"].max() <= hi  # a bucket holds only its latents
            total += nrows
    assert total == manifest["nnz"] and manifest["total_bytes"] == sum(f[1] for f in listed.values())


def test_rerun_gives_the_same_shards(data_root, instance):
    store = ArtifactStore(str(data_root))
    before = layout.read_partition_tables(store, "latent_shards", LAYER, RANGE)
    run(["activations"], LAYER, data_root, instance)
    run(["latent_shards"], key(), data_root, instance)
    after = layout.read_partition_tables(store, "latent_shards", LAYER, RANGE)
    assert all(after[name].equals(before[name]) for name in before)


def failure_text(result) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def test_latent_range_beyond_the_sae_width_fails_and_writes_nothing(data_root, instance):
    result = run(["latent_shards"], key(latent_range="00256-00271"), data_root, instance, raise_on_error=False)
    assert not result.success
    assert "beyond the sparse coder of layers.3, which has 256 latents" in failure_text(result)
    assert not (data_root / "latent_shards" / LAYER / "00256-00271").exists()


def test_unknown_hookpoint_fails_and_writes_nothing(tmp_path, instance):
    small = small_config()
    cfg = small.model_copy(update={"hookpoints": {**small.hookpoints, "layers.99": small.hookpoints[LAYER]}})
    result = run(["sparse_coder"], "layers.99", tmp_path, instance, raise_on_error=False, cfg=cfg)
    assert not result.success and "unknown hookpoint 'layers.99'" in failure_text(result)
    assert not list(tmp_path.rglob("*.*"))


def test_sae_with_wrong_d_in_fails_and_writes_nothing(tmp_path, instance):
    d_in, n = 100, 64
    w = torch.randn(n, d_in)
    save_topk_sae(TopKSAE(w, torch.zeros(n), w.clone(), torch.zeros(d_in), 4), tmp_path / "sae")
    cfg = small_config().model_copy(update={"hookpoints": {"layers.1": TopKCoderConfig(kind="topk", path=str(tmp_path / "sae"), n_latents=n)}})
    result = run(["sparse_coder"], "layers.1", tmp_path / "store", instance, raise_on_error=False, cfg=cfg)
    assert not result.success
    assert "d_in=100" in failure_text(result) and "576" in failure_text(result)
    assert not (tmp_path / "store").exists()


def test_empty_corpus_fails_and_writes_nothing(tmp_path, instance):
    (tmp_path / "tiny.txt").write_text("too short")
    small = small_config()
    corpus_cfg = small.corpus.model_copy(update={"source": "files", "paths": [str(tmp_path / "*.txt")]})
    result = run(["corpus"], None, tmp_path / "store", instance, raise_on_error=False,
                 cfg=small.model_copy(update={"corpus": corpus_cfg}))
    assert not result.success and "no window of 64 tokens" in failure_text(result)
    assert not (tmp_path / "store").exists()


def test_one_run_backfills_several_layers_with_one_forward_pass(data_root, instance):
    import json

    run(["sparse_coder"], "layers.3.mlp", data_root, instance)
    result = run(["activations"], None, data_root, instance, tags={
        "dagster/asset_partition_range_start": LAYER, "dagster/asset_partition_range_end": "layers.3.mlp"})
    (event,) = result.get_asset_materialization_events()[:1]
    assert event.materialization.metadata["layers"].value == "layers.3, layers.3.mlp"  # one step, both layers
    assert len(result.get_asset_materialization_events()) == 2
    for layer in (LAYER, "layers.3.mlp"):
        manifest = json.loads((data_root / "activations" / layer / "manifest.json").read_text())
        assert manifest["n_tokens"] > 0 and manifest["buckets"]


def test_contexts_with_cooccurring_and_similar_negatives(data_root, instance, tmp_path):
    """The contexts asset with both kinds of look-alike negatives: the real sentence encoder loaded in
    the stage, every kind present in both splits, and still never an active token in a negative."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(data_root, root)
    cfg = small_config()
    cfg = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(
        update={"n_cooccurring_negatives": 2, "n_similar_negatives": 2})})
    run(["contexts"], key(), root, instance, cfg=cfg)
    examples = layout.read_partition(ArtifactStore(str(root)), "contexts", LAYER, RANGE)
    kinds = examples.group_by("split", "kind").len()
    for kind in ("cooccurring", "similar"):
        assert set(kinds.filter(pl.col("kind") == kind)["split"]) == {"explain", "test"}
    negatives = examples.filter(~pl.col("activating"))
    assert negatives["max_act"].max() == 0
