"""Where each artefact lives under the storage root, and how stages read each other's output.

Multi-file outputs are versioned datasets (store.commit): each version's files sit in their own
directory and one `manifest.json` names the current version, so a set of files is committed
together and two writers never clobber each other.

    corpus/manifest.json + <version>/{tokens.npy, windows.parquet, postings.npy, postings_offsets.npy}
    sparse_coder/<layer>/cfg.json + sae.safetensors (trained) | lineage.json
    activations/<layer>/manifest.json + <run>/<bucket>/<chunk>.parquet     (store.activations)
    latent_shards/<layer>/<range>/manifest.json + <version>/{rows,stats}.parquet
    contexts/<layer>/<range>/manifest.json + <version>/{examples,skipped}.parquet
    explanations/<layer>/<range>.parquet (+ .usage.json)
    scores/<layer>/<range>.parquet (+ .usage.json)
    intervention_scores/<layer>/<range>.parquet (+ .continuations.parquet, .usage.json)
    report/<layer>/summary.parquet
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..data.corpus import ANALYSIS, Corpus, TokenIndex
from .activations import activations_dataset
from .commit import Dataset, MissingUpstreamError, new_version
from .store import ArtifactStore, partition_path

CORPUS_FILES = ("tokens", "windows", "postings", "postings_offsets")

# Assets whose partitions are several files committed together: file name -> the suffix readers
# ask for (`read_partition(..., suffix)`), the first one being the partition's main table.
PAIRED: dict[str, dict[str, str]] = {
    "latent_shards": {"rows": "", "stats": ".stats"},
    "contexts": {"examples": "", "skipped": ".skipped"},
}


def _require(store: ArtifactStore, rel: str, asset: str) -> None:
    if not store.exists(rel):
        raise MissingUpstreamError(f"{store.uri(rel)} is missing; materialise the upstream `{asset}` asset first")


# -- corpus -----------------------------------------------------------------------------------------
def corpus_dataset(store: ArtifactStore) -> Dataset:
    return Dataset(store, "corpus", "the `corpus` asset")


def write_corpus(store: ArtifactStore, corpus: Corpus) -> dict[str, Any]:
    """Tokens, window provenance and the analysis split's token index, committed together."""
    dataset, version = corpus_dataset(store), new_version()
    index = TokenIndex.build(corpus.token_array(ANALYSIS))
    store.write_npy(dataset.path(version, "tokens.npy"), corpus.tokens)
    store.write_parquet(dataset.path(version, "windows.parquet"), corpus.windows)
    store.write_npy(dataset.path(version, "postings.npy"), index.postings)
    store.write_npy(dataset.path(version, "postings_offsets.npy"), index.offsets)
    n_seq, ctx_len = corpus.tokens.shape
    return dataset.commit(version, {name: f"{name}.{'parquet' if name == 'windows' else 'npy'}"
                                    for name in CORPUS_FILES},
                          {"content_hash": corpus.content_hash, "n_tokens": corpus.n_tokens, "n_seq": n_seq,
                           "ctx_len": ctx_len, "n_train": corpus.n_train})


def read_corpus(store: ArtifactStore, with_windows: bool = False) -> Corpus:
    """The committed corpus; its tokens are memory-mapped (local) or read by rows (S3), so this
    reads almost nothing until rows are indexed."""
    dataset = corpus_dataset(store)
    manifest = dataset.read()
    tokens = store.open_array(dataset.file(manifest, "tokens"))
    windows = store.read_parquet(dataset.file(manifest, "windows")) if with_windows else pl.DataFrame()
    return Corpus(tokens, windows, manifest["content_hash"], manifest["n_train"])  # type: ignore[arg-type]


def read_token_index(store: ArtifactStore) -> TokenIndex:
    """token -> positions in the analysed windows, memory-mapped: a lookup reads one token's list."""
    dataset = corpus_dataset(store)
    manifest = dataset.read()
    return TokenIndex(store.open_array(dataset.file(manifest, "postings")),  # type: ignore[arg-type]
                      np.asarray(store.open_array(dataset.file(manifest, "postings_offsets"))[:]))


def analysis_tokens(corpus: Corpus) -> tuple[np.ndarray, range]:
    """([n_seq, ctx_len] tokens, seq ids) of the analysed (non-SAE-training) windows."""
    return corpus.token_array(ANALYSIS), corpus.rows(ANALYSIS)


# -- activations -----------------------------------------------------------------------------------
def read_manifest(store: ArtifactStore, layer: str) -> dict[str, Any]:
    return activations_dataset(store, layer).read()


# -- partitions ------------------------------------------------------------------------------------
def partition_dataset(store: ArtifactStore, asset: str, layer: str, latent_range: str) -> Dataset:
    return Dataset(store, f"{asset}/{layer}/{latent_range}", f"{asset}[{layer}|{latent_range}]")


def write_partition(store: ArtifactStore, asset: str, layer: str, latent_range: str,
                    tables: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Write every table of a multi-file partition, then commit them together."""
    if set(tables) != set(PAIRED[asset]):
        raise ValueError(f"{asset} partitions hold {sorted(PAIRED[asset])}, got {sorted(tables)}")
    dataset, version = partition_dataset(store, asset, layer, latent_range), new_version()
    for name, table in tables.items():
        store.write_parquet(dataset.path(version, f"{name}.parquet"), table)
    return dataset.commit(version, {name: f"{name}.parquet" for name in tables},
                          {name: {"rows": t.height} for name, t in tables.items()})


def partition_file(store: ArtifactStore, asset: str, layer: str, latent_range: str, suffix: str = "") -> str:
    """Root-relative path of the committed file a reader asks for (`suffix` as in `PAIRED`)."""
    if asset not in PAIRED:
        rel = partition_path(asset, layer, latent_range + suffix)
        _require(store, rel, f"{asset}[{layer}|{latent_range}]")
        return rel
    names = {s: n for n, s in PAIRED[asset].items()}
    if suffix not in names:
        raise ValueError(f"{asset} partitions have no '{suffix}' table; they hold {sorted(PAIRED[asset])}")
    dataset = partition_dataset(store, asset, layer, latent_range)
    return dataset.file(dataset.read(), names[suffix])


def read_partition_tables(store: ArtifactStore, asset: str, layer: str, latent_range: str) -> dict[str, pl.DataFrame]:
    """Every table of a multi-file partition, from one commit: never a mismatched pair."""
    dataset = partition_dataset(store, asset, layer, latent_range)
    manifest = dataset.read()
    return {name: store.read_parquet(dataset.file(manifest, name)) for name in PAIRED[asset]}


def read_partition(store: ArtifactStore, asset: str, layer: str, latent_range: str, suffix: str = "") -> pl.DataFrame:
    """One table of a partition. For a multi-file partition all its tables come from one commit."""
    return store.read_parquet(partition_file(store, asset, layer, latent_range, suffix))


def partition_exists(store: ArtifactStore, asset: str, layer: str, latent_range: str) -> bool:
    if asset in PAIRED:
        return partition_dataset(store, asset, layer, latent_range).exists()
    return store.exists(partition_path(asset, layer, latent_range))
