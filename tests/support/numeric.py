"""Comparing top-k selections that two computations made, robustly to near-ties.

Two correct computations of the same pre-activations (a streamed bf16 pass and a dense
reference, or one CPU's kernels and another's) differ by rounding; where two latents are
within rounding of the k-th largest value, either may be picked. A comparison that demands
the same indices therefore passes on one machine and fails on the next. This one demands
what is true on every machine: the same values, and a choice that a top-k could have made.
"""

from __future__ import annotations

import torch


def assert_same_topk(got: torch.Tensor, reference: torch.Tensor, k: int, atol: float, rtol: float) -> None:
    """got [..., n]: a top-k kept (zeros elsewhere); reference [..., n]: the dense values it was taken from.

    - at most k entries per row are kept;
    - each kept value equals the reference at that latent, within atol + rtol * |reference|;
    - every latent clearly inside the reference's top-k (above the k-th value by more than the
      tolerance, and clearly positive) is kept; every kept latent is at least the k-th value
      minus the tolerance. Near-ties at the boundary may go either way.
    """
    assert got.shape == reference.shape, (got.shape, reference.shape)
    kept = got > 0
    assert (kept.sum(-1) <= k).all(), "more than k latents kept in a row"
    tol = atol + rtol * reference.abs()
    mismatch = kept & ((got - reference).abs() > tol)
    assert not mismatch.any(), f"{int(mismatch.sum())} kept values differ from the reference"
    kth = reference.topk(k, dim=-1).values[..., -1:]  # [..., 1]
    kth_tol = atol + rtol * kth.abs()
    clearly_in = (reference > kth + kth_tol) & (reference > tol)
    missed = clearly_in & ~kept
    assert not missed.any(), f"{int(missed.sum())} latents clearly in the top-{k} were not kept"
    wrong = kept & (reference < kth - kth_tol)
    assert not wrong.any(), f"{int(wrong.sum())} kept latents are clearly outside the top-{k}"
