"""Raw MLP neurons as latents: the MLP's hidden activations themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import NeuronsCoderConfig
from .base import DEFAULT_MAX_ACTIVE, Reads, SparseLatents, Writes, hash_coder, topk_of_active


@dataclass(frozen=True)
class Neurons:
    """MLP hidden activations [N, d_mlp] as latents; only positive entries count as active.

    With `top_k`, the k largest per row; without, every positive entry up to `max_active`.
    """

    width: int
    top_k: int | None = None
    max_active: int = DEFAULT_MAX_ACTIVE
    kind: str = field(default="neurons", init=False)

    @property
    def d_in(self) -> int:
        return self.width

    @property
    def n_latents(self) -> int:
        return self.width

    @property
    def reads(self) -> Reads:
        return "neurons"

    @property
    def writes(self) -> Writes:
        return "neurons"

    def directions(self, latents: Tensor) -> Tensor:
        """One-hot rows [n, width]: a neuron's direction in the hidden units is its own axis."""
        return torch.nn.functional.one_hot(latents, self.width).float()

    def encode(self, x: Tensor) -> SparseLatents:
        x = x.float()  # [N, d_mlp]
        if self.top_k is not None:
            values, indices = x.topk(min(self.top_k, self.width), dim=1)  # [N, top_k]
            return SparseLatents(values.clamp(min=0), indices)
        return topk_of_active(x, x > 0, self.max_active)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Neurons:
        return self

    def content_hash(self) -> str:
        return hash_coder({"kind": self.kind, "width": self.width, "top_k": self.top_k, "max_active": self.max_active}, {})



def from_config(cfg: NeuronsCoderConfig, store_options: dict[str, Any] | None, max_active: int) -> Neurons:
    return Neurons(cfg.n_latents, top_k=cfg.top_k, max_active=max_active)
