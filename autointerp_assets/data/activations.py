"""Model -> hookpoint -> sparse coder -> non-zero (seq, pos, latent, value), streamed.

The main thread runs the forward pass and puts each batch into a bounded queue. A background
writer thread encodes it on a GPU (where the device queues the work; it copies the [tokens, k]
values and indices to pinned host memory asynchronously), turns the result into rows and hands
a chunk to `sink` every `chunk_tokens` tokens, all while the main thread runs the next batch's
forward pass. On a CPU the main thread encodes, with all the cores, before it queues: the
forward pass already keeps every core busy, so an encode beside it only oversubscribes them
(measured at `layers.6`, bench/RESULTS.md). Memory is bounded by the queue (`max_pending`
batches) plus one chunk buffer per hookpoint: a dense [tokens x latents] tensor never reaches
the host, and the pre-activations are encoded in slices of at most `ENCODE_ELEMENTS`.
No device sync is needed per batch for TopK coders: zeros are filtered on the host.

Position 0 of every window is skipped (`FIRST_POS`): without a BOS token the first
position acts as an attention sink whose hidden state has an outsized norm, and it
would otherwise dominate every latent's top examples and the SAE's training loss.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from ..coders import SparseCoder
from .subject import Capture, Subject, forward_captures

CODE_VERSION = "2"  # bump when a change here changes what the stage writes: its asset and all below go stale
ChunkSink = Callable[[str, int, pl.DataFrame], None]  # (hookpoint, chunk index, rows)
FIRST_POS = 1
ACTIVATION_SCHEMA = {"seq": pl.Int64, "pos": pl.Int32, "latent": pl.Int32, "value": pl.Float32}
ENCODE_ELEMENTS = 1 << 28  # pre-activation entries per encode slice: 512 MiB in bf16


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
class _Batch:
    """One batch of one hookpoint, on its way to the host: hidden states to encode, or (CPU) the
    coder's output already."""

    hookpoint: str
    seq_ids: np.ndarray  # [B] global window ids
    width: int  # W = positions per window after FIRST_POS
    hidden: torch.Tensor | None = None  # [B*W, d] on the subject's device
    encoded: tuple[torch.Tensor, torch.Tensor, int] | None = None  # values, indices [B*W, k]; dropped


@dataclass
class _Buffer:
    """Column parts of the rows not yet written; one DataFrame is built per chunk, not per batch."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: {c: [] for c in ACTIVATION_SCHEMA})
    tokens: int = 0

    def add(self, seq_ids: np.ndarray, width: int, values: np.ndarray, indices: np.ndarray) -> int:
        """[B*W, k] values and indices -> one row per active (token, latent), token-major."""
        n, k = values.shape
        active = values > 0
        if active.all():  # TopK on a real coder: every slot is active, so no index arithmetic per entry
            flat_token = np.repeat(np.arange(n), k)
            latent, value = indices.reshape(-1), values.reshape(-1)
        else:
            flat_token, slot = np.nonzero(active)  # [nnz], [nnz]
            latent, value = indices[flat_token, slot], values[flat_token, slot]
        self.parts["seq"].append(seq_ids[flat_token // width])
        self.parts["pos"].append((flat_token % width + FIRST_POS).astype(np.int32))
        self.parts["latent"].append(latent)
        self.parts["value"].append(value)
        self.tokens += n
        return len(flat_token)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({c: np.concatenate(p) for c, p in self.parts.items()}, schema=ACTIVATION_SCHEMA)


class _Writer(threading.Thread):
    """Encoding, rows and chunks on a background thread, fed through a bounded queue."""

    def __init__(self, coders: dict[str, SparseCoder], stats: dict[str, HookpointStats], chunk_tokens: int,
                 sink: ChunkSink, max_pending: int):
        super().__init__(name="activations-writer", daemon=True)
        self.coders, self.stats, self.chunk_tokens, self.sink = coders, stats, chunk_tokens, sink
        self.buffers = {hp: _Buffer() for hp in stats}
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None

    def put(self, batch: _Batch) -> None:
        while True:
            self.raise_error()
            try:
                self.queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue

    def raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the activations writer failed: {type(self.error).__name__}: {self.error}") \
                from self.error

    def run(self) -> None:
        try:
            while (batch := self.queue.get()) is not None:
                hp = batch.hookpoint
                with torch.inference_mode():
                    values, indices, dropped = batch.encoded or _encode(self.coders[hp], batch.hidden)
                    host_values, host_indices, ready = _to_host(values, indices)  # [B*W, k] each
                del batch.hidden, batch.encoded, values, indices
                if ready is not None:
                    ready.synchronize()
                buf = self.buffers[hp]
                self.stats[hp].nnz += buf.add(batch.seq_ids, batch.width, host_values.numpy(), host_indices.numpy())
                self.stats[hp].dropped += dropped
                if buf.tokens >= self.chunk_tokens:
                    self.flush(hp)
            for hp in self.buffers:
                self.flush(hp)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            self.error = e
            while self.queue.get() is not None:  # unblock the producer until it sends the end
                pass

    def flush(self, hp: str) -> None:
        buf = self.buffers[hp]
        if buf.tokens:
            self.sink(hp, self.stats[hp].n_chunks, buf.frame())
            self.stats[hp].n_chunks += 1
        self.buffers[hp] = _Buffer()


def _to_host(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
    """Copy [N, k] values (float32) and indices (int32) to the host; asynchronous from CUDA."""
    values, indices = values.float(), indices.int()
    if values.device.type != "cuda":
        return values.cpu(), indices.cpu(), None
    host_values = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host_indices = torch.empty(indices.shape, dtype=indices.dtype, pin_memory=True)
    host_values.copy_(values, non_blocking=True)
    host_indices.copy_(indices, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host_values, host_indices, ready


def _encode(coder: SparseCoder, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """h [N, d] -> values, indices [N, k], dropped; in slices, so [slice, n_latents] fits the device."""
    step = max(1, ENCODE_ELEMENTS // coder.n_latents)
    if len(h) <= step:
        latents = coder.encode(h)
        return latents.values, latents.indices, latents.dropped
    parts = [coder.encode(h[lo : lo + step]) for lo in range(0, len(h), step)]
    k = max(p.values.shape[1] for p in parts)  # coders without a fixed k shrink k per slice
    pad = [(torch.nn.functional.pad(p.values, (0, k - p.values.shape[1])),
            torch.nn.functional.pad(p.indices, (0, k - p.indices.shape[1]))) for p in parts]
    return (torch.cat([v for v, _ in pad]), torch.cat([i for _, i in pad]), sum(p.dropped for p in parts))


def stream_activations(
    subject: Subject,
    tokens: np.ndarray,  # [n_seq, ctx_len] int32 (a memory map is fine)
    seq_ids: np.ndarray,  # [n_seq] global window ids
    coders: dict[str, tuple[Capture, SparseCoder]],
    batch_size: int,
    chunk_tokens: int,
    sink: ChunkSink,
    log: Callable[[str], None] = lambda _: None,
    max_pending: int = 4,
) -> dict[str, HookpointStats]:
    n_seq, ctx_len = tokens.shape
    stats = {hp: HookpointStats(coder.n_latents) for hp, (_, coder) in coders.items()}
    captures = [capture for capture, _ in coders.values()]
    seq_ids = np.asarray(seq_ids, dtype=np.int64)
    encode_here = subject.device.type == "cpu"  # see the module docstring
    writer = _Writer({hp: coder for hp, (_, coder) in coders.items()}, stats, chunk_tokens, sink, max_pending)
    writer.start()
    start, last_log = time.perf_counter(), 0.0
    try:
        for lo in range(0, n_seq, batch_size):
            batch = torch.from_numpy(np.asarray(tokens[lo : lo + batch_size], dtype=np.int64))  # [B, T]
            hidden = forward_captures(subject, batch, captures)  # hookpoint -> [B, T, d]
            for hp, (_, coder) in coders.items():
                h = hidden[hp][:, FIRST_POS:]  # [B, W, d], W = T - FIRST_POS
                b, w, d = h.shape
                stats[hp].n_tokens += b * w
                batch_ids = seq_ids[lo : lo + batch_size]
                if encode_here:
                    with torch.inference_mode():
                        writer.put(_Batch(hp, batch_ids, w, encoded=_encode(coder, h.reshape(b * w, d))))
                else:
                    writer.put(_Batch(hp, batch_ids, w, hidden=h.reshape(b * w, d)))
            elapsed = time.perf_counter() - start
            if elapsed - last_log > 10 or lo + batch_size >= n_seq:
                last_log = elapsed
                done = min(lo + batch_size, n_seq)
                rate = done * ctx_len / elapsed
                log(f"activations: {done}/{n_seq} windows, {rate:,.0f} tok/s, "
                    f"ETA {(n_seq - done) * ctx_len / rate:,.0f} s")
    finally:
        writer.queue.put(None)
        writer.join()
    writer.raise_error()
    return stats


def collect_hidden(
    subject: Subject, tokens: np.ndarray, capture: Capture, batch_size: int, max_tokens: int
) -> torch.Tensor:
    """Dense hookpoint activations [N, d] float32 for SAE training (N <= max_tokens)."""
    n_seq = min(len(tokens), -(-max_tokens // (tokens.shape[1] - FIRST_POS)))
    parts = []
    for lo in range(0, n_seq, batch_size):
        batch = torch.from_numpy(np.asarray(tokens[lo : min(lo + batch_size, n_seq)], dtype=np.int64))
        h = forward_captures(subject, batch, [capture])[capture.hookpoint][:, FIRST_POS:]
        parts.append(h.reshape(-1, h.shape[-1]).float().cpu())
    return torch.cat(parts)[:max_tokens]
