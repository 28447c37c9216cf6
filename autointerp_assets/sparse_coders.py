"""Sparse coders: what turns a hookpoint's activations into a few active latents per token.

Every coder maps x [N, d_in] to `SparseLatents` ([N, k] values and indices), so the
activations stage never sees a dense [N, n_latents] matrix and never cares which
format the coder came from. Formats:

- `TopKSAE`: EleutherAI sparsify (`cfg.json` + `sae.safetensors` with `encoder.weight`
  [n, d_in], `encoder.bias` [n], `W_dec` [n, d_in], `b_dec` [d_in]). The same files hold a
  sparsify *transcoder* (cfg `transcode: true`): it encodes the MLP input exactly like an
  SAE except that `b_dec` is not subtracted, and its decoder predicts the MLP output
  instead of reconstructing the input. Only the flag and that encode difference are
  honoured here; hooking a transcoder (input at `layers.N.mlp`, target at its output) is
  left to the activations stage when it is added.
- `JumpReLUSAE`: SAELens / Gemma Scope (`W_enc` [d_in, n], `b_enc`, `threshold`, `W_dec`,
  `b_dec`) from `params.npz` or safetensors.
- `ReLUSAE`: a plain ReLU SAE in the SAELens layout (`architecture: standard`).
- `Neurons`: the MLP's hidden activations themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fsspec
import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import JumpReLUCoderConfig, NeuronsCoderConfig, TopKCoderConfig, TrainTopKCoderConfig
from .storage import ArtifactStore

# Cap on latents returned per token by coders without a fixed k (JumpReLU, ReLU, neurons).
# Typical SAE L0 is 20-150; entries beyond the cap are counted in `SparseLatents.dropped`.
DEFAULT_MAX_ACTIVE = 256
_HASH_HEX = 16
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(#.+)?$")


class SparseCoderError(ValueError):
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


def _hash(meta: dict[str, Any], tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())  # raw bytes; works for bf16 too
    return h.hexdigest()[:_HASH_HEX]


def _topk_of_active(scores: Tensor, active: Tensor, max_active: int) -> SparseLatents:
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


# -- TopK (sparsify) ---------------------------------------------------------------------------


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
        return _hash({"kind": self.kind, "k": self.k, "transcoder": self.transcoder}, self.tensors())


# -- JumpReLU / ReLU (SAELens, Gemma Scope) -------------------------------------------------------


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

    def _pre(self, x: Tensor) -> Tensor:
        x = x.to(self.W_enc.dtype)  # [N, d_in]
        if self.subtract_b_dec:
            x = x - self.b_dec
        return torch.addmm(self.b_enc, x, self.W_enc)  # [N, n_latents]

    def _active(self, pre: Tensor) -> Tensor:
        return pre > 0

    def encode(self, x: Tensor) -> SparseLatents:
        pre = self._pre(x)
        return _topk_of_active(pre, self._active(pre), self.max_active)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        out = F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum")
        return out + self.b_dec  # [N, d_in]

    def tensors(self) -> dict[str, Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> ReLUSAE:
        moved = {name: t.to(device, dtype) for name, t in self.tensors().items()}
        return type(self)(**moved, subtract_b_dec=self.subtract_b_dec, max_active=self.max_active)

    def content_hash(self) -> str:
        return _hash({"kind": self.kind, "subtract_b_dec": self.subtract_b_dec}, self.tensors())


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


# -- Neurons --------------------------------------------------------------------------------------


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

    def encode(self, x: Tensor) -> SparseLatents:
        x = x.float()  # [N, d_mlp]
        if self.top_k is not None:
            values, indices = x.topk(min(self.top_k, self.width), dim=1)  # [N, top_k]
            return SparseLatents(values.clamp(min=0), indices)
        return _topk_of_active(x, x > 0, self.max_active)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Neurons:
        return self

    def content_hash(self) -> str:
        return _hash({"kind": self.kind, "width": self.width, "top_k": self.top_k, "max_active": self.max_active}, {})


# -- Where the files are ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    """A directory reachable through fsspec (local, s3://, or a hub snapshot on local disk)."""

    fs: fsspec.AbstractFileSystem
    base: str
    uri: str  # as the user wrote it, for messages

    def exists(self, name: str) -> bool:
        return self.fs.isfile(f"{self.base}/{name}")

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(f"{self.base}/{name}")

    def listing(self) -> list[str]:
        if not self.fs.isdir(self.base):
            return []
        return sorted(os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.base, detail=False))


def _locate(path: str, store_options: dict[str, Any] | None) -> _Location:
    """Local path, any fsspec URL (s3://...), or a hub id 'org/repo' / 'org/repo#subfolder'."""
    if "://" in path or Path(path).expanduser().exists() or not _HUB_ID.match(path):
        fs, base = fsspec.core.url_to_fs(os.path.expanduser(path), **(store_options or {}))
        return _Location(fs, base.rstrip("/"), path)
    from huggingface_hub import snapshot_download

    repo_id, _, sub = path.partition("#")
    sub = sub.strip("/")
    try:
        local = snapshot_download(repo_id, allow_patterns=[sub, f"{sub}/*"] if sub else None)
    except Exception as e:
        raise SparseCoderError(
            f"'{path}' is not a local path, so it was read as a hub id, and downloading '{repo_id}' failed: "
            f"{type(e).__name__}: {e}. Offline, point `path` at a local directory or an s3:// URL."
        ) from e
    fs, base = fsspec.core.url_to_fs(os.path.join(local, sub) if sub else local)
    return _Location(fs, base.rstrip("/"), path)


def _missing(loc: _Location, wanted: str, fix: str) -> SparseCoderError:
    found = loc.listing()
    listing = ", ".join(found[:20]) if found else "nothing (missing or empty)"
    return SparseCoderError(f"no {wanted} at {loc.uri} (found: {listing}); {fix}")


def _check_fit(coder: SparseCoder, uri: str, cfg_n_latents: int, d_in_expected: int, hookpoint: str | None) -> None:
    where = f"hookpoint '{hookpoint}'" if hookpoint else "the hookpoint"
    if coder.d_in != d_in_expected:
        raise SparseCoderError(
            f"SAE at {uri} expects d_in={coder.d_in}, but {where} has d_model={d_in_expected}; "
            "pick the SAE trained for this hookpoint"
        )
    if coder.n_latents != cfg_n_latents:
        raise SparseCoderError(
            f"SAE at {uri} has {coder.n_latents} latents, but the config says n_latents={cfg_n_latents}; "
            f"set n_latents: {coder.n_latents} for {where} (or pick the SAE of the configured width)"
        )


# -- Loaders ----------------------------------------------------------------------------------------


def _load_topk(loc: _Location) -> TopKSAE:
    if not (loc.exists("cfg.json") and loc.exists("sae.safetensors")):
        raise _missing(
            loc,
            "sparsify SAE (cfg.json + sae.safetensors)",
            "point `path` at the directory holding both; for a repo with one SAE per hookpoint, "
            "add the hookpoint's folder ('.../repo#layers.6' or 's3://bucket/sae/layers.6')",
        )
    cfg = json.loads(loc.read("cfg.json"))
    if cfg.get("activation", "topk") != "topk":
        raise SparseCoderError(f"SAE at {loc.uri} uses activation '{cfg['activation']}'; only 'topk' is supported")
    if cfg.get("skip_connection"):
        raise SparseCoderError(f"SAE at {loc.uri} has a skip connection (skip transcoder); not supported yet")
    tensors = safetensors.torch.load(loc.read("sae.safetensors"))
    absent = [key for key in ("encoder.weight", "encoder.bias", "W_dec", "b_dec") if key not in tensors]
    if absent:
        raise SparseCoderError(
            f"sae.safetensors at {loc.uri} lacks {absent} (has {sorted(tensors)}); "
            "it is not a sparsify SAE with a decoder"
        )
    sae = TopKSAE(
        tensors["encoder.weight"],
        tensors["encoder.bias"],
        tensors["W_dec"],
        tensors["b_dec"],
        k=int(cfg["k"]),
        transcoder=bool(cfg.get("transcode", False)),
    )
    if "d_in" in cfg and int(cfg["d_in"]) != sae.d_in:
        raise SparseCoderError(f"cfg.json at {loc.uri} says d_in={cfg['d_in']}, but the weights have {sae.d_in}")
    return sae


_SAELENS_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _load_saelens(loc: _Location, max_active: int) -> ReLUSAE:
    """Gemma Scope params.npz or SAELens safetensors; `loc` may point at the file itself."""
    weights_name = next((n for n in ("params.npz", "sae_weights.safetensors") if loc.exists(n)), None)
    if weights_name is None and loc.fs.isfile(loc.base):  # the path names the weights file
        parent, weights_name = loc.base.rsplit("/", 1)
        loc = _Location(loc.fs, parent, loc.uri)
    if weights_name is None or not weights_name.endswith((".npz", ".safetensors")):
        raise _missing(
            loc,
            "JumpReLU SAE weights (params.npz or sae_weights.safetensors)",
            "point `path` at the directory holding them or at the .npz/.safetensors file itself",
        )
    data = loc.read(weights_name)
    if weights_name.endswith(".npz"):
        with np.load(io.BytesIO(data)) as npz:
            tensors = {name: torch.from_numpy(npz[name].copy()) for name in npz.files}
    else:
        tensors = safetensors.torch.load(data)
    cfg = json.loads(loc.read("cfg.json")) if loc.exists("cfg.json") else {}
    absent = [key for key in _SAELENS_KEYS if key not in tensors]
    if absent:
        raise SparseCoderError(f"{weights_name} at {loc.uri} lacks {absent} (has {sorted(tensors)})")
    common = {key: tensors[key] for key in _SAELENS_KEYS}
    options = {"subtract_b_dec": bool(cfg.get("apply_b_dec_to_input", False)), "max_active": max_active}
    if "threshold" in tensors:
        return JumpReLUSAE(**common, threshold=tensors["threshold"], **options)
    if cfg.get("architecture") == "standard":
        return ReLUSAE(**common, **options)
    raise SparseCoderError(
        f"{weights_name} at {loc.uri} has no 'threshold' (has {sorted(tensors)}) and its cfg.json does not say "
        "architecture: standard; it is neither a JumpReLU nor a plain ReLU SAE"
    )


def load_sparse_coder(
    cfg: TopKCoderConfig | JumpReLUCoderConfig | NeuronsCoderConfig,
    d_in_expected: int,
    store_options: dict[str, Any] | None = None,
    *,
    hookpoint: str | None = None,
    max_active: int = DEFAULT_MAX_ACTIVE,
) -> SparseCoder:
    """Load the configured coder and check it fits the hookpoint's width.

    `store_options` go to fsspec for s3:// paths (e.g. {"client_kwargs": {"endpoint_url": ...}}).
    A `jumprelu` path holding a plain ReLU SAE (SAELens `architecture: standard`) loads as `ReLUSAE`.
    """
    if isinstance(cfg, TrainTopKCoderConfig):
        raise SparseCoderError("kind 'train_topk' has no files to load; train one with train_sae.train_topk_sae")
    if isinstance(cfg, NeuronsCoderConfig):
        if cfg.n_latents != d_in_expected:
            raise SparseCoderError(
                f"neurons: hookpoint '{hookpoint}' has width {d_in_expected}, but n_latents={cfg.n_latents}; "
                f"set n_latents: {d_in_expected} (the MLP hidden width)"
            )
        return Neurons(cfg.n_latents, top_k=cfg.top_k, max_active=max_active)
    loc = _locate(cfg.path, store_options)
    coder: SparseCoder = _load_topk(loc) if isinstance(cfg, TopKCoderConfig) else _load_saelens(loc, max_active)
    _check_fit(coder, cfg.path, cfg.n_latents, d_in_expected, hookpoint)
    return coder


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
