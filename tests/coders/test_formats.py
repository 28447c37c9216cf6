"""Every coder format through the one loader registry: a round trip of a file written here in the
format's own layout, and malformed files that fail naming the file and the fix, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from support.project import run, small_config

from autointerp_assets.coders import (
    LOADERS,
    JumpReLUSAE,
    Neurons,
    ReLUSAE,
    SparseCoderError,
    TopKSAE,
    load_sparse_coder,
)
from autointerp_assets.config import (
    JumpReLUCoderConfig,
    NeuronsCoderConfig,
    ReLUCoderConfig,
    TopKCoderConfig,
)

D_IN, N, K = 12, 40, 3


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sparsify_files(path: Path, *, transcode: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write cfg.json + sae.safetensors as sparsify does (key names and cfg fields)."""
    g = _g(seed)
    tensors = {"encoder.weight": torch.randn(N, D_IN, generator=g), "encoder.bias": torch.randn(N, generator=g),
               "W_dec": torch.randn(N, D_IN, generator=g), "b_dec": torch.randn(D_IN, generator=g)}
    path.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(tensors, path / "sae.safetensors")
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True, "num_latents": N, "k": K,
           "multi_topk": False, "skip_connection": False, "transcode": transcode, "d_in": D_IN}
    (path / "cfg.json").write_text(json.dumps(cfg))
    return tensors


def saelens_tensors(seed: int = 0, threshold: bool = True) -> dict[str, torch.Tensor]:
    g = _g(seed)
    tensors = {"W_enc": torch.randn(D_IN, N, generator=g), "b_enc": torch.randn(N, generator=g) * 0.1,
               "W_dec": torch.randn(N, D_IN, generator=g), "b_dec": torch.randn(D_IN, generator=g) * 0.1}
    if threshold:
        tensors["threshold"] = torch.rand(N, generator=g)
    return tensors


def x(n: int = 30) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=_g(99))


def dense_latents(coder, inputs: torch.Tensor) -> torch.Tensor:
    lat = coder.encode(inputs)
    return torch.zeros(len(inputs), coder.n_latents).scatter(1, lat.indices, lat.values)


def test_registry_covers_every_configurable_kind():
    assert sorted(LOADERS) == ["jumprelu", "neurons", "relu", "topk"]


@pytest.mark.parametrize("transcode", [False, True])
def test_sparsify_round_trip(tmp_path, transcode):
    tensors = sparsify_files(tmp_path / "sae", transcode=transcode)
    coder = load_sparse_coder(TopKCoderConfig(kind="topk", path=str(tmp_path / "sae"), n_latents=N), D_IN)
    assert isinstance(coder, TopKSAE) and coder.transcoder is transcode and coder.k == K
    assert coder.reads == ("input" if transcode else "output") and coder.writes == "output"
    inputs = x()
    shifted = inputs if transcode else inputs - tensors["b_dec"]
    pre = torch.relu(shifted @ tensors["encoder.weight"].T + tensors["encoder.bias"])
    expected = torch.zeros_like(pre).scatter(1, pre.topk(K).indices, pre.topk(K).values)
    torch.testing.assert_close(dense_latents(coder, inputs), expected)
    torch.testing.assert_close(coder.directions(torch.tensor([3, 5])), tensors["W_dec"][[3, 5]])


def test_gemma_scope_npz_and_saelens_safetensors_round_trip(tmp_path):
    tensors = saelens_tensors()
    np.savez(tmp_path / "params.npz", **{k: v.numpy() for k, v in tensors.items()})
    (tmp_path / "st").mkdir()
    safetensors.torch.save_file(tensors, tmp_path / "st" / "sae_weights.safetensors")
    (tmp_path / "st" / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "d_in": D_IN, "d_sae": N,
                                                          "apply_b_dec_to_input": False}))
    pre = x() @ tensors["W_enc"] + tensors["b_enc"]
    expected = pre * ((pre > tensors["threshold"]) & (pre > 0))
    for path in (tmp_path, tmp_path / "params.npz", tmp_path / "st"):
        coder = load_sparse_coder(JumpReLUCoderConfig(kind="jumprelu", path=str(path), n_latents=N), D_IN)
        assert isinstance(coder, JumpReLUSAE) and coder.reads == "output"
        torch.testing.assert_close(dense_latents(coder, x()), expected)


def test_plain_relu_round_trip(tmp_path):
    tensors = saelens_tensors(threshold=False)
    safetensors.torch.save_file(tensors, tmp_path / "sae_weights.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "standard", "apply_b_dec_to_input": True}))
    coder = load_sparse_coder(ReLUCoderConfig(kind="relu", path=str(tmp_path), n_latents=N), D_IN)
    assert type(coder) is ReLUSAE and coder.subtract_b_dec
    expected = torch.relu((x() - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"])
    torch.testing.assert_close(dense_latents(coder, x()), expected)


def test_neurons_need_no_file():
    coder = load_sparse_coder(NeuronsCoderConfig(kind="neurons", n_latents=D_IN, top_k=2), D_IN)
    assert isinstance(coder, Neurons) and coder.reads == coder.writes == "neurons"
    assert coder.directions(torch.tensor([4])).tolist()[0] == [float(i == 4) for i in range(D_IN)]


# -- malformed files ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def topk_cfg(path: Path) -> TopKCoderConfig:
    return TopKCoderConfig(kind="topk", path=str(path), n_latents=N)


def jumprelu_cfg(path: Path, kind: str = "jumprelu"):
    return (ReLUCoderConfig if kind == "relu" else JumpReLUCoderConfig)(kind=kind, path=str(path), n_latents=N)


def break_sparsify(path: Path, how: str) -> None:
    sparsify_files(path)
    weights, cfg = path / "sae.safetensors", path / "cfg.json"
    if how == "truncated safetensors":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif how == "non-JSON cfg.json":
        cfg.write_text("activation: topk\nk: 3\n")
    elif how == "cfg.json not an object":
        cfg.write_text("[1, 2]")
    elif how == "cfg.json without k":
        cfg.write_text(json.dumps({"activation": "topk", "d_in": D_IN}))
    elif how == "missing tensor":
        tensors = safetensors.torch.load_file(weights)
        del tensors["b_dec"]
        safetensors.torch.save_file(tensors, weights)
    elif how == "cfg d_in disagrees":
        cfg.write_text(json.dumps({"k": K, "d_in": D_IN + 1}))
    elif how == "inconsistent shapes":
        tensors = safetensors.torch.load_file(weights)
        tensors["W_dec"] = tensors["W_dec"][:, :-1].contiguous()
        safetensors.torch.save_file(tensors, weights)


SPARSIFY_CASES = {
    "truncated safetensors": r"sae/sae\.safetensors is truncated: .*re-download or re-save it",
    "non-JSON cfg.json": r"sae/cfg\.json is not valid JSON .*restore the file",
    "cfg.json not an object": r"sae/cfg\.json holds a JSON list, not an object",
    "cfg.json without k": r"sae/cfg\.json has no 'k'",
    "missing tensor": r"sae/sae\.safetensors lacks \['b_dec'\].*not a sparsify SAE",
    "cfg d_in disagrees": rf"sae/cfg\.json says d_in={D_IN + 1}, but the weights have {D_IN}; .*copy both again",
    "inconsistent shapes": r"sae/sae\.safetensors: inconsistent TopK SAE shapes.*copy both again",
}


@pytest.mark.parametrize("how", list(SPARSIFY_CASES))
def test_malformed_sparsify_files_name_the_file_and_the_fix(tmp_path, how):
    break_sparsify(tmp_path / "sae", how)
    before = snapshot(tmp_path)
    with pytest.raises(SparseCoderError, match=SPARSIFY_CASES[how]) as e:
        load_sparse_coder(topk_cfg(tmp_path / "sae"), D_IN)
    assert str(tmp_path / "sae") in str(e.value)
    assert snapshot(tmp_path) == before  # loading only reads


SAELENS_CASES = {
    "truncated npz": ("params.npz", r"params\.npz is truncated or not an \.npz archive .*re-download it"),
    "truncated safetensors": ("sae_weights.safetensors", r"sae_weights\.safetensors is truncated"),
    "non-JSON cfg.json": ("sae_weights.safetensors", r"cfg\.json is not valid JSON"),
    "missing tensor": ("params.npz", r"params\.npz lacks \['W_dec'\].*not a SAELens / Gemma Scope SAE"),
    "cfg d_sae disagrees": ("sae_weights.safetensors", rf"cfg\.json says d_sae={N + 1}, but "
                                                       rf"sae_weights\.safetensors has {N}"),
    "threshold for relu": ("sae_weights.safetensors", r"has a 'threshold', so it is a JumpReLU SAE: set kind: jumprelu"),
    "no threshold for jumprelu": ("params.npz", r"params\.npz: it has no 'threshold'.*set kind: relu"),
}


@pytest.mark.parametrize("how", list(SAELENS_CASES))
def test_malformed_saelens_files_name_the_file_and_the_fix(tmp_path, how):
    name, pattern = SAELENS_CASES[how]
    tensors = saelens_tensors(threshold=how != "no threshold for jumprelu")
    if how == "missing tensor":
        del tensors["W_dec"]
    if name.endswith(".npz"):
        np.savez(tmp_path / name, **{k: v.numpy() for k, v in tensors.items()})
    else:
        safetensors.torch.save_file(tensors, tmp_path / name)
    if how.startswith("truncated"):
        (tmp_path / name).write_bytes((tmp_path / name).read_bytes()[:-64])
    if how == "non-JSON cfg.json":
        (tmp_path / "cfg.json").write_text("{architecture: jumprelu")
    if how == "cfg d_sae disagrees":
        (tmp_path / "cfg.json").write_text(json.dumps({"d_sae": N + 1}))
    before = snapshot(tmp_path)
    with pytest.raises(SparseCoderError, match=pattern):
        load_sparse_coder(jumprelu_cfg(tmp_path, "relu" if how == "threshold for relu" else "jumprelu"), D_IN)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["topk", "jumprelu", "relu"])
def test_d_model_mismatch_names_the_file_and_the_fix(tmp_path, kind):
    if kind == "topk":
        sparsify_files(tmp_path)
        cfg = topk_cfg(tmp_path)
    else:
        safetensors.torch.save_file(saelens_tensors(threshold=kind == "jumprelu"), tmp_path / "sae_weights.safetensors")
        cfg = jumprelu_cfg(tmp_path, kind)
    with pytest.raises(SparseCoderError, match=rf"SAE at {tmp_path} expects d_in={D_IN}, but hookpoint 'layers\.2' "
                                               r"has d_model=576; pick the SAE trained for this hookpoint"):
        load_sparse_coder(cfg, 576, hookpoint="layers.2")


@pytest.mark.slow
def test_sparse_coder_asset_with_a_truncated_file_fails_and_writes_nothing(tmp_path, instance):
    sparsify_files(tmp_path / "sae", transcode=True)
    sae = tmp_path / "sae" / "sae.safetensors"
    sae.write_bytes(sae.read_bytes()[: sae.stat().st_size // 2])
    cfg = small_config().model_copy(update={"hookpoints": {"layers.1": topk_cfg(tmp_path / "sae")}})
    result = run(["sparse_coder"], "layers.1", tmp_path / "store", instance, raise_on_error=False, cfg=cfg)
    assert not result.success
    errors = "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)
    assert f"{tmp_path / 'sae'}/sae.safetensors is truncated" in errors and "re-download" in errors
    assert not (tmp_path / "store").exists()
