"""SAELens and Gemma Scope SAEs: JumpReLU (`threshold`) and plain ReLU (`architecture: standard`).

Weights `W_enc` [d_in, n], `b_enc` [n], `W_dec` [n, d_in], `b_dec` [d_in] (and `threshold`
[n]) from Gemma Scope's `params.npz` or SAELens' `sae_weights.safetensors`; an optional
`cfg.json` beside them (SAELens) gives `apply_b_dec_to_input`, `architecture`, `d_in`, `d_sae`.
Config kind `jumprelu` needs the threshold (or `architecture: standard`, then it is a plain
ReLU SAE); kind `relu` reads a plain ReLU SAE in the same layout and refuses a threshold.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import JumpReLUCoderConfig, ReLUCoderConfig
from .base import DEFAULT_MAX_ACTIVE, Reads, SparseCoderError, SparseLatents, Writes, hash_coder, topk_of_active
from .files import Location, locate, missing, require_tensors


@dataclass(eq=False)
class ReLUSAE:
    """Plain ReLU SAE: pre = (x [- b_dec]) W_enc + b_enc, active where pre > 0.

    Returns at most `max_active` latents per row (the largest), via top-k on the masked
    pre-activation; more active entries than that are counted in `SparseLatents.dropped`.
    """

    W_enc: Tensor  # [d_in, n_latents]
    b_enc: Tensor  # [n_latents]
    W_dec: Tensor  # [n_latents, d_in]
    b_dec: Tensor  # [d_in]
    subtract_b_dec: bool = False  # SAELens `apply_b_dec_to_input`; Gemma Scope does not
    max_active: int = DEFAULT_MAX_ACTIVE
    kind: str = field(default="relu", init=False)

    def __post_init__(self) -> None:
        d, n = self.W_enc.shape
        if self.W_dec.shape != (n, d) or self.b_enc.shape != (n,) or self.b_dec.shape != (d,):
            raise SparseCoderError(
                f"inconsistent SAE shapes: W_enc {tuple(self.W_enc.shape)}, b_enc {tuple(self.b_enc.shape)}, "
                f"W_dec {tuple(self.W_dec.shape)}, b_dec {tuple(self.b_dec.shape)}"
            )

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def n_latents(self) -> int:
        return self.W_enc.shape[1]

    @property
    def reads(self) -> Reads:
        return "output"

    @property
    def writes(self) -> Writes:
        return "output"

    def directions(self, latents: Tensor) -> Tensor:
        return self.W_dec[latents]  # [n, d_in]

    def _pre(self, x: Tensor) -> Tensor:
        x = x.to(self.W_enc.dtype)  # [N, d_in]
        if self.subtract_b_dec:
            x = x - self.b_dec
        return torch.addmm(self.b_enc, x, self.W_enc)  # [N, n_latents]

    def _active(self, pre: Tensor) -> Tensor:
        return pre > 0

    def encode(self, x: Tensor) -> SparseLatents:
        pre = self._pre(x)
        return topk_of_active(pre, self._active(pre), self.max_active)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        out = F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum")
        return out + self.b_dec  # [N, d_in]

    def tensors(self) -> dict[str, Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> ReLUSAE:
        moved = {name: t.to(device, dtype) for name, t in self.tensors().items()}
        return type(self)(**moved, subtract_b_dec=self.subtract_b_dec, max_active=self.max_active)

    def content_hash(self) -> str:
        return hash_coder({"kind": self.kind, "subtract_b_dec": self.subtract_b_dec}, self.tensors())


@dataclass(eq=False)
class JumpReLUSAE(ReLUSAE):
    """JumpReLU: active where pre > threshold (per latent) and pre > 0, value = pre.

    The `pre > 0` guard only matters for negative thresholds, which trained JumpReLU SAEs
    do not have; it keeps the "value <= 0 is padding" convention exact.
    """

    threshold: Tensor = field(default_factory=lambda: torch.zeros(0))  # [n_latents]
    kind: str = field(default="jumprelu", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold.shape != self.b_enc.shape:
            raise SparseCoderError(
                f"JumpReLU threshold has shape {tuple(self.threshold.shape)}, expected {tuple(self.b_enc.shape)}"
            )

    def _active(self, pre: Tensor) -> Tensor:
        return (pre > self.threshold) & (pre > 0)

    def tensors(self) -> dict[str, Tensor]:
        return {**super().tensors(), "threshold": self.threshold}


_SAELENS_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _weights(loc: Location, what: str = "JumpReLU") -> tuple[Location, str]:
    """(directory, weights file name); `loc` may point at the file itself."""
    weights_name = next((n for n in ("params.npz", "sae_weights.safetensors") if loc.exists(n)), None)
    if weights_name is None and loc.fs.isfile(loc.base):  # the path names the weights file
        parent, weights_name = loc.base.rsplit("/", 1)
        loc = Location(loc.fs, parent, loc.uri.rsplit("/", 1)[0])
    if weights_name is None or not weights_name.endswith((".npz", ".safetensors")):
        raise missing(
            loc,
            f"{what} SAE weights (params.npz or sae_weights.safetensors)",
            "point `path` at the directory holding them or at the .npz/.safetensors file itself",
        )
    return loc, weights_name


def check(loc: Location) -> int:
    """The width, read cheaply: present, readable, not truncated."""
    loc, weights_name = _weights(loc)
    if weights_name.endswith(".safetensors"):
        shape = loc.safetensors_shapes(weights_name).get("b_enc", [])
    else:
        try:
            with loc.fs.open(f"{loc.base}/{weights_name}", "rb") as f, np.load(f) as npz:
                shape = list(npz["b_enc"].shape) if "b_enc" in npz.files else []
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise SparseCoderError(f"{loc.where(weights_name)} is truncated or not an .npz archive ({e}); "
                                   "re-download it") from None
    if len(shape) != 1:
        raise SparseCoderError(f"{loc.where(weights_name)} has no 1-d 'b_enc'; it is not a SAELens/Gemma Scope SAE")
    if loc.exists("cfg.json"):
        loc.read_json("cfg.json")
    return int(shape[0])


def load(loc: Location, max_active: int, *, plain_relu: bool = False) -> ReLUSAE:
    """Gemma Scope params.npz or SAELens safetensors; `loc` may point at the file itself."""
    loc, weights_name = _weights(loc, "ReLU" if plain_relu else "JumpReLU")
    if weights_name.endswith(".npz"):
        try:
            with np.load(io.BytesIO(loc.read(weights_name))) as npz:
                tensors = {name: torch.from_numpy(npz[name].copy()) for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise SparseCoderError(f"{loc.where(weights_name)} is truncated or not an .npz archive ({e}); "
                                   "re-download it") from None
    else:
        tensors = loc.read_safetensors(weights_name)
    cfg = loc.read_json("cfg.json") if loc.exists("cfg.json") else {}
    require_tensors(tensors, _SAELENS_KEYS, loc, weights_name, "a SAELens / Gemma Scope SAE")
    common = {key: tensors[key] for key in _SAELENS_KEYS}
    options = {"subtract_b_dec": bool(cfg.get("apply_b_dec_to_input", False)), "max_active": max_active}
    try:
        if plain_relu:
            if "threshold" in tensors:
                raise SparseCoderError("it has a 'threshold', so it is a JumpReLU SAE: set kind: jumprelu")
            sae: ReLUSAE = ReLUSAE(**common, **options)
        elif "threshold" in tensors:
            sae = JumpReLUSAE(**common, threshold=tensors["threshold"], **options)
        elif cfg.get("architecture") == "standard":
            sae = ReLUSAE(**common, **options)
        else:
            raise SparseCoderError(
                f"it has no 'threshold' (has {sorted(tensors)}) and no cfg.json saying architecture: standard; "
                "it is neither a JumpReLU nor a plain ReLU SAE (for a plain ReLU SAE set kind: relu)"
            )
    except SparseCoderError as e:
        raise SparseCoderError(f"{loc.where(weights_name)}: {e}") from None
    for key, actual in (("d_in", sae.d_in), ("d_sae", sae.n_latents)):
        if key in cfg and int(cfg[key]) != actual:
            raise SparseCoderError(f"{loc.where('cfg.json')} says {key}={cfg[key]}, but {weights_name} has {actual}; "
                                   "the two files must come from the same checkpoint; copy both again")
    return sae


def jumprelu_from_config(cfg: JumpReLUCoderConfig, store_options: dict[str, Any] | None, max_active: int) -> ReLUSAE:
    return load(locate(cfg.path, store_options), max_active)


def relu_from_config(cfg: ReLUCoderConfig, store_options: dict[str, Any] | None, max_active: int) -> ReLUSAE:
    return load(locate(cfg.path, store_options), max_active, plain_relu=True)
