"""Sparse coders: the loader registry. Adding a format is one module plus one line in `LOADERS`.

Formats: `topk` (sparsify TopK SAEs and transcoders), `jumprelu` (SAELens / Gemma Scope
JumpReLU, or a plain ReLU SAE in the SAELens layout), `neurons` (raw MLP neurons);
`train_topk` coders are trained here (`coders.train`) and then load as `topk`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import JumpReLUCoderConfig, NeuronsCoderConfig, TopKCoderConfig, TrainTopKCoderConfig
from . import saelens, topk
from .base import DEFAULT_MAX_ACTIVE, SparseCoder, SparseCoderError, SparseLatents, fvu
from .files import Location, is_hub_id, locate
from .neurons import Neurons
from .saelens import JumpReLUSAE, ReLUSAE
from .topk import TopKSAE, save_topk_sae

__all__ = ["DEFAULT_MAX_ACTIVE", "JumpReLUSAE", "Neurons", "ReLUSAE", "SparseCoder", "SparseCoderError",
           "SparseLatents", "TopKSAE", "check_coder_files", "fvu", "load_sparse_coder", "save_topk_sae"]

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
# config kind -> loader of the files at a location
LOADERS: dict[str, Callable[[Location, int], SparseCoder]] = {
    "topk": lambda loc, max_active: topk.load(loc),
    "jumprelu": saelens.load,
}
# config kind -> the width read from the files' headers alone (no weights, no model)
CHECKERS: dict[str, Callable[[Location], int]] = {"topk": topk.check, "jumprelu": saelens.check}


def check_coder_files(cfg: object, store_options: dict[str, Any] | None = None, *, hookpoint: str | None = None) -> None:
    """Before a run: the configured coder's files exist, are readable and have the configured width.
    Hub ids are left to the loader (checking them means downloading)."""
    if not isinstance(cfg, TopKCoderConfig | JumpReLUCoderConfig) or is_hub_id(cfg.path):
        return
    n_latents = CHECKERS[cfg.kind](locate(cfg.path, store_options))
    if n_latents != cfg.n_latents:
        where = f"hookpoints.{hookpoint}" if hookpoint else "the hookpoint"
        raise SparseCoderError(f"SAE at {cfg.path} has {n_latents} latents, but {where}.n_latents is "
                               f"{cfg.n_latents}; set n_latents: {n_latents} (or pick the SAE of the configured width)")


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
        raise SparseCoderError("kind 'train_topk' has no files to load; train one with coders.train.train_topk_sae")
    if isinstance(cfg, NeuronsCoderConfig):
        if cfg.n_latents != d_in_expected:
            raise SparseCoderError(
                f"neurons: hookpoint '{hookpoint}' has width {d_in_expected}, but n_latents={cfg.n_latents}; "
                f"set n_latents: {d_in_expected} (the MLP hidden width)"
            )
        return Neurons(cfg.n_latents, top_k=cfg.top_k, max_active=max_active)
    loc = locate(cfg.path, store_options)
    coder = LOADERS[cfg.kind](loc, max_active)
    _check_fit(coder, cfg.path, cfg.n_latents, d_in_expected, hookpoint)
    return coder

