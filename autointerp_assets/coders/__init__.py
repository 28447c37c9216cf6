"""Sparse coders: the loader registry. Adding a format is one module plus one line in `LOADERS`.

| kind        | module     | files                                                      | reads          |
|-------------|------------|------------------------------------------------------------|----------------|
| `topk`      | `topk`     | sparsify `cfg.json` + `sae.safetensors` (SAE or transcoder) | output / input |
| `jumprelu`  | `saelens`  | Gemma Scope `params.npz` or SAELens `sae_weights.safetensors` with `threshold` | output |
| `relu`      | `saelens`  | the same layout without `threshold` (plain ReLU SAE)       | output         |
| `neurons`   | `neurons`  | none: the MLP's hidden units                                | neurons        |

`train_topk` coders are trained here (`coders.train`), stored in the sparsify layout, and
then load as `topk`. "reads" is the tensor of the hooked module the coder encodes
(`data.subject.Where`): a transcoder reads the module's input, an SAE its output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import CoderConfig, TrainTopKCoderConfig
from . import neurons, saelens, topk
from .base import DEFAULT_MAX_ACTIVE, SparseCoder, SparseCoderError, SparseLatents, fvu
from .files import Location, is_hub_id, locate
from .neurons import Neurons
from .saelens import JumpReLUSAE, ReLUSAE
from .topk import TopKSAE, save_topk_sae

__all__ = ["DEFAULT_MAX_ACTIVE", "LOADERS", "JumpReLUSAE", "Neurons", "ReLUSAE", "SparseCoder", "SparseCoderError",
           "SparseLatents", "TopKSAE", "check_coder_files", "fvu", "load_sparse_coder", "save_topk_sae"]

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
# config kind -> loader(config, fsspec options for s3:// paths, max_active cap)
LOADERS: dict[str, Callable[[Any, dict[str, Any] | None, int], SparseCoder]] = {
    "topk": topk.from_config,
    "jumprelu": saelens.jumprelu_from_config,
    "relu": saelens.relu_from_config,
    "neurons": neurons.from_config,
}
# config kind with files -> the width read from the files' headers alone (no weights, no model)
CHECKERS: dict[str, Callable[[Location], int]] = {"topk": topk.check, "jumprelu": saelens.check,
                                                  "relu": saelens.check}


def check_coder_files(cfg: object, store_options: dict[str, Any] | None = None, *, hookpoint: str | None = None) -> None:
    """Before a run: the configured coder's files exist, are readable and have the configured width.
    Hub ids are left to the loader (checking them means downloading)."""
    kind, path = getattr(cfg, "kind", None), getattr(cfg, "path", None)
    if kind not in CHECKERS or path is None or is_hub_id(path):
        return
    n_latents = CHECKERS[cfg.kind](locate(cfg.path, store_options))
    if n_latents != cfg.n_latents:
        where = f"hookpoints.{hookpoint}" if hookpoint else "the hookpoint"
        raise SparseCoderError(f"SAE at {cfg.path} has {n_latents} latents, but {where}.n_latents is "
                               f"{cfg.n_latents}; set n_latents: {n_latents} (or pick the SAE of the configured width)")


def _check_fit(coder: SparseCoder, source: str, cfg_n_latents: int, d_in_expected: int, hookpoint: str | None) -> None:
    where = f"hookpoint '{hookpoint}'" if hookpoint else "the hookpoint"
    if coder.kind == "neurons":
        if coder.n_latents != d_in_expected:
            raise SparseCoderError(
                f"neurons: {where} has width {d_in_expected}, but n_latents={cfg_n_latents}; "
                f"set n_latents: {d_in_expected} (the MLP hidden width)"
            )
        return
    if coder.d_in != d_in_expected:
        raise SparseCoderError(
            f"SAE at {source} expects d_in={coder.d_in}, but {where} has d_model={d_in_expected}; "
            "pick the SAE trained for this hookpoint" + (" (a transcoder reads its input)" if coder.reads == "input" else "")
        )
    if coder.n_latents != cfg_n_latents:
        raise SparseCoderError(
            f"SAE at {source} has {coder.n_latents} latents, but the config says n_latents={cfg_n_latents}; "
            f"set n_latents: {coder.n_latents} for {where} (or pick the SAE of the configured width)"
        )


def load_sparse_coder(
    cfg: CoderConfig,
    d_in_expected: int,
    store_options: dict[str, Any] | None = None,
    *,
    hookpoint: str | None = None,
    max_active: int = DEFAULT_MAX_ACTIVE,
) -> SparseCoder:
    """Load the configured coder through `LOADERS` and check it fits the hookpoint's width.

    `store_options` go to fsspec for s3:// paths (e.g. {"client_kwargs": {"endpoint_url": ...}}).
    Loading only reads: a malformed file raises `SparseCoderError` naming the file and the fix.
    """
    if isinstance(cfg, TrainTopKCoderConfig):
        raise SparseCoderError("kind 'train_topk' has no files to load; train one with coders.train.train_topk_sae")
    if cfg.kind not in LOADERS:
        raise SparseCoderError(f"unknown coder kind '{cfg.kind}'; known kinds: {sorted(LOADERS)}")
    coder = LOADERS[cfg.kind](cfg, store_options, max_active)
    _check_fit(coder, getattr(cfg, "path", cfg.kind), cfg.n_latents, d_in_expected, hookpoint)
    return coder
