"""Train a TopK SAE on one hookpoint's activations, on CPU, in minutes.

The recipe follows sparsify / Gao et al. (2024) at small scale:
- decoder rows start unit-norm and random, the encoder starts as their copy (encoder =
  decoder transposed, in the [n_latents, d_in] layout both share), b_dec starts at the
  data mean, so the first step already reconstructs something;
- the loss is the batch FVU, which is invariant to the activations' scale, so no input
  normalisation is needed;
- Adam; after each step decoder rows are renormalised to unit norm (and the gradient
  component along each row is removed first, so the step is not wasted on the norm);
- AuxK: latents that have not fired for `DEAD_AFTER_TOKENS` training tokens are "dead";
  the top `d_in // 2` dead latents by pre-activation are asked to reconstruct the
  residual, weighted by `AUXK_ALPHA`. This revives latents that the top-k never picks.

A random 10% of the tokens is held out and only used for `TrainStats`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..coders import TopKSAE, fvu
from ..config import TrainTopKCoderConfig

HELDOUT_FRACTION = 0.1
DEAD_AFTER_TOKENS = 16_384  # at the default k/n = 32/2048, a latent at 1% of average density fires ~2.6 times here
AUXK_ALPHA = 1 / 32  # the AuxK weight of Gao et al.
_EVAL_ROWS = 4096  # held-out rows per encode call, to bound the [rows, n_latents] pre-activation


@dataclass(frozen=True)
class TrainStats:
    fvu: float  # fraction of variance unexplained on the held-out tokens
    l0: float  # mean latents with a positive value per held-out token (<= k)
    dead_fraction: float  # latents that never take a positive value on any held-out token
    steps: int
    seconds: float
    train_tokens: int
    heldout_tokens: int


def _fvu_loss(x: Tensor, x_hat: Tensor, total_variance: Tensor) -> Tensor:
    return (x - x_hat).pow(2).sum() / total_variance


@torch.no_grad()
def evaluate(sae: TopKSAE, x: Tensor) -> tuple[float, float, float]:
    """(fvu, l0, dead_fraction) of `sae` on x [N, d_in]."""
    fired = torch.zeros(sae.n_latents, dtype=torch.bool)
    recon, active = [], 0
    for chunk in x.split(_EVAL_ROWS):
        latents = sae.encode(chunk)
        recon.append(sae.decode(latents.values, latents.indices))  # [rows, d_in]
        on = latents.values > 0  # [rows, k]
        active += int(on.sum())
        fired[latents.indices[on]] = True
    return fvu(x, torch.cat(recon)), active / max(len(x), 1), 1.0 - fired.float().mean().item()


def train_topk_sae(
    activations: Tensor,
    cfg: TrainTopKCoderConfig,
    log: Callable[[str], None] | None = None,
) -> tuple[TopKSAE, TrainStats]:
    """Train on activations [N, d_in] (any float dtype; trained in float32), deterministic in cfg.seed."""
    start = time.perf_counter()
    x_all = activations.detach().to("cpu", torch.float32)  # [N, d_in]
    n_tokens, d_in = x_all.shape
    if n_tokens < 2:
        raise ValueError(f"need at least 2 activation rows to train an SAE, got {n_tokens}")
    if cfg.k > cfg.n_latents:
        raise ValueError(f"k={cfg.k} exceeds n_latents={cfg.n_latents}; lower k or raise n_latents")
    gen = torch.Generator().manual_seed(cfg.seed)

    order = torch.randperm(n_tokens, generator=gen)
    n_heldout = max(1, round(n_tokens * HELDOUT_FRACTION))
    x_heldout, x_train = x_all[order[:n_heldout]], x_all[order[n_heldout:]]  # [H, d_in], [T, d_in]
    n_train = len(x_train)

    W_dec = torch.randn(cfg.n_latents, d_in, generator=gen)  # [n, d_in]
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.clone().requires_grad_()  # [n, d_in]
    b_enc = torch.zeros(cfg.n_latents, requires_grad=True)  # [n]
    b_dec = x_train.mean(dim=0).requires_grad_()  # [d_in]
    W_dec.requires_grad_()
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=cfg.lr)

    batch = min(cfg.batch_tokens, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    total_steps = steps_per_epoch * cfg.epochs
    log_every = max(1, total_steps // 20)
    k_aux = min(d_in // 2, cfg.n_latents)
    tokens_since_fired = torch.zeros(cfg.n_latents, dtype=torch.long)  # [n]
    step = 0
    for epoch in range(cfg.epochs):
        for idx in torch.randperm(n_train, generator=gen).split(batch):
            x = x_train[idx]  # [B, d_in]
            total_variance = (x - x.mean(dim=0)).pow(2).sum()
            pre = torch.addmm(b_enc, x - b_dec, W_enc.T)  # [B, n]
            top_pre, top_idx = pre.topk(cfg.k, dim=1)  # [B, k]
            top_acts = top_pre.relu()
            x_hat = F.embedding_bag(top_idx, W_dec, per_sample_weights=top_acts, mode="sum") + b_dec  # [B, d_in]
            loss = _fvu_loss(x, x_hat, total_variance)
            batch_fvu = loss.item()

            fired = torch.zeros(cfg.n_latents, dtype=torch.bool)
            fired[top_idx[top_acts > 0]] = True
            tokens_since_fired += len(x)
            tokens_since_fired[fired] = 0
            dead = tokens_since_fired >= DEAD_AFTER_TOKENS  # [n]
            n_dead = int(dead.sum())
            if n_dead:
                # Dead latents model what the live ones missed; the residual is a fixed target.
                residual = (x - x_hat).detach()  # [B, d_in]
                aux_pre, aux_idx = pre.masked_fill(~dead, -math.inf).topk(min(k_aux, n_dead), dim=1)
                aux_hat = F.embedding_bag(aux_idx, W_dec, per_sample_weights=aux_pre.relu(), mode="sum")
                scale = min(n_dead / k_aux, 1.0)  # weaker when only a few latents are dead
                loss = loss + AUXK_ALPHA * scale * _fvu_loss(residual, aux_hat, total_variance)

            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                assert W_dec.grad is not None
                W_dec.grad -= (W_dec.grad * W_dec).sum(dim=1, keepdim=True) * W_dec
            opt.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)
            step += 1
            if log is not None and (step % log_every == 0 or step == total_steps):
                log(
                    f"sae step {step}/{total_steps} (epoch {epoch + 1}/{cfg.epochs}): "
                    f"batch fvu {batch_fvu:.4f}, dead {n_dead / cfg.n_latents:.1%}"
                )

    sae = TopKSAE(W_enc.detach(), b_enc.detach(), W_dec.detach(), b_dec.detach(), k=cfg.k)
    heldout_fvu, l0, dead_fraction = evaluate(sae, x_heldout)
    stats = TrainStats(
        fvu=heldout_fvu,
        l0=l0,
        dead_fraction=dead_fraction,
        steps=total_steps,
        seconds=time.perf_counter() - start,
        train_tokens=n_train,
        heldout_tokens=n_heldout,
    )
    if log is not None:
        log(
            f"sae trained: held-out fvu {stats.fvu:.4f}, l0 {stats.l0:.1f}, "
            f"dead {stats.dead_fraction:.1%}, {stats.steps} steps in {stats.seconds:.1f}s"
        )
    return sae, stats
