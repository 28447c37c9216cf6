"""What the asset modules share: clear failures for bad input, the partition key of a run,
the layer's coder, k8s GPU tags."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg

from ..coders import SparseCoder, load_sparse_coder
from ..config import CoderConfig, NeuronsCoderConfig, ProjectConfig, TopKCoderConfig, TrainTopKCoderConfig
from ..data.subject import Capture, Subject
from ..partition_keys import check_partition_key
from ..partitions import LAYER_DIM, RANGE_DIM
from ..preflight import check_storage_writable
from ..store import layout
from ..store.store import ArtifactStore
from ..user_errors import USER_ERRORS


def _check_run_start(context: dg.AssetExecutionContext, resources: dict[str, Any]) -> None:
    """Before any work: the partition key fits the project, storage is writable, the LLM answers."""
    project = resources.get("project")
    if project is not None and context.has_partition_key:
        keys = context.partition_keys if context.has_partition_key_range else [context.partition_key]
        for key in keys:
            check_partition_key(project.config, str(key))
    storage = resources.get("storage")
    if storage is not None:
        check_storage_writable(storage.root, storage.storage_options())
    llm = resources.get("llm")
    if llm is not None:
        llm.check_reachable()


def fails_clearly(asset_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Check the run's inputs first; a `UserError` (a config field, file, key, credential or
    endpoint to fix) becomes a `dg.Failure` whose description is the message and that is not
    retried. Anything else is a bug and keeps its traceback."""

    @functools.wraps(asset_fn)
    def run(context: dg.AssetExecutionContext, *args: Any, **resources: Any) -> Any:
        try:
            _check_run_start(context, resources)
            return asset_fn(context, *args, **resources)
        except USER_ERRORS as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None

    return run

# Observable sources (sensors/observe.py): the model's and each layer's coder's revision.
SUBJECT_SOURCE = dg.AssetKey("subject_model_source")
CODER_SOURCE = dg.AssetKey("sparse_coder_source")

# On k8s (deploy/), only the GPU steps ask for a GPU.
GPU_OP_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                                       "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}}


def layer_range(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys[LAYER_DIM], keys[RANGE_DIM]


def coder_config(cfg: ProjectConfig, layer: str) -> CoderConfig:
    if layer not in cfg.hookpoints:
        raise dg.Failure(
            f"layer partition '{layer}' has no sparse coder in the project config; add it under `hookpoints:` "
            f"(configured: {sorted(cfg.hookpoints)})"
        )
    return cfg.hookpoints[layer]


def load_coder(cfg: ProjectConfig, store: ArtifactStore, layer: str, d_in: int) -> SparseCoder:
    coder = coder_config(cfg, layer)
    if isinstance(coder, TrainTopKCoderConfig):  # trained by the sparse_coder asset, stored under the root
        if not store.exists(f"sparse_coder/{layer}/cfg.json"):
            raise layout.MissingUpstreamError(f"no trained SAE for {layer}; materialise sparse_coder[{layer}] first")
        coder = TopKCoderConfig(kind="topk", path=store.uri(f"sparse_coder/{layer}"), n_latents=coder.n_latents)
    return load_sparse_coder(coder, d_in, store.storage_options, hookpoint=layer)


def capture_kind(cfg: ProjectConfig, layer: str) -> str:
    return "neurons" if isinstance(coder_config(cfg, layer), NeuronsCoderConfig) else "output"


def layer_coder(cfg: ProjectConfig, store: ArtifactStore, subject: Subject, layer: str) -> tuple[Capture, SparseCoder]:
    """The layer's coder and the tensor it encodes: a transcoder reads the module's input (the MLP's
    input at `layers.N.mlp`), neurons the MLP's hidden units, an SAE the module's output."""
    probe = subject.resolve(layer, capture_kind(cfg, layer))
    coder = load_coder(cfg, store, layer, subject.width(probe))
    return subject.resolve(layer, coder.reads), coder
