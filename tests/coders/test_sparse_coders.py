"""Sparse coders: sparse encode == dense reference, loaders, errors, S3 and hub paths."""

from __future__ import annotations

import json

import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import torch
from support.numeric import assert_same_topk

from autointerp_assets.coders import (
    JumpReLUSAE,
    Neurons,
    ReLUSAE,
    SparseCoderError,
    SparseLatents,
    TopKSAE,
    load_sparse_coder,
    save_topk_sae,
)
from autointerp_assets.config import JumpReLUCoderConfig, NeuronsCoderConfig, TopKCoderConfig

D_IN, N_LATENTS, K = 16, 64, 5


def random_topk(seed: int = 0, k: int = K) -> TopKSAE:
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(N_LATENTS, D_IN, generator=g)
    return TopKSAE(
        torch.randn(N_LATENTS, D_IN, generator=g),
        torch.randn(N_LATENTS, generator=g) * 0.1,
        W_dec / W_dec.norm(dim=1, keepdim=True),
        torch.randn(D_IN, generator=g) * 0.1,
        k=k,
    )


def random_jumprelu(seed: int = 0, max_active: int = N_LATENTS) -> JumpReLUSAE:
    g = torch.Generator().manual_seed(seed)
    return JumpReLUSAE(
        W_enc=torch.randn(D_IN, N_LATENTS, generator=g),
        b_enc=torch.randn(N_LATENTS, generator=g) * 0.1,
        W_dec=torch.randn(N_LATENTS, D_IN, generator=g),
        b_dec=torch.randn(D_IN, generator=g) * 0.1,
        threshold=torch.rand(N_LATENTS, generator=g) * 3,
        max_active=max_active,
    )


def densify(latents: SparseLatents, n: int) -> torch.Tensor:
    """[N, k] values/indices -> [N, n]; padding entries (value 0) scatter zeros."""
    return torch.zeros(len(latents.values), n).scatter(1, latents.indices, latents.values)


EXACT = {"atol": 1e-5, "rtol": 1e-5}  # fp32 on both sides; only the summation order differs


def outside_threshold_ties(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Entries not within rounding of their JumpReLU threshold (or of 0), where either side of `>` is right."""
    return ((pre - threshold).abs() > 1e-5) & (pre.abs() > 1e-5)


def inputs(n: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


# -- encode against dense references ------------------------------------------------------------


def test_topk_encode_matches_dense_reference():
    sae, x = random_topk(), inputs()
    dense = torch.relu((x - sae.b_dec) @ sae.encoder_weight.T + sae.encoder_bias)  # [N, n]
    latents = sae.encode(x)
    assert latents.values.shape == latents.indices.shape == (len(x), K)
    assert latents.indices.dtype == torch.int64 and latents.values.dtype == torch.float32
    assert_same_topk(densify(latents, N_LATENTS), dense, K, **EXACT)
    assert latents.dropped == 0


def test_topk_transcoder_does_not_subtract_b_dec():
    sae, x = random_topk(), inputs()
    transcoder = TopKSAE(sae.encoder_weight, sae.encoder_bias, sae.W_dec, sae.b_dec, k=K, transcoder=True)
    dense = torch.relu(x @ sae.encoder_weight.T + sae.encoder_bias)
    assert_same_topk(densify(transcoder.encode(x), N_LATENTS), dense, K, **EXACT)


def test_topk_decode_matches_dense_reconstruction():
    sae, x = random_topk(), inputs()
    latents = sae.encode(x)
    expected = densify(latents, N_LATENTS) @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(sae.decode(latents.values, latents.indices), expected)


def test_jumprelu_encode_matches_dense_reference():
    sae, x = random_jumprelu(), inputs()
    pre = x @ sae.W_enc + sae.b_enc
    dense = pre * ((pre > sae.threshold) & (pre > 0))
    latents = sae.encode(x)
    clear = outside_threshold_ties(pre, sae.threshold)
    torch.testing.assert_close(densify(latents, N_LATENTS)[clear], dense[clear])
    # k shrinks to the widest row of the batch, not to max_active.
    assert latents.values.shape[1] == int((dense > 0).sum(dim=1).max())


def test_jumprelu_cap_keeps_largest_and_counts_dropped():
    sae, x = random_jumprelu(max_active=2), inputs()
    pre = x @ sae.W_enc + sae.b_enc
    dense = pre * ((pre > sae.threshold) & (pre > 0))
    latents = sae.encode(x)
    assert_same_topk(densify(latents, N_LATENTS), dense, 2, **EXACT)
    assert latents.dropped == int(((dense > 0).sum(dim=1) - 2).clamp(min=0).sum()) > 0


def test_jumprelu_threshold_is_strict_and_per_latent():
    sae = JumpReLUSAE(
        W_enc=torch.eye(4), b_enc=torch.zeros(4), W_dec=torch.eye(4), b_dec=torch.zeros(4),
        threshold=torch.tensor([0.5, 0.5, 2.0, -1.0]),
    )
    # latent 0 clears its threshold; 1 sits exactly on it; 2 is below; 3 clears a negative threshold but is < 0.
    latents = sae.encode(torch.tensor([[1.0, 0.5, 1.9, -0.5]]))
    rows, cols, values = latents.nonzero()
    assert rows.tolist() == [0] and cols.tolist() == [0] and values.tolist() == [1.0]


def test_relu_sae_keeps_every_positive_pre_activation():
    j = random_jumprelu()
    sae = ReLUSAE(j.W_enc, j.b_enc, j.W_dec, j.b_dec, subtract_b_dec=True)
    x = inputs()
    pre = (x - j.b_dec) @ j.W_enc + j.b_enc
    clear = pre.abs() > 1e-5  # a pre-activation within rounding of 0 may land on either side
    torch.testing.assert_close(densify(sae.encode(x), N_LATENTS)[clear], torch.relu(pre)[clear])


def test_neurons_top_k_and_positive_entries():
    x = torch.tensor([[3.0, -1.0, 0.5, 2.0], [-1.0, -2.0, -3.0, 0.25]])
    top2 = Neurons(4, top_k=2).encode(x)
    assert top2.indices[0].tolist() == [0, 3] and top2.values[0].tolist() == [3.0, 2.0]
    assert top2.values[1].tolist() == [0.25, 0.0]  # the negative runner-up becomes padding
    rows, cols, values = Neurons(4).encode(x).nonzero()
    active = list(zip(rows.tolist(), cols.tolist(), values.tolist()))
    assert active == [(0, 0, 3.0), (0, 3, 2.0), (0, 2, 0.5), (1, 3, 0.25)]


def test_empty_batch_encodes_to_empty():
    latents = random_jumprelu().encode(torch.zeros(0, D_IN))
    assert latents.values.shape == (0, 0) and latents.dropped == 0


# -- save / load / hash --------------------------------------------------------------------------


def topk_cfg(path: str, n_latents: int = N_LATENTS) -> TopKCoderConfig:
    return TopKCoderConfig(kind="topk", path=path, n_latents=n_latents)


def test_save_load_round_trip_in_sparsify_layout(tmp_path):
    sae = random_topk()
    save_topk_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["num_latents"] == N_LATENTS and cfg["k"] == K and cfg["transcode"] is False
    stored = safetensors.torch.load_file(tmp_path / "sae" / "sae.safetensors")
    assert {k: tuple(v.shape) for k, v in stored.items()} == {
        "encoder.weight": (N_LATENTS, D_IN), "encoder.bias": (N_LATENTS,), "W_dec": (N_LATENTS, D_IN), "b_dec": (D_IN,)
    }
    loaded = load_sparse_coder(topk_cfg(str(tmp_path / "sae")), D_IN, hookpoint="layers.6")
    assert isinstance(loaded, TopKSAE)
    x = inputs()
    a, b = sae.encode(x), loaded.encode(x)
    assert torch.equal(a.values, b.values) and torch.equal(a.indices, b.indices)
    assert loaded.content_hash() == sae.content_hash()
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae.safetensors"]  # no temp files


def test_content_hash_is_stable_and_sensitive():
    def fixed() -> TopKSAE:  # arange weights: identical bytes on every platform
        w = torch.arange(N_LATENTS * D_IN, dtype=torch.float32).reshape(N_LATENTS, D_IN) / 100
        return TopKSAE(w, torch.zeros(N_LATENTS), w.clone(), torch.zeros(D_IN), k=K)

    h = fixed().content_hash()
    assert h == fixed().content_hash() and len(h) == 16 and int(h, 16) >= 0
    changed = fixed()
    changed.b_dec[0] = 1.0
    assert changed.content_hash() != h
    other_k = fixed()
    other_k.k = K + 1
    assert other_k.content_hash() != h
    assert fixed().to("cpu").content_hash() == h
    assert random_jumprelu().to("cpu").content_hash() == random_jumprelu().content_hash()
    assert Neurons(8, top_k=2).content_hash() == Neurons(8, top_k=2).content_hash() != Neurons(8).content_hash()


# -- errors that name the fix -------------------------------------------------------------------


def test_d_in_mismatch_names_the_fix(tmp_path):
    save_topk_sae(random_topk(), tmp_path / "sae")
    with pytest.raises(SparseCoderError, match=rf"SAE at .*sae expects d_in={D_IN}, but hookpoint 'layers.6' has "
                       r"d_model=32; pick the SAE trained for this hookpoint"):
        load_sparse_coder(topk_cfg(str(tmp_path / "sae")), 32, hookpoint="layers.6")


def test_width_mismatch_names_the_fix(tmp_path):
    save_topk_sae(random_topk(), tmp_path / "sae")
    with pytest.raises(SparseCoderError, match=rf"has {N_LATENTS} latents, but the config says n_latents=128; "
                       rf"set n_latents: {N_LATENTS}"):
        load_sparse_coder(topk_cfg(str(tmp_path / "sae"), n_latents=128), D_IN, hookpoint="layers.6")


def test_missing_files_name_what_was_found(tmp_path):
    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / "cfg.json").write_text("{}")
    with pytest.raises(SparseCoderError, match=r"no sparsify SAE \(cfg.json \+ sae.safetensors\) at .*found: cfg.json"):
        load_sparse_coder(topk_cfg(str(tmp_path / "sae")), D_IN)
    with pytest.raises(SparseCoderError, match=r"no JumpReLU SAE weights .*found: nothing"):
        load_sparse_coder(JumpReLUCoderConfig(kind="jumprelu", path=str(tmp_path / "absent"), n_latents=8), D_IN)


def test_neurons_width_must_match_hookpoint():
    coder = load_sparse_coder(NeuronsCoderConfig(kind="neurons", n_latents=1536, top_k=8), 1536)
    assert isinstance(coder, Neurons) and coder.top_k == 8
    with pytest.raises(SparseCoderError, match="set n_latents: 1536 \\(the MLP hidden width\\)"):
        load_sparse_coder(NeuronsCoderConfig(kind="neurons", n_latents=576), 1536, hookpoint="layers.6.mlp")


# -- JumpReLU / ReLU file formats ---------------------------------------------------------------


def test_jumprelu_from_gemma_scope_npz(tmp_path):
    sae = random_jumprelu()
    np.savez(tmp_path / "params.npz", **{k: v.numpy() for k, v in sae.tensors().items()})
    cfg = JumpReLUCoderConfig(kind="jumprelu", path=str(tmp_path), n_latents=N_LATENTS)
    for path in (tmp_path, tmp_path / "params.npz"):  # the directory or the file itself
        loaded = load_sparse_coder(cfg.model_copy(update={"path": str(path)}), D_IN)
        assert isinstance(loaded, JumpReLUSAE) and loaded.content_hash() == sae.content_hash()


def test_saelens_safetensors_jumprelu_and_standard(tmp_path):
    sae = random_jumprelu()
    safetensors.torch.save_file(sae.tensors(), tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "apply_b_dec_to_input": True}))
    cfg = JumpReLUCoderConfig(kind="jumprelu", path=str(tmp_path), n_latents=N_LATENTS)
    loaded = load_sparse_coder(cfg, D_IN)
    assert isinstance(loaded, JumpReLUSAE) and loaded.subtract_b_dec

    relu = {k: v for k, v in sae.tensors().items() if k != "threshold"}
    safetensors.torch.save_file(relu, tmp_path / "sae_weights.safetensors")
    with pytest.raises(SparseCoderError, match="no 'threshold'"):
        load_sparse_coder(cfg, D_IN)
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "standard"}))
    loaded = load_sparse_coder(cfg, D_IN)
    assert type(loaded) is ReLUSAE and loaded.kind == "relu"


# -- remote sources -----------------------------------------------------------------------------


def test_s3_save_and_load(s3_endpoint):
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    sae = random_topk(seed=3)
    uri = save_topk_sae(sae, "s3://autointerp-test/coders", "layers.6", store_options=options)
    assert uri == "s3://autointerp-test/coders/layers.6"
    loaded = load_sparse_coder(topk_cfg(uri), D_IN, options, hookpoint="layers.6")
    assert loaded.content_hash() == sae.content_hash()

    jump = random_jumprelu(seed=4)
    boto3 = pytest.importorskip("boto3")
    buf = safetensors.torch.save(jump.tensors())
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket="autointerp-test", Key="gemma/sae_weights.safetensors", Body=buf
    )
    cfg = JumpReLUCoderConfig(kind="jumprelu", path="s3://autointerp-test/gemma", n_latents=N_LATENTS)
    assert load_sparse_coder(cfg, D_IN, options).content_hash() == jump.content_hash()
    with pytest.raises(SparseCoderError, match="no sparsify SAE"):
        load_sparse_coder(topk_cfg("s3://autointerp-test/coders/layers.7"), D_IN, options)


def test_hub_id_with_subfolder(tmp_path, monkeypatch):
    sae = random_topk()
    save_topk_sae(sae, tmp_path / "snapshot", "layers.6")
    calls = []

    def fake_download(repo_id, allow_patterns=None):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    loaded = load_sparse_coder(topk_cfg("EleutherAI/sae-demo#layers.6"), D_IN)
    assert loaded.content_hash() == sae.content_hash()
    assert calls == [("EleutherAI/sae-demo", ["layers.6", "layers.6/*"])]

    def offline(repo_id, allow_patterns=None):
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(SparseCoderError, match="hub id.*offline mode is enabled.*local directory or an s3://"):
        load_sparse_coder(topk_cfg("EleutherAI/sae-demo#layers.6"), D_IN)
