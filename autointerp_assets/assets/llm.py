"""The LLM half: explanations -> scores, each partition one latent range of one layer."""

from functools import cache

import dagster as dg

from resources.llm import LLMResource
from resources.project import Project
from resources.storage import Storage

from .. import lineage
from ..config import ProjectConfig
from ..explain.explainer import explain_latents, select_latents
from ..explain.prompts import PROMPT_VERSIONS as EXPLAIN_PROMPT_VERSIONS
from ..explain.prompts import explainer_prompt_key
from ..partitions import layer_range_partitions
from ..scoring.classify import score_latents
from ..scoring.embedding import SentenceEncoder, score_embedding
from ..scoring.prompts import PROMPT_VERSIONS as SCORER_PROMPT_VERSIONS
from ..store import layout
from ..store.store import partition_path
from .common import fails_clearly, layer_range

PROMPT_VERSIONS = {**EXPLAIN_PROMPT_VERSIONS, **SCORER_PROMPT_VERSIONS}


def _explain_prompt(cfg: ProjectConfig) -> str:
    return explainer_prompt_key(cfg.explainer.kind, cfg.explainer.show_activations, cfg.explainer.chain_of_thought)


def _llm_lineage(llm, prompt_keys: list[str]) -> dict:
    return {"llm_model": llm.model_name, "prompt_versions": dg.MetadataValue.json(
        {k: PROMPT_VERSIONS[k] for k in prompt_keys}), **llm.usage.as_metadata()}


class LatentSelection(dg.Config):
    """Which latents of the range to spend LLM calls on; the rest are recorded as skipped."""

    latents: list[int] = []  # only these (empty: all)
    max_latents: int | None = None  # at most this many, most frequently firing first


@dg.asset(
    partitions_def=layer_range_partitions, deps=["contexts"], code_version="1", group_name="llm", pool="llm",
    kinds={"openai", "parquet"},
)


@fails_clearly
def explanations(context: dg.AssetExecutionContext, config: LatentSelection, project: Project, storage: Storage,
                 llm: LLMResource) -> dg.MaterializeResult:
    """One plain-English explanation per latent; failures and skips recorded with reasons."""
    layer, key = layer_range(context)
    cfg, store = project.config, storage.store()
    manifest = layout.read_manifest(store, layer)
    examples = layout.read_partition(store, "contexts", layer, key)
    skipped = layout.read_partition(store, "contexts", layer, key, ".skipped")
    stats = layout.read_partition(store, "latent_shards", layer, key, ".stats")
    examples, skipped = select_latents(examples, skipped, stats, config.latents, config.max_latents)
    client = llm.build(store)
    table = explain_latents(examples, skipped, client, cfg.explainer, cfg.sampling)
    path = partition_path("explanations", layer, key)
    store.write_parquet(path, table)
    store.write_json(partition_path("explanations", layer, key, "usage.json"), client.usage.as_metadata())
    counts = dict(table.group_by("status").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **_llm_lineage(client, [_explain_prompt(cfg)]),
            "explainer": cfg.explainer.kind,
            "explainer_config": dg.MetadataValue.json(cfg.explainer.model_dump()),
            "sampling_config": dg.MetadataValue.json(cfg.sampling.model_dump()),
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
    partitions_def=layer_range_partitions, deps=[explanations, "contexts"], code_version="1", group_name="llm",
    pool="llm", kinds={"openai", "parquet"},
)


@fails_clearly
def scores(context: dg.AssetExecutionContext, project: Project, storage: Storage,
           llm: LLMResource) -> dg.MaterializeResult:
    """Detection, fuzzing and embedding scores of each explanation on the held-out test examples."""
    layer, key = layer_range(context)
    cfg, store = project.config, storage.store()
    manifest = layout.read_manifest(store, layer)
    examples = layout.read_partition(store, "contexts", layer, key)
    explained = layout.read_partition(store, "explanations", layer, key)
    client = llm.build(store)
    table = score_latents(examples, explained, client, cfg.scorer, cfg.sampling.seed)
    if "embedding" in cfg.scorer.kinds:
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
            **_llm_lineage(client, [_explain_prompt(cfg), *(k for k in cfg.scorer.kinds if k in PROMPT_VERSIONS)]),
            **({"embedding_model": _sentence_encoder().name} if "embedding" in cfg.scorer.kinds else {}),
            "explainer_model": explained["explainer_model"][0] if explained.height else "",
            "scorer_model": client.model_name,
            "scorer_config": dg.MetadataValue.json(cfg.scorer.model_dump()),
            "sampling_seed": cfg.sampling.seed,
            "n_scored": counts.get("ok", 0), "n_failed_latents": counts.get("failed", 0),
            "n_unscored": counts.get("unscored", 0), "n_failed_answers": int(table["n_failed"].sum()),
            **means,
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )

