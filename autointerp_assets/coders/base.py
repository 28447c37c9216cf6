"""What every sparse coder is: x [N, d_in] -> `SparseLatents` ([N, k] values and indices).

The activations stage never sees a dense [N, n_latents] matrix and never cares which
format a coder came from; each format is one module beside this one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from ..errors import UserError

# Cap on latents returned per token by coders without a fixed k (JumpReLU, ReLU, neurons).
# Typical SAE L0 is 20-150; entries beyond the cap are counted in `SparseLatents.dropped`.
DEFAULT_MAX_ACTIVE = 256
_HASH_HEX = 16


# Which tensor of the hooked module a coder reads, and where its decoder writes (data.subject.Where):
# an SAE reads and reconstructs the module's output; a transcoder reads the module's input and
# writes its output; raw neurons are the MLP's hidden units (the down projection's input).
Reads = Literal["output", "input", "neurons"]
Writes = Literal["output", "neurons"]


class SparseCoderError(UserError, ValueError):
    """A coder cannot be loaded or does not fit its hookpoint; the message names the fix."""


@dataclass
class SparseLatents:
    """The active latents of each row, padded: entries with value <= 0 are inactive."""

    values: Tensor  # [N, k] float32
    indices: Tensor  # [N, k] int64
    dropped: int = 0  # active entries cut by a max_active cap (always 0 for TopK)

    def nonzero(self) -> tuple[Tensor, Tensor, Tensor]:
        """(row [M], latent [M], value [M]) of the active entries, row-major."""
        rows, cols = (self.values > 0).nonzero(as_tuple=True)
        return rows, self.indices[rows, cols], self.values[rows, cols]


class SparseCoder(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def d_in(self) -> int: ...
    @property
    def n_latents(self) -> int: ...
    @property
    def reads(self) -> Reads: ...
    @property
    def writes(self) -> Writes: ...
    def directions(self, latents: Tensor) -> Tensor:
        """latents [n] int64 -> decoder directions [n, d] in the space of `writes`, as stored (not
        renormalised): adding a * directions[i] there is what latent i contributes at activation a."""
        ...
    def encode(self, x: Tensor) -> SparseLatents:
        """x [N, d_in] -> the top/nonzero latents per row."""
        ...
    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> SparseCoder:
        """Moved (and cast) copy. Encoding in the subject's bf16 costs half the fp32 time on CPU;
        the hidden state is already bf16 and the product accumulates in fp32, rounding once."""
        ...
    def content_hash(self) -> str:
        """Short sha256 of the weights and the settings that change `encode`; for lineage."""
        ...


def hash_coder(meta: dict[str, Any], tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())  # raw bytes; works for bf16 too
    return h.hexdigest()[:_HASH_HEX]


def topk_of_active(scores: Tensor, active: Tensor, max_active: int) -> SparseLatents:
    """Top-`max_active` entries of `scores` [N, n] where `active` [N, n]; the rest is padding."""
    counts = active.sum(dim=1)  # [N]
    k = min(max_active, int(counts.max())) if len(counts) else 0  # shrink to this batch's widest row
    masked = torch.where(active, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    values, indices = masked.topk(k, dim=1)  # [N, k]
    dropped = int((counts - k).clamp(min=0).sum())
    return SparseLatents(values.float(), indices, dropped)


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained: sum |x - x_hat|^2 / sum |x - mean(x)|^2 over rows [N, d]."""
    x, x_hat = x.float(), x_hat.float()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum().clamp(min=1e-12))

