"""How the pipeline keeps itself fresh, the Dagster way: a code version and an AutomationCondition
per asset, both derived from the project config when the code location loads.

Code versions say what changes an output. Each asset's is a digest of the config it reads,
the prompt template versions it sends, the `CODE_VERSION` constant of its stage module, and
the code versions of its parents. So a sampling change changes `contexts` and everything below
it, and nothing above; Dagster then shows those partitions as stale. A coder's own settings
are per layer, so they are data versions of `sparse_coder_source[layer]`, not code versions:
adding or changing one layer's coder leaves the other layers alone.

Conditions (Declarative Automation; `sensors/coder_ranges.py` adds what Dagster cannot say,
that a partition is one its layer's coder has). Each runs once per trigger, never while
anything upstream or the partition itself is running or backfilling, and a failed run is not
retried until something changes again. Partitions missing before automation first ran are a
backfill's job, as in Dagster's `eager`.
- corpus: missing, or its code version changed.
- GPU stages (sparse_coder, activations, intervention_scores; their own sensor `gpu_automation`,
  so an operator can pause GPU work alone): a newly registered layer, a new corpus, a code version
  change, or a new revision of the model or coder (a source's first observation is its baseline,
  not a change). The activations of layers requested together run as one backfill run: one forward pass.
- intervention_scores (GPU and LLM): like explanations, keeps fresh only ranges an operator
  materialised once; re-run when its explanations or their edits change (a new coder or corpus
  reaches it through them, so it is not run twice).
- data stages (latent_shards, contexts): eager, plus code version changes.
- explanations: keeps fresh only ranges an operator explained once (the first spend is a
  person's call, after `contexts` has shown the estimated cost), with the stored latent
  selection; `automation.explain_new_ranges` lifts that gate.
- scores: eager after explanations; an edit in `reviews` (a changed data version) re-scores;
  accept and reject change no text and re-score nothing.
- reviews: recomputed when explanations change, where someone reviewed.
- report: after its layer's scores settle, not held back by ranges never scored.
- the sources: observed at the start, then on `automation.observe_cron`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
from pydantic import BaseModel

from sensors.coder_ranges import InProjectCoders

from . import coders
from .config import ProjectConfig
from .data import activations, corpus, sampling, shards
from .explain import explainer
from .explain.prompts import PROMPT_VERSIONS as EXPLAIN_PROMPTS
from .explain.prompts import explainer_prompt_key
from .report import review, rollup
from .scoring import CODE_VERSION as SCORING_CODE_VERSION
from .scoring import intervention, intervention_scores
from .scoring.registry import SCORERS

AC = dg.AutomationCondition
LAYER_GPU_ASSETS = ("sparse_coder", "activations")  # a layer's GPU stage: one run, one forward pass
GPU_ASSETS = (*LAYER_GPU_ASSETS, "intervention_scores")


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def stage_inputs(cfg: ProjectConfig) -> dict[str, dict[str, Any]]:
    """Per asset: everything besides its parents that changes what it writes."""
    explain_prompt = explainer_prompt_key(cfg.explainer.kind, cfg.explainer.show_activations,
                                          cfg.explainer.chain_of_thought)
    model = {"dtype": cfg.subject_model.dtype}  # device and batch size change speed, not results
    mode = cfg.scorer.mode(cfg.llm.backend)
    return {
        "corpus": {"code": corpus.CODE_VERSION, "corpus": cfg.corpus, "tokenizer": cfg.subject_model.id},
        "sparse_coder": {"code": coders.CODE_VERSION, **model},
        "activations": {"code": activations.CODE_VERSION, **model},
        "latent_shards": {"code": shards.CODE_VERSION},
        "contexts": {"code": sampling.CODE_VERSION, "sampling": cfg.sampling},
        "explanations": {"code": explainer.CODE_VERSION, "explainer": cfg.explainer, "sampling": cfg.sampling,
                         "llm": cfg.llm.model, "prompts": {explain_prompt: EXPLAIN_PROMPTS[explain_prompt]}},
        "reviews": {"code": review.CODE_VERSION},
        "scores": {"code": SCORING_CODE_VERSION, "scorer": cfg.scorer, "seed": cfg.sampling.seed,
                   "llm": cfg.llm.model,
                   "prompts": {k: SCORERS[k].prompt_version(mode) for k in cfg.scorer.kinds if SCORERS[k].uses_llm}},
        "intervention_scores": {"code": intervention_scores.CODE_VERSION, "intervention": cfg.intervention,
                                "prompts": intervention.PROMPT_VERSION, "llm": cfg.llm.model, **model,
                                "seed": cfg.sampling.seed, "chance_baseline": cfg.scorer.chance_baseline,
                                "min_auroc_n": cfg.scorer.min_auroc_n},
        "report": {"code": rollup.CODE_VERSION},
    }


def code_versions(cfg: ProjectConfig, parents: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """asset -> 12-hex digest of its own inputs and its parents' code versions.
    `parents` maps each asset to its upstream assets (sources and unknown keys are ignored)."""
    inputs = stage_inputs(cfg)
    versions: dict[str, str] = {}

    def version(name: str) -> str:
        if name not in versions:
            ups = sorted(p for p in parents[name] if p in inputs)
            payload = {"own": {k: _dump(v) for k, v in inputs[name].items()},
                       "parents": {p: version(p) for p in ups}}
            versions[name] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        return versions[name]

    for name in inputs:
        if name in parents:
            version(name)
    return versions


# -- conditions ------------------------------------------------------------------------------

_ANY_MISSING = AC.any_deps_missing()
# What is missing when automation first looks (the corpus of a fresh instance, the sources):
# `since_last_handled` starts afresh on the first tick, so on its own it sees only partitions
# that go missing later. Partitions already missing then are a backfill's job
# (`python -m autointerp_assets backfill`), as in Dagster's `eager`.
_MISSING_AT_START = (AC.missing() & AC.initial_evaluation()).with_label("missing when automation started")
SOURCES = dg.AssetSelection.assets("subject_model_source", "sparse_coder_source")


def _runs_when(trigger: AC, label: str, missing_deps: AC | None = _ANY_MISSING, at_start: bool = False) -> AC:
    """`trigger` since this partition was last requested (or, with `at_start`, missing on the
    first tick), with nothing upstream missing (as `missing_deps` says; None: not checked) or
    running, and the partition itself not running: the shape of Dagster's `eager`. A failed
    run is not retried until the trigger fires again."""
    fired = trigger.since_last_handled()
    if at_start:
        fired = fired | _MISSING_AT_START
    condition = fired
    if missing_deps is not None:
        condition = condition & ~missing_deps
    return (condition & ~AC.any_deps_in_progress() & ~AC.in_progress()).with_label(label)


def _gpu_trigger() -> AC:
    """A new layer, a new corpus, a code change, or a new revision of the model or coder. A
    source's first observation is its baseline, not a change: what exists was built from it."""
    first_sighting = (~AC.missing()).newly_true().with_label("first observation")
    revised = AC.any_deps_match(AC.newly_updated() & ~first_sighting).allow(SOURCES).with_label("new revision")
    return AC.newly_missing() | AC.any_deps_updated().ignore(SOURCES) | revised | AC.code_version_changed()


def conditions(cfg: ProjectConfig) -> dict[str, AC]:
    in_coders = InProjectCoders.of(cfg)
    new_or_changed = AC.newly_missing() | AC.any_deps_updated() | AC.code_version_changed()
    kept_fresh = AC.any_deps_updated() | AC.code_version_changed()
    explanations = ~AC.missing() & _runs_when(kept_fresh, "explained once: keep fresh")
    if cfg.automation.explain_new_ranges:
        explanations = _runs_when(new_or_changed, "eager (explain_new_ranges)")
    reviews_only = dg.AssetSelection.assets("reviews")
    edited = AC.any_deps_match(AC.data_version_changed()).allow(reviews_only).with_label("an edit in reviews")
    scores_trigger = (AC.any_deps_updated().ignore(reviews_only) | edited | AC.code_version_changed())
    # Nothing reviewed yet, or never steered (intervention_scores is opt-in per range), holds nothing back.
    rescore = {"missing_deps": AC.any_deps_missing().ignore(reviews_only | dg.AssetSelection.assets("intervention_scores"))}
    via_explanations = dg.AssetSelection.assets("corpus", "sparse_coder")
    intervention_trigger = (AC.any_deps_updated().ignore(reviews_only | via_explanations) | edited
                            | AC.code_version_changed())
    gpu = _runs_when(_gpu_trigger(), "gpu: new layer, revision, corpus or code",
                     missing_deps=AC.any_deps_missing().ignore(SOURCES))  # an unobserved source holds nothing back
    return {
        "corpus": _runs_when(AC.newly_missing() | AC.code_version_changed(), "missing or code changed", at_start=True),
        "sparse_coder": in_coders & gpu,
        "activations": in_coders & gpu,
        "latent_shards": in_coders & _runs_when(new_or_changed, "eager"),
        "contexts": in_coders & _runs_when(new_or_changed, "eager"),
        "explanations": in_coders & explanations,
        "reviews": in_coders & ~AC.missing() & _runs_when(AC.any_deps_updated(), "explanations changed"),
        "scores": in_coders & _runs_when(scores_trigger, "eager; re-score edits", **rescore),
        "intervention_scores": in_coders & ~AC.missing() & _runs_when(
            intervention_trigger, "scored once: keep fresh, re-score edits", **rescore),
        # A roll-up of the ranges that exist (ranges never scored must not hold it back), once
        # none of its scores is running, backfilled or requested: one roll-up after a burst.
        "report": in_coders & ~AC.any_deps_match(AC.will_be_requested()) & _runs_when(
            kept_fresh, "any scores of the layer updated", missing_deps=None),
    }


def source_condition(cfg: ProjectConfig) -> AC:
    cron = cfg.automation.observe_cron
    fired = (AC.newly_missing() | AC.cron_tick_passed(cron)).since_last_handled() | _MISSING_AT_START
    return (fired & ~AC.in_progress()).with_label(f"observe when never observed, then on {cron}")


def parents_of(assets: Iterable[dg.AssetsDefinition]) -> dict[str, set[str]]:
    return {spec.key.to_user_string(): {d.asset_key.to_user_string() for d in spec.deps}
            for a in assets for spec in a.specs}


def with_policy(assets: Iterable[dg.AssetsDefinition], cfg: ProjectConfig) -> list[dg.AssetsDefinition]:
    """The assets with the code version and automation condition `cfg` gives each."""
    assets = list(assets)
    versions = code_versions(cfg, parents_of(assets))
    conds = conditions(cfg)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(code_version=versions[name], automation_condition=conds[name])

    return [a.map_asset_specs(apply) for a in assets]


def spec_attribute(assets: Iterable[dg.AssetsDefinition], attribute: str) -> dict[str, Any]:
    """name -> an attribute of each asset's spec (code_version, automation_condition, ...)."""
    return {s.key.to_user_string(): getattr(s, attribute) for a in assets for s in a.specs}

