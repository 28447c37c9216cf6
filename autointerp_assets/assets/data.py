"""The data half: corpus -> sparse_coder -> activations -> latent_shards -> contexts.

Each asset is a thin wrapper: read inputs from storage, call the stage's pure function,
write atomically, report lineage.
"""

import time

import dagster as dg

from resources.project import Project
from resources.storage import Storage
from resources.subject_model import SubjectModel
from resources.tokenizer import Tokenizer

from .. import lineage
from ..coders import save_topk_sae
from ..coders.train import train_topk_sae
from ..config import TrainTopKCoderConfig
from ..data import corpus as corpus_stage
from ..data import shards
from ..data.activations import collect_hidden, stream_activations
from ..data.sampling import build_contexts
from ..partitions import from_layer, layer_partitions, layer_range_partitions, parse_latent_range
from ..report.cost import estimate_cost
from ..scoring.embedding import SentenceEncoder
from ..store import layout
from ..store.activations import ActivationRunWriter, range_files, read_latent_range
from .common import (
    CODER_SOURCE,
    GPU_OP_TAGS,
    SUBJECT_SOURCE,
    capture_kind,
    coder_config,
    fails_clearly,
    layer_coder,
    layer_range,
    load_coder,
)


@dg.asset(group_name="data", kinds={"polars", "parquet"})
@fails_clearly
def corpus(context: dg.AssetExecutionContext, project: Project, tokenizer: Tokenizer,
           storage: Storage) -> dg.MaterializeResult:
    """Tokenised context windows [n_seq, ctx_len] with their source documents."""
    cfg, store = project.config, storage.store()
    skipped = corpus_stage.SkippedDocuments()  # binary or undecodable: left out, counted, reported
    docs = corpus_stage.documents(cfg.corpus, storage.storage_options(), skipped)
    built = corpus_stage.build_corpus(docs, tokenizer.load(), cfg.corpus)
    if skipped.items:
        context.log.warning(f"skipped {len(skipped.items)} corpus documents that are not text, e.g. "
                            f"{skipped.items[0][0]}: {skipped.items[0][1]}")
    manifest = layout.write_corpus(store, built)
    splits = built.windows["split"].value_counts()
    return dg.MaterializeResult(
        metadata={
            "corpus_hash": built.content_hash,
            "source": cfg.corpus.source,
            "n_windows": built.windows.height,
            "n_tokens": built.n_tokens,
            "n_documents": built.windows["doc_id"].n_unique(),
            **skipped.as_metadata(),
            "windows_by_split": dg.MetadataValue.json(dict(zip(*splits.to_dict(as_series=False).values()))),
            **tokenizer.lineage(),
            "path": dg.MetadataValue.path(store.uri(f"corpus/{manifest['files']['tokens']}")),
        },
        data_version=dg.DataVersion(built.content_hash),
    )


@dg.asset(
    partitions_def=layer_partitions, deps=[corpus, CODER_SOURCE, SUBJECT_SOURCE], group_name="data", pool="gpu",
    op_tags=GPU_OP_TAGS, kinds={"pytorch", "safetensors"},
)
@fails_clearly
def sparse_coder(context: dg.AssetExecutionContext, project: Project, subject_model: SubjectModel,
                 storage: Storage) -> dg.MaterializeResult:
    """The layer's sparse coder: loaded from a path, raw MLP neurons, or a TopK SAE trained here."""
    layer, store = context.partition_key, storage.store()
    subject = subject_model.load()
    capture = subject.resolve(layer, capture_kind(project.config, layer))
    cfg = coder_config(project.config, layer)
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
    coder = load_coder(project.config, store, layer, subject.width(capture))  # a trained SAE is read back: the round trip is checked
    coder_hash = coder.content_hash()
    store.write_json(f"sparse_coder/{layer}/lineage.json", {"coder_hash": coder_hash, **meta})
    meta |= {"coder_hash": coder_hash, "n_latents": coder.n_latents, "d_in": coder.d_in, "reads": coder.reads,
             "model_id": subject.model_id, "model_revision": subject.revision}
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(coder_hash))


@dg.asset(
    partitions_def=layer_partitions, deps=[corpus, sparse_coder, SUBJECT_SOURCE], group_name="data", pool="gpu",
    op_tags=GPU_OP_TAGS, backfill_policy=dg.BackfillPolicy.single_run(), kinds={"pytorch", "parquet"},
)
@fails_clearly
def activations(context: dg.AssetExecutionContext, project: Project, subject_model: SubjectModel,
                storage: Storage) -> dg.MaterializeResult:
    """Non-zero (seq, pos, latent, value) per layer, in chunks. A backfill of several
    layers runs once and serves all of them from one forward pass."""
    cfg, store, subject = project.config, storage.store(), subject_model.load()
    layers = context.partition_keys
    built = layout.read_corpus(store)
    tokens, seq_ids = layout.analysis_tokens(built)
    coders, coder_hashes, writers = {}, {}, {}
    for layer in layers:
        capture, coder = layer_coder(cfg, store, subject, layer)
        coder_hashes[layer] = coder.content_hash()
        coders[layer] = (capture, coder.to(subject.device, subject.dtype))
        # Each run writes under its own directory: a crashed or concurrent run never touches this one's files.
        writers[layer] = ActivationRunWriter(store, layer, coder.n_latents, cfg.latent_range_width)

    def sink(layer: str, index: int, rows) -> None:
        writers[layer].write_chunk(index, rows)

    started = time.perf_counter()
    stats = stream_activations(subject, tokens, seq_ids, coders, subject_model.batch_size,
                               cfg.activation_chunk_tokens, sink, context.log.info)
    seconds = time.perf_counter() - started
    metadata: dict = {"layers": ", ".join(layers), "seconds": round(seconds, 1)}
    for layer, st in stats.items():
        manifest = writers[layer].commit({  # the commit point: swaps the layer's manifest to this run
            "n_tokens": st.n_tokens, "nnz": st.nnz, "n_chunks": st.n_chunks,
            **lineage.subject_lineage(subject), "corpus_hash": built.content_hash,
            "coder_kind": cfg.hookpoints[layer].kind, "coder_hash": coder_hashes[layer],
            "coder_id": getattr(cfg.hookpoints[layer], "path", cfg.hookpoints[layer].kind),
        })
        prefix = f"{layer}." if len(layers) > 1 else ""
        metadata |= {f"{prefix}n_tokens": st.n_tokens, f"{prefix}nnz": st.nnz,
                     f"{prefix}density": st.density, f"{prefix}n_chunks": st.n_chunks,
                     f"{prefix}dropped_over_cap": st.dropped,
                     f"{prefix}coder_hash": manifest["coder_hash"], f"{prefix}run": manifest["version"],
                     f"{prefix}bytes": manifest["total_bytes"]}
    n_tokens = next(iter(stats.values())).n_tokens
    metadata |= {"tok_per_s": round(n_tokens / seconds, 1), **lineage.subject_lineage(subject),
                 "corpus_hash": built.content_hash}
    version = lineage.digest([built.content_hash, subject.revision, *coder_hashes.values()])
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))


@dg.asset(
    partitions_def=layer_range_partitions, deps=[dg.AssetDep(activations, partition_mapping=from_layer)],
    group_name="data", kinds={"polars", "parquet"},
)
@fails_clearly
def latent_shards(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
    """Latent-major non-zeros of one latent range, plus per-latent stats."""
    layer, key = layer_range(context)
    store, latents = storage.store(), parse_latent_range(key)
    manifest = layout.read_manifest(store, layer)
    if latents.stop > manifest["n_latents"]:
        raise dg.Failure(
            f"latent range {key} is beyond the sparse coder of {layer}, which has {manifest['n_latents']} latents; "
            f"materialise ranges below {manifest['n_latents']:05d} or lower latent_range_width/n_latents in the config"
        )
    read_before = store.bytes_read
    rows = shards.latent_slice(read_latent_range(store, layer, manifest, latents), latents)
    activation_bytes_read = store.bytes_read - read_before
    stats = shards.latent_stats(rows, latents, manifest["n_tokens"])
    written = layout.write_partition(store, "latent_shards", layer, key, {"rows": rows, "stats": stats})
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            "n_rows": rows.height, "n_dead": int(stats["dead"].sum()),
            "mean_density": float(stats["density"].mean()),
            "activations_run": manifest["version"],
            # What this range read of its layer: its own buckets, not the whole layer.
            "activation_bytes_read": activation_bytes_read, "activation_files_read": len(range_files(manifest, latents)),
            "layer_activation_bytes": manifest["total_bytes"],
            "stats_preview": dg.MetadataValue.md(lineage.markdown_table(stats, max_rows=10)),
            "path": dg.MetadataValue.path(store.uri(f"latent_shards/{layer}/{key}/{written['files']['rows']}")),
        },
        data_version=dg.DataVersion(lineage.frame_digest(stats)),
    )


@dg.asset(
    partitions_def=layer_range_partitions, deps=[latent_shards, corpus], group_name="data",
    kinds={"polars", "parquet"},
)
@fails_clearly
def contexts(context: dg.AssetExecutionContext, project: Project, tokenizer: Tokenizer,
             storage: Storage) -> dg.MaterializeResult:
    """Per latent: explanation examples and disjoint held-out test examples; skipped latents with reasons."""
    layer, key = layer_range(context)
    cfg, store = project.config, storage.store()
    manifest = layout.read_manifest(store, layer)
    rows = layout.read_partition(store, "latent_shards", layer, key)
    # Memory-mapped tokens and token index: only the windows this range's latents need are read.
    tokens, seq_ids = layout.analysis_tokens(layout.read_corpus(store))
    decoder = tokenizer.load()
    embed = SentenceEncoder().embed if cfg.sampling.n_similar_negatives else None  # similar negatives only
    built = build_contexts(rows, parse_latent_range(key), tokens, seq_ids,
                           lambda t: decoder.decode([t]), cfg.sampling, layout.read_token_index(store), embed)
    written = layout.write_partition(store, "contexts", layer, key,
                                     {"examples": built.examples, "skipped": built.skipped})
    per_split = built.examples.group_by("split", "kind").len().sort("split", "kind")
    # What explaining and scoring this partition will cost, shown before anyone pays it.
    estimate = estimate_cost(built.examples, built.skipped, cfg.explainer, cfg.scorer, cfg.sampling, cfg.llm)
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **estimate.as_metadata(),
            "sampling_config": dg.MetadataValue.json(cfg.sampling.model_dump()),
            "n_latents_sampled": built.examples["latent"].n_unique(),
            "n_skipped": built.skipped.height,
            "n_examples": built.examples.height,
            "examples_by_split_and_kind": dg.MetadataValue.md(lineage.markdown_table(per_split)),
            "skipped": dg.MetadataValue.md(lineage.markdown_table(built.skipped)),
            "corpus_bytes_read": store.bytes_read,
            # Dense latents and few look-alikes leave latents with fewer negatives than asked for.
            "n_latents_short_of_negatives": built.shortfalls["latent"].n_unique(),
            "n_negatives_missing": int((built.shortfalls["wanted"] - built.shortfalls["found"]).sum()),
            "negative_shortfalls": dg.MetadataValue.md(lineage.markdown_table(built.shortfalls, max_rows=20)),
            "path": dg.MetadataValue.path(store.uri(f"contexts/{layer}/{key}/{written['files']['examples']}")),
        },
        data_version=dg.DataVersion(lineage.frame_digest(built.examples)),
    )

