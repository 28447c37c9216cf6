"""The asset graph, in one place. Each asset is a thin wrapper: read inputs from
storage, call the stage's pure function, write atomically, report lineage."""


import time
import uuid
from functools import cache

import dagster as dg

from resources.llm import LLMResource
from resources.storage import Storage
from resources.subject_model import SubjectModel

from . import corpus as corpus_stage
from . import layout, lineage, shards
from .activations import collect_hidden, stream_activations
from .config import NeuronsCoderConfig, TopKCoderConfig, TrainTopKCoderConfig, project_config
from .cost import estimate_cost
from .embedding import SentenceEncoder, score_embedding
from .explaining import explain_latents, select_latents
from .partitions import (
    LATENTS_DIM,
    LAYER_DIM,
    from_layer,
    layer_latent_partitions,
    layer_partitions,
    parse_latent_range,
)
from .prompts import PROMPT_VERSIONS, explainer_prompt_key
from .sampling import build_contexts
from .scoring import score_latents
from .sparse_coders import SparseCoder, load_sparse_coder, save_topk_sae
from .storage import ArtifactStore, partition_path
from .train_sae import train_topk_sae

CFG = project_config()
# On k8s (deploy/), only the GPU steps ask for a GPU.
GPU_OP_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                                       "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}}


def _layer_range(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys[LAYER_DIM], keys[LATENTS_DIM]


def _coder_config(layer: str):
    if layer not in CFG.hookpoints:
        raise dg.Failure(
            f"layer partition '{layer}' has no sparse coder in the project config; add it under `hookpoints:` "
            f"(configured: {sorted(CFG.hookpoints)})"
        )
    return CFG.hookpoints[layer]


def _load_coder(store: ArtifactStore, layer: str, d_in: int) -> SparseCoder:
    cfg = _coder_config(layer)
    if isinstance(cfg, TrainTopKCoderConfig):  # trained by the sparse_coder asset, stored under the root
        if not store.exists(f"sparse_coder/{layer}/cfg.json"):
            raise layout.MissingUpstreamError(f"no trained SAE for {layer}; materialise sparse_coder[{layer}] first")
        cfg = TopKCoderConfig(kind="topk", path=store.uri(f"sparse_coder/{layer}"), n_latents=cfg.n_latents)
    return load_sparse_coder(cfg, d_in, store.storage_options, hookpoint=layer)


def _capture_kind(layer: str) -> str:
    return "neurons" if isinstance(_coder_config(layer), NeuronsCoderConfig) else "output"


@dg.asset(code_version="1", group_name="data", kinds={"polars", "parquet"})
def corpus(context: dg.AssetExecutionContext, subject_model: SubjectModel, storage: Storage) -> dg.MaterializeResult:
    """Tokenised context windows [n_seq, ctx_len] with their source documents."""
    store = storage.store()
    subject = subject_model.load()
    docs = corpus_stage.documents(CFG.corpus, storage.storage_options())
    built = corpus_stage.build_corpus(docs, subject.tokenizer, CFG.corpus)
    store.write_parquet(layout.CORPUS_WINDOWS, built.windows)
    store.write_json(layout.CORPUS_META, {"content_hash": built.content_hash, "n_tokens": built.n_tokens})
    splits = built.windows["split"].value_counts()
    return dg.MaterializeResult(
        metadata={
            "corpus_hash": built.content_hash,
            "source": CFG.corpus.source,
            "n_windows": built.windows.height,
            "n_tokens": built.n_tokens,
            "n_documents": built.windows["doc_id"].n_unique(),
            "windows_by_split": dg.MetadataValue.json(dict(zip(*splits.to_dict(as_series=False).values()))),
            **lineage.subject_lineage(subject),
            "path": dg.MetadataValue.path(store.uri(layout.CORPUS_WINDOWS)),
        },
        data_version=dg.DataVersion(built.content_hash),
    )


@dg.asset(
    partitions_def=layer_partitions, deps=[corpus], code_version="1", group_name="data", pool="gpu",
    op_tags=GPU_OP_TAGS, kinds={"pytorch", "safetensors"},
)
def sparse_coder(context: dg.AssetExecutionContext, subject_model: SubjectModel, storage: Storage) -> dg.MaterializeResult:
    """The layer's sparse coder: loaded from a path, raw MLP neurons, or a TopK SAE trained here."""
    layer, store = context.partition_key, storage.store()
    subject = subject_model.load()
    capture = subject.resolve(layer, _capture_kind(layer))
    cfg = _coder_config(layer)
    meta: dict = {"coder_kind": cfg.kind, "hookpoint": layer}
    if isinstance(cfg, TrainTopKCoderConfig):
        built = layout.read_corpus(store)
        tokens = built.token_array(corpus_stage.SAE_TRAIN)
        if tokens.shape[0] * tokens.shape[1] < cfg.batch_tokens:
            raise dg.Failure(f"the corpus SAE-training split has {tokens.size} tokens; raise corpus.max_tokens "
                             "or corpus.sae_train_fraction")
        hidden = collect_hidden(subject, tokens, capture, subject_model.batch_size, cfg.train_tokens)
        context.log.info(f"training TopK SAE on {hidden.shape[0]} tokens x {hidden.shape[1]} dims")
        sae, stats = train_topk_sae(hidden, cfg, log=context.log.info)
        save_topk_sae(sae, store, f"sparse_coder/{layer}")
        meta |= {"fvu": stats.fvu, "l0": stats.l0, "dead_fraction": stats.dead_fraction,
                 "train_tokens": hidden.shape[0], "train_seconds": round(stats.seconds, 1),
                 "corpus_hash": built.content_hash}
    else:
        meta["source"] = getattr(cfg, "path", "neurons")
    coder = _load_coder(store, layer, subject.width(capture))  # a trained SAE is read back: the round trip is checked
    coder_hash = coder.content_hash()
    store.write_json(f"sparse_coder/{layer}/lineage.json", {"coder_hash": coder_hash, **meta})
    meta |= {"coder_hash": coder_hash, "n_latents": coder.n_latents, "d_in": coder.d_in,
             "model_id": subject.model_id, "model_revision": subject.revision}
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(coder_hash))


@dg.asset(
    partitions_def=layer_partitions, deps=[corpus, sparse_coder], code_version="1", group_name="data", pool="gpu",
    op_tags=GPU_OP_TAGS, backfill_policy=dg.BackfillPolicy.single_run(), kinds={"pytorch", "parquet"},
)
def activations(context: dg.AssetExecutionContext, subject_model: SubjectModel, storage: Storage) -> dg.MaterializeResult:
    """Non-zero (seq, pos, latent, value) per layer, in chunks. A backfill of several
    layers runs once and serves all of them from one forward pass."""
    store, subject = storage.store(), subject_model.load()
    layers = context.partition_keys
    built = layout.read_corpus(store)
    tokens, seq_ids = layout.analysis_tokens(built)
    coders, coder_hashes = {}, {}
    for layer in layers:
        capture = subject.resolve(layer, _capture_kind(layer))
        coder = _load_coder(store, layer, subject.width(capture))
        coder_hashes[layer] = coder.content_hash()
        coders[layer] = (capture, coder.to(subject.device, subject.dtype))
    run_tag = uuid.uuid4().hex[:8]  # chunks of a crashed run never mix with committed ones

    def sink(layer: str, index: int, rows) -> None:
        layout.write_activation_chunk(store, layer, run_tag, index, rows)

    started = time.perf_counter()
    stats = stream_activations(subject, tokens, seq_ids, coders, subject_model.batch_size,
                               CFG.activation_chunk_tokens, sink, context.log.info)
    seconds = time.perf_counter() - started
    metadata: dict = {"layers": ", ".join(layers), "seconds": round(seconds, 1)}
    for layer, st in stats.items():
        chunks = [layout.chunk_name(run_tag, i) for i in range(st.n_chunks)]
        manifest = {
            "chunks": chunks, "n_tokens": st.n_tokens, "nnz": st.nnz, "n_latents": st.n_latents,
            **lineage.subject_lineage(subject), "corpus_hash": built.content_hash,
            "coder_kind": _coder_config(layer).kind, "coder_hash": coder_hashes[layer],
            "coder_id": getattr(_coder_config(layer), "path", _coder_config(layer).kind),
        }
        store.write_json(layout.manifest_path(layer), manifest)  # the commit point
        for stale in store.list(f"activations/{layer}"):
            if stale.rsplit("/", 1)[-1].startswith("chunk-") and stale.rsplit("/", 1)[-1] not in chunks:
                store.delete(stale)
        prefix = f"{layer}." if len(layers) > 1 else ""
        metadata |= {f"{prefix}n_tokens": st.n_tokens, f"{prefix}nnz": st.nnz,
                     f"{prefix}density": st.density, f"{prefix}n_chunks": st.n_chunks,
                     f"{prefix}dropped_over_cap": st.dropped,
                     f"{prefix}coder_hash": manifest["coder_hash"]}
    n_tokens = next(iter(stats.values())).n_tokens
    metadata |= {"tok_per_s": round(n_tokens / seconds, 1), **lineage.subject_lineage(subject),
                 "corpus_hash": built.content_hash}
    version = lineage.digest([built.content_hash, subject.revision, *coder_hashes.values()])
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))


@dg.asset(
    partitions_def=layer_latent_partitions, deps=[dg.AssetDep(activations, partition_mapping=from_layer)],
    code_version="1", group_name="data", kinds={"polars", "parquet"},
)
def latent_shards(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
    """Latent-major non-zeros of one latent range, plus per-latent stats."""
    layer, key = _layer_range(context)
    store, latents = storage.store(), parse_latent_range(key)
    manifest = layout.read_manifest(store, layer)
    if latents.stop > manifest["n_latents"]:
        raise dg.Failure(
            f"latent range {key} is beyond the sparse coder of {layer}, which has {manifest['n_latents']} latents; "
            f"materialise ranges below {manifest['n_latents']:05d} or lower latent_range_width/n_latents in the config"
        )
    rows = shards.latent_slice(layout.read_activation_chunks(store, layer), latents)
    stats = shards.latent_stats(rows, latents, manifest["n_tokens"])
    rows_path, stats_path = layout.shard_paths(layer, key)
    store.write_parquet(rows_path, rows)
    store.write_parquet(stats_path, stats)
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            "n_rows": rows.height, "n_dead": int(stats["dead"].sum()),
            "mean_density": float(stats["density"].mean()),
            "stats_preview": dg.MetadataValue.md(lineage.markdown_table(stats, max_rows=10)),
            "path": dg.MetadataValue.path(store.uri(rows_path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(stats)),
    )


@dg.asset(
    partitions_def=layer_latent_partitions, deps=[latent_shards, corpus], code_version="1", group_name="data",
    kinds={"polars", "parquet"},
)
def contexts(context: dg.AssetExecutionContext, subject_model: SubjectModel, storage: Storage) -> dg.MaterializeResult:
    """Per latent: explanation examples and disjoint held-out test examples; skipped latents with reasons."""
    layer, key = _layer_range(context)
    store = storage.store()
    manifest = layout.read_manifest(store, layer)
    rows = layout.read_partition(store, "latent_shards", layer, key)
    tokens, seq_ids = layout.analysis_tokens(layout.read_corpus(store))
    tokenizer = subject_model.load().tokenizer
    built = build_contexts(rows, parse_latent_range(key), tokens, seq_ids,
                           lambda t: tokenizer.decode([t]), CFG.sampling)
    examples_path, skipped_path = layout.context_paths(layer, key)
    store.write_parquet(examples_path, built.examples)
    store.write_parquet(skipped_path, built.skipped)
    per_split = built.examples.group_by("split", "kind").len().sort("split", "kind")
    # What explaining and scoring this partition will cost, shown before anyone pays it.
    estimate = estimate_cost(built.examples, built.skipped, CFG.explainer, CFG.scorer, CFG.sampling, CFG.llm)
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **estimate.as_metadata(),
            "sampling_config": dg.MetadataValue.json(CFG.sampling.model_dump()),
            "n_latents_sampled": built.examples["latent"].n_unique(),
            "n_skipped": built.skipped.height,
            "n_examples": built.examples.height,
            "examples_by_split_and_kind": dg.MetadataValue.md(lineage.markdown_table(per_split)),
            "skipped": dg.MetadataValue.md(lineage.markdown_table(built.skipped)),
            "path": dg.MetadataValue.path(store.uri(examples_path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(built.examples)),
    )


EXPLAIN_PROMPT = explainer_prompt_key(CFG.explainer.kind, CFG.explainer.show_activations, CFG.explainer.chain_of_thought)


def _llm_lineage(llm, prompt_keys: list[str]) -> dict:
    return {"llm_model": llm.model_name, "prompt_versions": dg.MetadataValue.json(
        {k: PROMPT_VERSIONS[k] for k in prompt_keys}), **llm.usage.as_metadata()}


class LatentSelection(dg.Config):
    """Which latents of the range to spend LLM calls on; the rest are recorded as skipped."""

    latents: list[int] = []  # only these (empty: all)
    max_latents: int | None = None  # at most this many, most frequently firing first


@dg.asset(
    partitions_def=layer_latent_partitions, deps=[contexts], code_version="1", group_name="llm", pool="llm",
    kinds={"openai", "parquet"},
)
def explanations(context: dg.AssetExecutionContext, config: LatentSelection, storage: Storage,
                 llm: LLMResource) -> dg.MaterializeResult:
    """One plain-English explanation per latent; failures and skips recorded with reasons."""
    layer, key = _layer_range(context)
    store = storage.store()
    manifest = layout.read_manifest(store, layer)
    examples = layout.read_partition(store, "contexts", layer, key)
    skipped = layout.read_partition(store, "contexts", layer, key, ".skipped")
    stats = layout.read_partition(store, "latent_shards", layer, key, ".stats")
    examples, skipped = select_latents(examples, skipped, stats, config.latents, config.max_latents)
    client = llm.build(store)
    table = explain_latents(examples, skipped, client, CFG.explainer, CFG.sampling)
    path = partition_path("explanations", layer, key)
    store.write_parquet(path, table)
    store.write_json(partition_path("explanations", layer, key, "usage.json"), client.usage.as_metadata())
    counts = dict(table.group_by("status").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **_llm_lineage(client, [EXPLAIN_PROMPT]),
            "explainer": CFG.explainer.kind,
            "explainer_config": dg.MetadataValue.json(CFG.explainer.model_dump()),
            "sampling_config": dg.MetadataValue.json(CFG.sampling.model_dump()),
            "latent_selection": dg.MetadataValue.json(config.model_dump()),
            "n_explained": counts.get("ok", 0), "n_failed": counts.get("failed", 0),
            "n_skipped": counts.get("skipped", 0),
            "preview": dg.MetadataValue.md(lineage.markdown_table(
                table.select("latent", "status", "explanation", "reason"), max_rows=15)),
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )


@cache
def _sentence_encoder() -> SentenceEncoder:
    return SentenceEncoder()


@dg.asset(
    partitions_def=layer_latent_partitions, deps=[explanations, contexts], code_version="1", group_name="llm",
    pool="llm", kinds={"openai", "parquet"},
)
def scores(context: dg.AssetExecutionContext, storage: Storage, llm: LLMResource) -> dg.MaterializeResult:
    """Detection, fuzzing and embedding scores of each explanation on the held-out test examples."""
    layer, key = _layer_range(context)
    store = storage.store()
    manifest = layout.read_manifest(store, layer)
    examples = layout.read_partition(store, "contexts", layer, key)
    explained = layout.read_partition(store, "explanations", layer, key)
    client = llm.build(store)
    table = score_latents(examples, explained, client, CFG.scorer, CFG.sampling.seed)
    if "embedding" in CFG.scorer.kinds:
        table = table.join(score_embedding(examples, explained, _sentence_encoder()), on="latent", how="left")
    path = partition_path("scores", layer, key)
    store.write_parquet(path, table)
    store.write_json(partition_path("scores", layer, key, "usage.json"), client.usage.as_metadata())
    counts = dict(table.group_by("status").len().iter_rows())
    means = {f"mean_{c}": float(table[c].mean()) for c in table.columns
             if c.endswith(("_balanced_accuracy", "_auroc")) and table[c].null_count() < table.height}
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **_llm_lineage(client, [EXPLAIN_PROMPT, *(k for k in CFG.scorer.kinds if k in PROMPT_VERSIONS)]),
            **({"embedding_model": _sentence_encoder().name} if "embedding" in CFG.scorer.kinds else {}),
            "explainer_model": explained["explainer_model"][0] if explained.height else "",
            "scorer_model": client.model_name,
            "scorer_config": dg.MetadataValue.json(CFG.scorer.model_dump()),
            "sampling_seed": CFG.sampling.seed,
            "n_scored": counts.get("ok", 0), "n_failed_latents": counts.get("failed", 0),
            "n_unscored": counts.get("unscored", 0), "n_failed_answers": int(table["n_failed"].sum()),
            **means,
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )


@dg.asset(
    partitions_def=layer_partitions, deps=[dg.AssetDep(scores, partition_mapping=from_layer)], code_version="1",
    group_name="report", kinds={"polars"},
)
def report(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
    """Per-layer roll-up of every scored latent range: table, histograms, score vs frequency."""
    from .report import build_report

    layer, store = context.partition_key, storage.store()
    summary = build_report(store, layer)
    path = f"report/{layer}/summary.parquet"
    store.write_parquet(path, summary.table)
    return dg.MaterializeResult(
        metadata={**lineage.from_manifest(layout.read_manifest(store, layer)), **summary.metadata,
                  "report": dg.MetadataValue.md(summary.markdown),
                  "path": dg.MetadataValue.path(store.uri(path))},
        data_version=dg.DataVersion(lineage.frame_digest(summary.table)),
    )
