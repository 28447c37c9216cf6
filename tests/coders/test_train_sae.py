"""TopK SAE training on synthetic data built from a known dictionary."""

from __future__ import annotations

import pytest
import torch

from autointerp_assets.coders.train import TrainStats, train_topk_sae
from autointerp_assets.config import TrainTopKCoderConfig

D_IN, N_ATOMS, K = 64, 32, 4


def synthetic(n_tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x [n_tokens, D_IN]: K random unit atoms per token with magnitudes in [0.5, 1.5], plus an offset."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(N_ATOMS, D_IN, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    which = torch.rand(n_tokens, N_ATOMS, generator=g).argsort(dim=1)[:, :K]  # [n_tokens, K]
    magnitude = torch.rand(n_tokens, K, generator=g) + 0.5
    x = (magnitude[..., None] * atoms[which]).sum(dim=1) + 0.5  # [n_tokens, D_IN]
    return x, atoms


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The matrices are tiny; extra threads only spin against other work on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CFG = TrainTopKCoderConfig(n_latents=2 * N_ATOMS, k=K, train_tokens=4096, epochs=10, lr=1e-2, batch_tokens=256, seed=0)


@pytest.fixture(scope="module")
def trained(one_thread):
    x, atoms = synthetic(4096)
    lines: list[str] = []
    sae, stats = train_topk_sae(x, CFG, log=lines.append)
    return x, atoms, sae, stats, lines


def test_recovers_the_dictionary(trained):
    _, atoms, sae, stats, _ = trained
    assert stats.fvu < 0.02
    # Every true atom has a decoder row pointing the same way.
    best_cosine = (atoms @ sae.W_dec.T).max(dim=1).values  # [N_ATOMS]
    assert best_cosine.min() > 0.95


def test_stats_and_logging(trained):
    _, _, sae, stats, lines = trained
    assert isinstance(stats, TrainStats)
    assert stats.l0 == pytest.approx(K, abs=0.1)
    # 64 latents for 32 atoms: about half stay unused on held-out data.
    assert 0.2 < stats.dead_fraction < 0.8
    assert stats.steps == CFG.epochs * -(-stats.train_tokens // CFG.batch_tokens)
    assert stats.heldout_tokens == 410 and stats.train_tokens == 4096 - 410
    assert any(line.startswith("sae step") for line in lines) and lines[-1].startswith("sae trained")
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.n_latents), atol=1e-5)


def test_deterministic_in_the_seed(trained):
    x, _, sae, stats, _ = trained
    again, again_stats = train_topk_sae(x, CFG)
    assert again.content_hash() == sae.content_hash() and again_stats.fvu == stats.fvu
    other, _ = train_topk_sae(x, CFG.model_copy(update={"seed": 1}))
    assert other.content_hash() != sae.content_hash()


def test_rejects_k_above_width():
    x, _ = synthetic(64)
    with pytest.raises(ValueError, match="k=8 exceeds n_latents=4"):
        train_topk_sae(x, CFG.model_copy(update={"n_latents": 4, "k": 8}))
