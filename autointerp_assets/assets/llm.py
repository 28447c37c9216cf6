"""The LLM half: explanations -> scores, each partition one latent range of one layer."""

from functools import cache

import dagster as dg

from resources.llm import LLMResource
from resources.project import Project
from resources.storage import Storage
from resources.subject_model import SubjectModel

from .. import lineage
from ..config import ProjectConfig
from ..explain import imported, output_side, selection
from ..explain.explainer import explain_latents
from ..explain.prompts import PROMPT_VERSIONS as EXPLAIN_PROMPT_VERSIONS
from ..explain.prompts import explainer_prompt_key
from ..partitions import layer_range_partitions, parse_latent_range
from ..report import review
from ..scoring.embedding import SentenceEncoder
from ..scoring.registry import SCORERS
from ..scoring.scores import score_latents, with_intervention
from ..scoring.summary import score_summary
from ..store import layout
from ..store.activations import activations_dataset
from ..store.store import ArtifactStore, partition_path
from .common import fails_clearly, layer_coder, layer_range

PROMPT_VERSIONS = {**EXPLAIN_PROMPT_VERSIONS, "explain/imported": imported.PROMPT_VERSION}


def _explain_prompt(cfg: ProjectConfig) -> str:
    return explainer_prompt_key(cfg.explainer.kind, cfg.explainer.show_activations, cfg.explainer.chain_of_thought)


def _llm_lineage(llm, prompt_keys: list[str]) -> dict:
    return {"llm_model": llm.model_name, "prompt_versions": dg.MetadataValue.json(
        {k: PROMPT_VERSIONS[k] for k in prompt_keys}), **llm.usage.as_metadata()}


class LatentSelection(dg.Config):
    """Which latents of the range to spend LLM calls on (the rest are recorded as skipped), or a
    file of explanations to import instead of asking the LLM (`import_explanations_job`). A
    selection given here is stored for the partition and later runs without one (automation)
    keep to it (explain/selection.py)."""

    latents: list[int] = []  # only these (empty: the stored selection, or all)
    max_latents: int | None = None  # at most this many, most frequently firing first
    all_latents: bool = False  # every latent, and store that
    import_from: str | None = None  # a .csv or .parquet file (local or s3://) with columns latent, explanation
    imported_by: str = ""  # who imports it, recorded in the lineage


@dg.asset(
    partitions_def=layer_range_partitions, deps=["contexts"], group_name="llm", pool="llm",
    kinds={"openai", "parquet"},
)
@fails_clearly
def explanations(context: dg.AssetExecutionContext, config: LatentSelection, project: Project, storage: Storage,
                 llm: LLMResource, subject_model: SubjectModel) -> dg.MaterializeResult:
    """One plain-English explanation per latent; failures and skips recorded with reasons."""
    layer, key = layer_range(context)
    cfg, store = project.config, storage.store()
    if config.import_from:
        return _import_explanations(config, store, layer, key)
    manifest = layout.read_manifest(store, layer)
    examples, skipped = layout.read_partition_tables(store, "contexts", layer, key).values()  # one commit
    stats = layout.read_partition(store, "latent_shards", layer, key, ".stats")
    chosen = selection.resolve(store, layer, key, examples, stats, config.latents, config.max_latents,
                               config.all_latents)
    client = llm.build(store, scope=f"explanations/{layer}/{key}")
    promoted = _promoted_tokens(subject_model, cfg, store, layer, key) if cfg.explainer.kind == "output_side" else None
    table = explain_latents(*selection.split(examples, skipped, chosen), client, cfg.explainer, cfg.sampling, promoted)
    table, n_kept = selection.keep_paid_for(table, examples, client, cfg.explainer, cfg.sampling, promoted)
    path = partition_path("explanations", layer, key)
    store.write_parquet(path, table)
    selection.remember(store, layer, key, chosen, context.run.run_id)
    store.write_json(partition_path("explanations", layer, key, "usage.json"), client.usage.as_metadata())
    counts = dict(table.group_by("status").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest),
            **_llm_lineage(client, [_explain_prompt(cfg)]),
            "explainer": cfg.explainer.kind,
            "explainer_config": dg.MetadataValue.json(cfg.explainer.model_dump()),
            "sampling_config": dg.MetadataValue.json(cfg.sampling.model_dump()),
            "latent_selection": dg.MetadataValue.json(chosen.as_metadata()),
            "n_kept_from_cache": n_kept,
            "n_explained": counts.get("ok", 0), "n_failed": counts.get("failed", 0),
            "n_skipped": counts.get("skipped", 0),
            "preview": dg.MetadataValue.md(lineage.markdown_table(
                table.select("latent", "status", "explanation", "reason"), max_rows=15)),
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )


def _promoted_tokens(subject_model: SubjectModel, cfg: ProjectConfig, store: ArtifactStore, layer: str,
                     key: str) -> dict[int, list[str]]:
    """The output-side explainer's input: each latent's decoder direction through the unembedding.
    Read on the CPU whatever the configured device: this step runs in the `llm` pool, without a GPU."""
    subject = subject_model.model_copy(update={"device": "cpu"}).load()
    _, coder = layer_coder(cfg, store, subject, layer)
    return output_side.promoted_tokens(subject, coder, layer, list(parse_latent_range(key)))


def _import_explanations(config: LatentSelection, store, layer: str, key: str) -> dg.MaterializeResult:
    """The imported file as this partition, checked whole before anything is written. Needs no
    upstream: explanations can be imported before the data half has run (scores needs it)."""
    try:
        source = imported.read_file(config.import_from or "", store.storage_options)
        table = imported.explanations_table(source, parse_latent_range(key))
    except imported.ExplanationImportError as e:
        raise dg.Failure(str(e)) from None
    origin = {"import_source": source.uri, "import_sha256": source.sha256, "imported_by": config.imported_by}
    path = partition_path("explanations", layer, key)
    store.write_parquet(path, table)
    store.write_json(partition_path("explanations", layer, key, "import.json"), origin)
    counts = dict(table.group_by("status").len().iter_rows())
    return dg.MaterializeResult(
        metadata={
            **(lineage.from_manifest(layout.read_manifest(store, layer))
               if activations_dataset(store, layer).exists() else {}),
            **origin, "explainer": imported.EXPLAINER,
            "n_explained": counts.get("ok", 0), "n_failed": 0, "n_skipped": counts.get("skipped", 0),
            "preview": dg.MetadataValue.md(lineage.markdown_table(
                table.select("latent", "status", "explanation", "reason"), max_rows=15)),
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )


import_explanations_job = dg.define_asset_job(
    "import_explanations_job", selection=["explanations"],
    description="Store a file of explanations (latent, explanation; .csv or .parquet) as one explanations "
    "partition. Run config: {ops: {explanations: {config: {import_from: PATH, imported_by: NAME}}}}.",
)


@cache
def _sentence_encoder() -> SentenceEncoder:
    return SentenceEncoder()


@dg.asset(
    partitions_def=layer_range_partitions, deps=[explanations, "contexts", "reviews", "intervention_scores"],
    group_name="llm",
    pool="llm", kinds={"openai", "parquet"},
)
@fails_clearly
def scores(context: dg.AssetExecutionContext, project: Project, storage: Storage,
           llm: LLMResource) -> dg.MaterializeResult:
    """Every configured scorer on the held-out test windows, with each explanation and with a shuffled
    one (the chance baseline); metrics with their n, chance and lift."""
    layer, key = layer_range(context)
    cfg, store = project.config, storage.store()
    manifest = layout.read_manifest(store, layer)
    examples = layout.read_partition(store, "contexts", layer, key)
    explained = layout.read_partition(store, "explanations", layer, key)
    explained = review.apply_edits(explained, review.standing(explained, review.read_log(store, layer, key)))
    kinds = [k for k in cfg.scorer.kinds if k in SCORERS]
    uses_llm = any(SCORERS[k].uses_llm for k in kinds)
    client = llm.build(store, scope=f"scores/{layer}/{key}") if uses_llm else None
    mode = cfg.scorer.mode(llm.backend)  # the backend that runs, which a run's resources may override
    table = score_latents(examples, explained, client, cfg.scorer, cfg.sampling, mode=mode, encoder=_sentence_encoder)
    steered = layout.partition_exists(store, "intervention_scores", layer, key)  # opt-in per range
    if steered:
        table = with_intervention(table, layout.read_partition(store, "intervention_scores", layer, key))
    path = partition_path("scores", layer, key)
    store.write_parquet(path, table)
    usage = client.usage.as_metadata() if client else {}
    store.write_json(partition_path("scores", layer, key, "usage.json"), usage)
    llm_meta = _llm_lineage(client, [_explain_prompt(cfg)]) if client else {}
    if client:
        llm_meta["prompt_versions"] = dg.MetadataValue.json(
            {k: f"{mode}:{SCORERS[k].prompt_version(mode)}" for k in kinds if SCORERS[k].uses_llm})
    return dg.MaterializeResult(
        metadata={
            **lineage.from_manifest(manifest), **llm_meta,
            **({"embedding_model": _sentence_encoder().name} if "embedding" in kinds else {}),
            "explainer": explained["explainer"][0] if explained.height else "",
            "explainer_model": (explained["explainer_model"][0] or "") if explained.height else "",
            "scorers": ", ".join(kinds + (["intervention (intervention_scores)"] if steered else [])),
            "scorer_model": client.model_name if client else "",
            "llm_scorer_mode": mode if uses_llm else "",
            "scorer_config": dg.MetadataValue.json(cfg.scorer.model_dump()),
            "sampling_seed": cfg.sampling.seed,
            **score_summary(table, kinds),
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )
