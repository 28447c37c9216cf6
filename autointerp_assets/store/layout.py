"""Where each artefact lives under the storage root, and how stages read each other's output.

    corpus/windows.parquet, corpus/meta.json
    sparse_coder/<layer>/cfg.json + sae.safetensors (trained) | source.json
    activations/<layer>/chunk-<run>-<n>.parquet + manifest.json (the commit point)
    latent_shards/<layer>/<range>.parquet + <range>.stats.parquet
    contexts/<layer>/<range>.parquet + <range>.skipped.parquet
    explanations/<layer>/<range>.parquet
    scores/<layer>/<range>.parquet
    report/<layer>/summary.parquet
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..data.corpus import ANALYSIS, Corpus
from .store import ArtifactStore, partition_path

CORPUS_WINDOWS = "corpus/windows.parquet"
CORPUS_META = "corpus/meta.json"


class MissingUpstreamError(RuntimeError):
    pass


def _require(store: ArtifactStore, rel: str, asset: str) -> None:
    if not store.exists(rel):
        raise MissingUpstreamError(f"{store.uri(rel)} is missing; materialise the upstream `{asset}` asset first")


def read_corpus(store: ArtifactStore) -> Corpus:
    _require(store, CORPUS_WINDOWS, "corpus")
    meta = store.read_json(CORPUS_META)
    return Corpus(store.read_parquet(CORPUS_WINDOWS), meta["content_hash"])


def analysis_tokens(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """([n_seq, ctx_len] tokens, [n_seq] seq ids) of the analysed (non-SAE-training) windows."""
    frame = corpus.windows.filter(pl.col("split") == ANALYSIS).sort("seq")
    return corpus.token_array(ANALYSIS), frame["seq"].to_numpy()


def manifest_path(layer: str) -> str:
    return f"activations/{layer}/manifest.json"


def read_manifest(store: ArtifactStore, layer: str) -> dict[str, Any]:
    _require(store, manifest_path(layer), f"activations[{layer}]")
    return store.read_json(manifest_path(layer))


def chunk_name(run_tag: str, index: int) -> str:
    return f"chunk-{run_tag}-{index:05d}.parquet"


def write_activation_chunk(store: ArtifactStore, layer: str, run_tag: str, index: int, rows: pl.DataFrame) -> None:
    # lz4: intermediate files on the hot path, where zstd takes three times as long
    store.write_parquet(f"activations/{layer}/{chunk_name(run_tag, index)}", rows, compression="lz4")


def read_activation_chunks(store: ArtifactStore, layer: str):
    """Yield the committed chunks of a layer, one DataFrame at a time."""
    for name in read_manifest(store, layer)["chunks"]:
        yield store.read_parquet(f"activations/{layer}/{name}")


def shard_paths(layer: str, latent_range: str) -> tuple[str, str]:
    return (partition_path("latent_shards", layer, latent_range),
            partition_path("latent_shards", layer, f"{latent_range}.stats"))


def context_paths(layer: str, latent_range: str) -> tuple[str, str]:
    return (partition_path("contexts", layer, latent_range),
            partition_path("contexts", layer, f"{latent_range}.skipped"))


def read_partition(store: ArtifactStore, asset: str, layer: str, latent_range: str, suffix: str = "") -> pl.DataFrame:
    rel = partition_path(asset, layer, latent_range + suffix)
    _require(store, rel, f"{asset}[{layer}|{latent_range}]")
    return store.read_parquet(rel)
