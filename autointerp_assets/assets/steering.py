"""The steering half: explanations -> intervention_scores, each partition one latent range of one layer.

It runs the subject model (pool `gpu`) and asks the LLM for prompt logprobs, so it spends both:
like explanations, automation only keeps fresh the ranges an operator materialised once.
"""

import dagster as dg

from resources.llm import LLMResource
from resources.project import Project
from resources.storage import Storage
from resources.subject_model import SubjectModel

from .. import lineage
from ..partitions import from_layer, layer_range_partitions, parse_latent_range
from ..report import review
from ..scoring import intervention_scores as iscores
from ..scoring.intervention import PROMPT_VERSION, steer_latents
from ..store import layout
from ..store.store import partition_path
from .common import GPU_OP_TAGS, fails_clearly, layer_coder, layer_range


@dg.asset(
    partitions_def=layer_range_partitions,
    deps=["explanations", "reviews", "corpus", dg.AssetDep("sparse_coder", partition_mapping=from_layer)],
    group_name="steering", pool="gpu", op_tags=GPU_OP_TAGS, kinds={"pytorch", "parquet"},
)
@fails_clearly
def intervention_scores(context: dg.AssetExecutionContext, project: Project, subject_model: SubjectModel,
                        storage: Storage, llm: LLMResource) -> dg.MaterializeResult:
    """Each explained latent steered from a few corpus prompts; does its explanation predict the
    steered continuations (vs other latents')? Score, AUROC, each with n, chance and lift."""
    layer, key = layer_range(context)
    cfg, store, icfg = project.config, storage.store(), project.config.intervention
    explained = layout.read_partition(store, "explanations", layer, key)
    explained = review.apply_edits(explained, review.standing(explained, review.read_log(store, layer, key)))
    subject = subject_model.load()
    _, coder = layer_coder(cfg, store, subject, layer)
    iscores.check_steerable(coder, list(parse_latent_range(key)))
    tokens, _ = layout.analysis_tokens(layout.read_corpus(store))
    prompts = iscores.corpus_prompts(tokens, icfg.n_prompts, icfg.prompt_tokens)
    steered = iscores.steered_latents(explained)
    context.log.info(f"steering {len(steered)} latents from {len(prompts)} prompts at {layer}")
    continuations = steer_latents(subject, coder, layer, steered, prompts, iscores.steering_config(icfg))
    client = llm.build(store, scope=f"intervention_scores/{layer}/{key}")
    table = iscores.score_interventions(explained, continuations, client, seed=cfg.sampling.seed,
                                        chance_baseline=cfg.scorer.chance_baseline,
                                        negative_latents=icfg.negative_latents, min_auroc_n=cfg.scorer.min_auroc_n)
    path = partition_path("intervention_scores", layer, key)
    store.write_parquet(partition_path("intervention_scores", layer, f"{key}.continuations"),
                        iscores.continuations_table(continuations))
    store.write_parquet(path, table)
    store.write_json(partition_path("intervention_scores", layer, key, "usage.json"), client.usage.as_metadata())
    return dg.MaterializeResult(
        metadata={
            **lineage.subject_lineage(subject), "coder_hash": coder.content_hash(),
            "llm_model": client.model_name, "prompt_versions": dg.MetadataValue.json({"intervention": PROMPT_VERSION}),
            **client.usage.as_metadata(),
            "intervention_config": dg.MetadataValue.json(icfg.model_dump()),
            "sampling_seed": cfg.sampling.seed,
            "prompts": dg.MetadataValue.json([subject.tokenizer.decode(p) for p in prompts]),
            **iscores.summary(table),
            "latents": lineage.table_metadata(table.drop("scorer_model", "prompt_version")),
            "path": dg.MetadataValue.path(store.uri(path)),
        },
        data_version=dg.DataVersion(lineage.frame_digest(table)),
    )
