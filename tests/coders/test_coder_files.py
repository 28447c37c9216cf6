"""Coder files that cannot be read fail naming the file and the fix; the header check reads no weights."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from support.inputs import sae_dir, truncate

from autointerp_assets.coders import SparseCoderError, check_coder_files, load_sparse_coder
from autointerp_assets.config import JumpReLUCoderConfig, TopKCoderConfig

D = 576


def topk(path, n=64) -> TopKCoderConfig:
    return TopKCoderConfig(kind="topk", path=str(path), n_latents=n)


def test_a_good_sae_passes_both_checks(tmp_path):
    directory = sae_dir(tmp_path)
    check_coder_files(topk(directory))
    assert load_sparse_coder(topk(directory), D).n_latents == 64


@pytest.mark.parametrize("spoil, expected", [
    (lambda d: truncate(d / "sae.safetensors"), r"sae/sae.safetensors is truncated: its header describes \d+ bytes"),
    (lambda d: (d / "sae.safetensors").write_bytes(b"\x01\x02"), "sae.safetensors is truncated or not a safetensors"),
    (lambda d: (d / "sae.safetensors").write_bytes(b"\xff" * 64), "sae.safetensors is truncated or not a safetensors"),
    (lambda d: (d / "cfg.json").write_text('{"k": 4'), r"sae/cfg.json is not valid JSON \(.*\); restore the file"),
    (lambda d: (d / "cfg.json").write_text("[1, 2]"), "cfg.json holds a JSON list, not an object"),
    (lambda d: (d / "cfg.json").write_text('{"d_in": 576}'), "cfg.json has no 'k'"),
    (lambda d: (d / "cfg.json").unlink(), r"no sparsify SAE \(cfg.json \+ sae.safetensors\) at .*found: sae.safetensors"),
])
def test_a_spoiled_file_is_named_with_the_fix(tmp_path, spoil, expected):
    directory = sae_dir(tmp_path)
    spoil(directory)
    for check in (lambda: check_coder_files(topk(directory)), lambda: load_sparse_coder(topk(directory), D)):
        with pytest.raises(SparseCoderError, match=expected):
            check()


def test_the_width_is_checked_from_the_header(tmp_path):
    with pytest.raises(SparseCoderError, match=r"has 64 latents, but hookpoints.layers.6.n_latents is 32; set n_latents: 64"):
        check_coder_files(topk(sae_dir(tmp_path), n=32), hookpoint="layers.6")


def test_a_truncated_npz_is_named(tmp_path):
    arrays = {"W_enc": np.zeros((D, 8), np.float32), "b_enc": np.zeros(8, np.float32),
              "W_dec": np.zeros((8, D), np.float32), "b_dec": np.zeros(D, np.float32),
              "threshold": np.zeros(8, np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (tmp_path / "params.npz").write_bytes(buffer.getvalue()[:1000])
    cfg = JumpReLUCoderConfig(kind="jumprelu", path=str(tmp_path), n_latents=8)
    for check in (lambda: check_coder_files(cfg), lambda: load_sparse_coder(cfg, D)):
        with pytest.raises(SparseCoderError, match="params.npz is truncated or not an .npz archive"):
            check()
    (tmp_path / "params.npz").write_bytes(buffer.getvalue())
    check_coder_files(cfg)
    assert load_sparse_coder(cfg, D).n_latents == 8
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "jumprelu"})[:-1])
    with pytest.raises(SparseCoderError, match="cfg.json is not valid JSON"):
        load_sparse_coder(cfg, D)
