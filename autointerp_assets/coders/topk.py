"""EleutherAI sparsify TopK SAEs and transcoders (`cfg.json` + `sae.safetensors`).

The weights are `encoder.weight` [n, d_in], `encoder.bias` [n], `W_dec` [n, d_in] and
`b_dec` [d_in]. The same files hold a sparsify *transcoder* (cfg `transcode: true`): it
reads the hooked module's **input** (for `layers.N.mlp`, the normed residual the MLP
reads), encodes it like an SAE except that `b_dec` is not subtracted, and its decoder
predicts the module's **output**. `reads` tells the activations stage which tensor to
capture; `writes` tells steering where the decoder directions live.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import TopKCoderConfig
from ..store.store import ArtifactStore
from .base import Reads, SparseCoderError, SparseLatents, Writes, hash_coder
from .files import Location, locate, missing, require_tensors


@dataclass(eq=False)
class TopKSAE:
    encoder_weight: Tensor  # [n_latents, d_in]
    encoder_bias: Tensor  # [n_latents]
    W_dec: Tensor  # [n_latents, d_in]
    b_dec: Tensor  # [d_in]
    k: int
    transcoder: bool = False  # sparsify `transcode`: skip the b_dec subtraction (see module doc)
    kind: str = field(default="topk", init=False)

    def __post_init__(self) -> None:
        n, d = self.encoder_weight.shape
        if self.W_dec.shape != (n, d) or self.encoder_bias.shape != (n,) or self.b_dec.shape != (d,):
            raise SparseCoderError(
                f"inconsistent TopK SAE shapes: encoder.weight {tuple(self.encoder_weight.shape)}, "
                f"encoder.bias {tuple(self.encoder_bias.shape)}, W_dec {tuple(self.W_dec.shape)}, "
                f"b_dec {tuple(self.b_dec.shape)}"
            )
        if not 0 < self.k <= n:
            raise SparseCoderError(f"TopK SAE k={self.k} must be in [1, n_latents={n}]")

    @property
    def d_in(self) -> int:
        return self.encoder_weight.shape[1]

    @property
    def n_latents(self) -> int:
        return self.encoder_weight.shape[0]

    @property
    def reads(self) -> Reads:
        return "input" if self.transcoder else "output"

    @property
    def writes(self) -> Writes:
        return "output"

    def directions(self, latents: Tensor) -> Tensor:
        return self.W_dec[latents]  # [n, d_in]

    def encode(self, x: Tensor) -> SparseLatents:
        x = x.to(self.encoder_weight.dtype)  # [N, d_in]
        if not self.transcoder:
            x = x - self.b_dec
        pre = torch.addmm(self.encoder_bias, x, self.encoder_weight.T)  # [N, n_latents]
        # ReLU is monotonic, so top-k of the pre-activations then ReLU == top-k of ReLU(pre).
        values, indices = pre.topk(self.k, dim=1)  # [N, k]
        return SparseLatents(values.relu().float(), indices)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """values, indices [N, k] -> reconstruction [N, d_in] (for a transcoder: the MLP output)."""
        out = F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum")
        return out + self.b_dec  # [N, d_in]

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> TopKSAE:
        return TopKSAE(
            *(t.to(device, dtype) for t in (self.encoder_weight, self.encoder_bias, self.W_dec, self.b_dec)),
            k=self.k,
            transcoder=self.transcoder,
        )

    def tensors(self) -> dict[str, Tensor]:
        """The state dict under sparsify's key names."""
        return {
            "encoder.weight": self.encoder_weight,
            "encoder.bias": self.encoder_bias,
            "W_dec": self.W_dec,
            "b_dec": self.b_dec,
        }

    def sparsify_cfg(self) -> dict[str, Any]:
        return {
            "activation": "topk",
            "expansion_factor": max(1, self.n_latents // self.d_in),
            "normalize_decoder": True,
            "num_latents": self.n_latents,  # non-zero, so sparsify ignores expansion_factor
            "k": self.k,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": self.transcoder,
            "d_in": self.d_in,
        }

    def content_hash(self) -> str:
        return hash_coder({"kind": self.kind, "k": self.k, "transcoder": self.transcoder}, self.tensors())


def _read_cfg(loc: Location) -> dict[str, Any]:
    if not (loc.exists("cfg.json") and loc.exists("sae.safetensors")):
        raise missing(
            loc,
            "sparsify SAE (cfg.json + sae.safetensors)",
            "point `path` at the directory holding both; for a repo with one SAE per hookpoint, "
            "add the hookpoint's folder ('.../repo#layers.6' or 's3://bucket/sae/layers.6')",
        )
    cfg = loc.read_json("cfg.json")
    if "k" not in cfg:
        raise SparseCoderError(f"{loc.where('cfg.json')} has no 'k' (active latents per token); it is not a sparsify "
                               "TopK SAE config: add \"k\" or use the coder's original cfg.json")
    if cfg.get("activation", "topk") != "topk":
        raise SparseCoderError(f"SAE at {loc.uri} uses activation '{cfg['activation']}'; only 'topk' is supported")
    if cfg.get("skip_connection"):
        raise SparseCoderError(f"SAE at {loc.uri} has a skip connection (skip transcoder); not supported yet")
    return cfg


def check(loc: Location) -> int:
    """The width, from the files' headers alone: present, readable, not truncated."""
    _read_cfg(loc)
    shapes = loc.safetensors_shapes("sae.safetensors")
    if len(shapes.get("encoder.weight", [])) != 2:
        raise SparseCoderError(f"{loc.where('sae.safetensors')} has no 2-d 'encoder.weight' (has {sorted(shapes)}); "
                               "it is not a sparsify SAE")
    return int(shapes["encoder.weight"][0])


def load(loc: Location) -> TopKSAE:
    cfg = _read_cfg(loc)
    tensors = loc.read_safetensors("sae.safetensors")
    require_tensors(tensors, _TENSORS, loc, "sae.safetensors", "a sparsify SAE with a decoder")
    try:
        sae = TopKSAE(*(tensors[key] for key in _TENSORS), k=int(cfg["k"]), transcoder=bool(cfg.get("transcode", False)))
    except SparseCoderError as e:
        raise SparseCoderError(f"{loc.where('sae.safetensors')}: {e}; {_FIX_PAIR}") from None
    if "d_in" in cfg and int(cfg["d_in"]) != sae.d_in:
        raise SparseCoderError(f"{loc.where('cfg.json')} says d_in={cfg['d_in']}, but the weights have {sae.d_in}; "
                               f"{_FIX_PAIR}")
    return sae


_TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
_FIX_PAIR = "cfg.json and sae.safetensors must come from the same checkpoint; copy both again"


def from_config(cfg: TopKCoderConfig, store_options: dict[str, Any] | None, max_active: int) -> TopKSAE:
    return load(locate(cfg.path, store_options))


def save_topk_sae(
    sae: TopKSAE,
    dest: str | os.PathLike | ArtifactStore,
    rel: str = "",
    store_options: dict[str, Any] | None = None,
) -> str:
    """Write cfg.json + sae.safetensors (sparsify's layout) under `dest`/`rel`; returns the URI.

    Each file is written atomically. The weights go first and cfg.json last, so a reader
    that finds cfg.json also finds complete weights.
    """
    store = dest if isinstance(dest, ArtifactStore) else ArtifactStore(os.fspath(dest), store_options)
    prefix = f"{rel.strip('/')}/" if rel.strip("/") else ""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in sae.tensors().items()}
    store.write_bytes(f"{prefix}sae.safetensors", safetensors.torch.save(tensors))
    store.write_bytes(f"{prefix}cfg.json", json.dumps(sae.sparsify_cfg(), indent=1).encode())
    return store.uri(rel.strip("/")) if prefix else store.root

