"""Model -> hookpoint -> sparse coder -> non-zero (seq, pos, latent, value), streamed.

Memory is bounded by one batch plus one chunk buffer per hookpoint: a dense
[tokens x latents] tensor is never built (TopK coders hand back their indices),
and rows go to `sink` every `chunk_tokens` tokens. One forward pass serves every
hookpoint requested, stopping after the deepest.

Position 0 of every window is skipped (`FIRST_POS`): without a BOS token the first
position acts as an attention sink whose hidden state has an outsized norm, and it
would otherwise dominate every latent's top examples and the SAE's training loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from ..coders import SparseCoder
from .subject import Capture, Subject, forward_captures

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
ChunkSink = Callable[[str, int, pl.DataFrame], None]  # (hookpoint, chunk index, rows)
FIRST_POS = 1
ACTIVATION_SCHEMA = {"seq": pl.Int64, "pos": pl.Int32, "latent": pl.Int32, "value": pl.Float32}


@dataclass
class HookpointStats:
    n_latents: int
    n_tokens: int = 0
    nnz: int = 0
    n_chunks: int = 0
    dropped: int = 0  # active latents cut by a coder's max_active cap (JumpReLU, ReLU, neurons)

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_tokens * self.n_latents)


@dataclass
class _Buffer:
    """Column parts of the rows not yet written; one DataFrame is built per chunk, not per batch."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: {c: [] for c in ACTIVATION_SCHEMA})
    tokens: int = 0

    def add(self, seq_ids: np.ndarray, values: torch.Tensor, indices: torch.Tensor, width: int) -> int:
        """values, indices [B*W, k] over positions FIRST_POS.. -> one row per active (token, latent).

        The selection runs where the tensors live (GPU included); only the non-zeros cross to the host.
        """
        flat_token, slot = (values > 0).nonzero(as_tuple=True)  # [nnz], [nnz]
        coords = torch.stack([flat_token // width, flat_token % width + FIRST_POS, indices[flat_token, slot]]).cpu()
        self.parts["seq"].append(seq_ids[coords[0].numpy()])
        self.parts["pos"].append(coords[1].numpy().astype(np.int32))
        self.parts["latent"].append(coords[2].numpy().astype(np.int32))
        self.parts["value"].append(values[flat_token, slot].float().cpu().numpy())
        return len(flat_token)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({c: np.concatenate(p) for c, p in self.parts.items()}, schema=ACTIVATION_SCHEMA)


def stream_activations(
    subject: Subject,
    tokens: np.ndarray,  # [n_seq, ctx_len] int32
    seq_ids: np.ndarray,  # [n_seq] global window ids
    coders: dict[str, tuple[Capture, SparseCoder]],
    batch_size: int,
    chunk_tokens: int,
    sink: ChunkSink,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, HookpointStats]:
    n_seq, ctx_len = tokens.shape
    stats = {hp: HookpointStats(coder.n_latents) for hp, (_, coder) in coders.items()}
    buffers = {hp: _Buffer() for hp in coders}
    captures = [capture for capture, _ in coders.values()]

    def flush(hp: str) -> None:
        buf = buffers[hp]
        if buf.tokens:
            sink(hp, stats[hp].n_chunks, buf.frame())
            stats[hp].n_chunks += 1
        buffers[hp] = _Buffer()

    start, last_log = time.perf_counter(), 0.0
    for lo in range(0, n_seq, batch_size):
        batch = torch.from_numpy(tokens[lo : lo + batch_size].astype(np.int64))  # [B, T]
        hidden = forward_captures(subject, batch, captures)  # hookpoint -> [B, T, d]
        for hp, (_, coder) in coders.items():
            h = hidden[hp][:, FIRST_POS:]  # [B, W, d], W = T - FIRST_POS
            latents = coder.encode(h.reshape(-1, h.shape[-1]))  # values, indices [B*W, k]
            buf = buffers[hp]
            stats[hp].nnz += buf.add(seq_ids[lo : lo + batch_size], latents.values, latents.indices, h.shape[1])
            buf.tokens += h.shape[0] * h.shape[1]
            stats[hp].n_tokens += h.shape[0] * h.shape[1]
            stats[hp].dropped += latents.dropped
            if buf.tokens >= chunk_tokens:
                flush(hp)
        elapsed = time.perf_counter() - start
        if elapsed - last_log > 10 or lo + batch_size >= n_seq:
            last_log = elapsed
            done = min(lo + batch_size, n_seq)
            rate = done * ctx_len / elapsed
            log(f"activations: {done}/{n_seq} windows, {rate:,.0f} tok/s, ETA {(n_seq - done) * ctx_len / rate:,.0f} s")
    for hp in coders:
        flush(hp)
    return stats


def collect_hidden(
    subject: Subject, tokens: np.ndarray, capture: Capture, batch_size: int, max_tokens: int
) -> torch.Tensor:
    """Dense hookpoint activations [N, d] float32 for SAE training (N <= max_tokens)."""
    n_seq = min(len(tokens), -(-max_tokens // (tokens.shape[1] - FIRST_POS)))
    parts = []
    for lo in range(0, n_seq, batch_size):
        batch = torch.from_numpy(tokens[lo : min(lo + batch_size, n_seq)].astype(np.int64))
        h = forward_captures(subject, batch, [capture])[capture.hookpoint][:, FIRST_POS:]
        parts.append(h.reshape(-1, h.shape[-1]).float().cpu())
    return torch.cat(parts)[:max_tokens]
