"""A sparsify transcoder at `layers.N.mlp` reads the MLP's input, checked through the real
pipeline (sparse_coder -> activations) against a dense reference on the real SmolLM2."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
import torch
from support.project import run, small_config

from autointerp_assets.coders import TopKSAE, save_topk_sae
from autointerp_assets.config import TopKCoderConfig
from autointerp_assets.data.activations import FIRST_POS
from autointerp_assets.data.corpus import ANALYSIS
from autointerp_assets.store import layout
from autointerp_assets.store.activations import read_latent_range
from autointerp_assets.store.store import ArtifactStore

pytestmark = pytest.mark.slow
LAYER_INDEX, HOOKPOINT, N_LATENTS, K = 3, "layers.3.mlp", 64, 4


def random_transcoder(d: int) -> TopKSAE:
    g = torch.Generator().manual_seed(7)
    w = torch.randn(N_LATENTS, d, generator=g) / d**0.5
    return TopKSAE(w, torch.randn(N_LATENTS, generator=g) * 0.1, torch.randn(N_LATENTS, d, generator=g),
                   torch.randn(d, generator=g), K, transcoder=True)


def mlp_input_and_output(subject, tokens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense MLP input and output of layer 3 [n, T, d] from an unhooked full forward: the input is read
    where the MLP's first projection reads it, then checked against the residual stream algebra."""
    layer = subject.model.model.layers[LAYER_INDEX]
    seen: list[torch.Tensor] = []
    handle = layer.mlp.gate_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.inference_mode():
            out = subject.model(torch.from_numpy(tokens.astype(np.int64)), output_hidden_states=True)
            x = seen[0]  # [n, T, d]
            mlp_out = layer.mlp(x)
            # residual after attention = residual after the layer - MLP output; the MLP reads its norm
            mid = out.hidden_states[LAYER_INDEX + 1] - mlp_out
            torch.testing.assert_close(layer.post_attention_layernorm(mid).float(), x.float(), atol=0.1, rtol=0.05)
    finally:
        handle.remove()
    return x.float(), mlp_out.float()


def assert_topk_of(rows: pl.DataFrame, dense: torch.Tensor, k: int, tol: float) -> None:
    """Each token's reported latents are its top-k of `dense` [n, T', n_latents] (ties within tol)."""
    kth = dense.topk(k, dim=-1).values[..., -1]  # [n, T']
    for seq, pos, latent, value in rows.iter_rows():
        ref = dense[seq, pos - FIRST_POS]
        assert abs(float(ref[latent]) - value) <= tol + 0.02 * abs(value)
        assert float(ref[latent]) >= float(kth[seq, pos - FIRST_POS]) - tol


def test_transcoder_at_mlp_encodes_the_mlp_input(data_root, instance, tmp_path):
    store_root = tmp_path / "store"
    shutil.copytree(data_root / "corpus", store_root / "corpus")
    cfg = small_config()
    transcoder = random_transcoder(576)
    save_topk_sae(transcoder, tmp_path / "transcoder")
    cfg = cfg.model_copy(update={"hookpoints": {**cfg.hookpoints, HOOKPOINT: TopKCoderConfig(
        kind="topk", path=str(tmp_path / "transcoder"), n_latents=N_LATENTS)}})
    run(["sparse_coder"], HOOKPOINT, store_root, instance, cfg=cfg)
    result = run(["activations"], HOOKPOINT, store_root, instance, cfg=cfg)
    assert result.success
    store = ArtifactStore(str(store_root))
    manifest = layout.read_manifest(store, HOOKPOINT)
    rows = pl.concat(list(read_latent_range(store, HOOKPOINT, manifest, range(manifest["n_latents"]))))
    corpus = layout.read_corpus(store)
    tokens, seq_ids = layout.analysis_tokens(corpus)
    tokens = np.asarray(tokens)  # [n, T]: every lazily read row
    assert list(seq_ids) == sorted(list(seq_ids))
    rows = rows.with_columns(pl.col("seq").replace_strict(list(seq_ids), list(range(len(seq_ids)))))

    from resources.subject_model import SubjectModel

    subject = SubjectModel(model_id="smollm2-135m-instruct").load()
    x, mlp_out = mlp_input_and_output(subject, tokens)
    assert len(tokens) == corpus.token_array(ANALYSIS).shape[0]

    def dense(h: torch.Tensor) -> torch.Tensor:  # no b_dec subtraction for a transcoder
        return torch.relu(h[:, FIRST_POS:] @ transcoder.encoder_weight.T + transcoder.encoder_bias)

    n_tokens = tokens.shape[0] * (tokens.shape[1] - FIRST_POS)
    assert rows.group_by("seq", "pos").len().height == n_tokens  # every token has its k latents
    assert_topk_of(rows, dense(x), K, tol=0.05)
    # The old behaviour, encoding the MLP output, picks other latents: the check can tell them apart.
    wrong = dense(mlp_out).topk(K, dim=-1).indices  # [n, T', K]
    got = torch.zeros_like(wrong)
    counts: dict[tuple[int, int], int] = {}
    for seq, pos, latent in rows.select("seq", "pos", "latent").iter_rows():
        slot = counts.get((seq, pos), 0)
        got[seq, pos - FIRST_POS, slot] = latent
        counts[(seq, pos)] = slot + 1
    shared = (got.unsqueeze(-1) == wrong.unsqueeze(-2)).any(-1).float().mean()
    assert shared < 0.5, f"MLP-output latents share {float(shared):.2f} of the MLP-input ones"
