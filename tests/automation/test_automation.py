"""Declarative automation against a real (ephemeral) instance: what each tick requests.

Materialisations and observations are reported as runless events, so no model runs here;
`dg.evaluate_automation_conditions` evaluates the code location's own conditions the way the
automation sensors do.
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from support.project import small_config

from autointerp_assets.automation import code_versions, parents_of, spec_attribute
from autointerp_assets.code_location import build_assets, build_definitions
from autointerp_assets.partitions import register_partitions

LAYER, WIDE_RANGE = "layers.3", "00256-00271"  # layers.3's coder has 256 latents: the wide range is not its
P0, P1 = f"{LAYER}|00000-00015", f"{LAYER}|00016-00031"
IN_CODER = [f"{LAYER}|{lo:05d}-{lo + 15:05d}" for lo in range(0, 256, 16)]


class Ticks:
    """An instance and the automation cursor, one evaluation per `tick()`."""

    def __init__(self, cfg=None):
        self.cfg = cfg or small_config()
        self.defs = build_definitions(self.cfg)
        self.instance = dg.DagsterInstance.ephemeral()
        register_partitions(self.instance, self.cfg, [LAYER])
        self.instance.add_dynamic_partitions("latent_range", [WIDE_RANGE])  # as a wider coder would register
        self.cursor = None

    def tick(self) -> dict[str, list[str]]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested = {k.to_user_string(): sorted(str(p) for p in result.get_requested_partitions(k))
                     for k in self.defs.get_repository_def().asset_graph.get_all_asset_keys()}
        return {k: v for k, v in requested.items() if v}

    def materialised(self, asset: str, *partitions, data_version: str | None = None) -> None:
        tags = {DATA_VERSION_TAG: data_version} if data_version else None
        for p in partitions or [None]:
            self.instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=p, tags=tags))

    def observed(self, source: str, version: str, partition: str | None = None) -> None:
        self.instance.report_runless_asset_event(
            dg.AssetObservation(source, partition=partition, tags={DATA_VERSION_TAG: version}))

    def build_layer(self, explained=(P0,)) -> None:
        """Everything of the layer materialised, `explained` ranges through scores and the report."""
        self.materialised("corpus")
        self.materialised("sparse_coder", LAYER)
        self.materialised("activations", LAYER)
        self.materialised("latent_shards", *IN_CODER)
        self.materialised("contexts", *IN_CODER)
        self.materialised("explanations", *explained)
        self.materialised("scores", *explained)
        self.materialised("report", LAYER)


@pytest.fixture
def ticks():
    return Ticks()


def test_definitions_load_with_a_condition_on_every_partitioned_asset_and_sources_upstream():
    defs = build_definitions(small_config())
    graph = defs.get_repository_def().asset_graph
    partitioned = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
    assert {k.to_user_string() for k in partitioned} == {"sparse_coder", "activations", "latent_shards", "contexts",
                                                        "explanations", "reviews", "scores", "report",
                                                        "intervention_scores"}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).automation_condition is not None, key
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.materializable_asset_keys}
    assert {"subject_model_source", "sparse_coder_source"} <= parents["sparse_coder"]
    assert "subject_model_source" in parents["activations"]
    assert {s.name for s in defs.sensors} == {"hookpoint_partitions_sensor", "gpu_automation", "automation"}


def test_a_sampling_change_changes_the_code_version_of_contexts_and_below_only():
    cfg = small_config()
    before = spec_attribute(build_assets(cfg), "code_version")
    changed = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"n_top": cfg.sampling.n_top + 1})})
    after = spec_attribute(build_assets(changed), "code_version")
    assert all(before.values()) and len(set(before.values())) == len(before)
    assert {name for name in before if before[name] != after[name]} == {
        "contexts", "explanations", "reviews", "scores", "report", "intervention_scores"}


@pytest.mark.parametrize(("section", "update", "first_changed"), [
    ("corpus", {"max_tokens": 4096}, "corpus"),
    ("explainer", {"max_tokens": 99}, "explanations"),
    ("scorer", {"examples_per_prompt": 3}, "scores"),
    ("intervention", {"n_prompts": 5}, "intervention_scores"),
    ("subject_model", {"device": "cuda:3", "batch_size": 2}, None),  # where and how fast, not what
])
def test_each_config_section_changes_its_asset_and_what_is_below(section, update, first_changed):
    cfg = small_config()
    assets = build_assets(cfg)
    changed = cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=update)})
    before, after = spec_attribute(assets, "code_version"), spec_attribute(build_assets(changed), "code_version")
    moved = {name for name in before if before[name] != after[name]}
    below: set[str] = set()
    if first_changed:
        parents, below = parents_of(assets), {first_changed}
        while grown := {n for n, ps in parents.items() if ps & below} - below:
            below |= grown
    assert moved == below


def test_adding_a_layer_changes_no_code_version():
    cfg = small_config()
    more = cfg.model_copy(update={"hookpoints": {**cfg.hookpoints, "layers.9.mlp": cfg.hookpoints["layers.3.mlp"]}})
    parents = parents_of(build_assets(cfg))
    assert code_versions(cfg, parents) == code_versions(more, parents)


def test_a_new_layer_flows_down_and_never_to_ranges_beyond_its_coder(ticks):
    first = ticks.tick()
    assert first == {"corpus": ["None"], "subject_model_source": ["None"], "sparse_coder_source": [LAYER]}
    assert ticks.tick() == {}  # requested once, not again while nothing changes
    ticks.materialised("corpus")
    assert ticks.tick() == {"sparse_coder": [LAYER], "activations": [LAYER]}  # one run: the layer's GPU stage
    ticks.materialised("sparse_coder", LAYER)
    ticks.materialised("activations", LAYER)
    data = ticks.tick()
    assert data == {"latent_shards": IN_CODER, "contexts": IN_CODER}  # WIDE_RANGE exists in the grid, never asked
    ticks.materialised("latent_shards", *IN_CODER)
    ticks.materialised("contexts", *IN_CODER)
    assert ticks.tick() == {}  # the first LLM spend of a range is an operator's call


def test_a_layer_registered_later_is_built_and_what_was_missing_before_is_left_to_a_backfill(ticks):
    ticks.materialised("corpus")
    assert ticks.tick() == {"subject_model_source": ["None"], "sparse_coder_source": [LAYER]}  # corpus exists
    assert ticks.tick() == {}  # layers.3 was missing before automation started: `backfill` builds it
    register_partitions(ticks.instance, ticks.cfg, ["layers.3.mlp"])
    assert ticks.tick() == {"sparse_coder": ["layers.3.mlp"], "activations": ["layers.3.mlp"],
                            "sparse_coder_source": ["layers.3.mlp"]}


def test_explanations_kept_fresh_only_where_an_operator_explained(ticks):
    ticks.tick()
    ticks.build_layer(explained=(P0,))
    assert ticks.tick() == {}
    ticks.materialised("contexts", P0, P1)  # new contexts for an explained and an unexplained range
    assert ticks.tick() == {"explanations": [P0], "scores": [P0]}
    ticks.materialised("explanations", P0)
    ticks.materialised("scores", P0)
    assert ticks.tick() == {"report": [LAYER]}


def test_intervention_scores_kept_fresh_only_where_an_operator_ran_them(ticks):
    ticks.tick()
    ticks.build_layer(explained=(P0, P1))
    ticks.materialised("intervention_scores", P0)
    assert ticks.tick() == {}
    ticks.materialised("explanations", P0, P1)
    assert ticks.tick() == {"scores": [P0, P1], "intervention_scores": [P0]}
    ticks.materialised("intervention_scores", P0)
    ticks.materialised("scores", P0, P1)
    ticks.tick()
    ticks.materialised("sparse_coder", LAYER)  # a new coder reaches it through new explanations: not run twice
    assert "intervention_scores" not in ticks.tick()


def test_explain_new_ranges_lifts_the_gate():
    cfg = small_config()
    ticks = Ticks(cfg.model_copy(update={"automation": cfg.automation.model_copy(update={"explain_new_ranges": True})}))
    ticks.tick()
    ticks.build_layer(explained=())
    assert ticks.tick()["explanations"] == IN_CODER  # every range, once its contexts exist


def test_a_revision_flows_down_every_time_it_moves_a_b_a_b(ticks):
    """The old sensor's run keys dropped the second B; here every change of data version is new."""
    ticks.tick()
    ticks.build_layer()
    ticks.observed("sparse_coder_source", "A", LAYER)
    ticks.observed("subject_model_source", "model-1")
    assert ticks.tick() == {}  # a first observation is the baseline: what exists was built from it
    for revision in ("B", "A", "B"):
        ticks.observed("sparse_coder_source", revision, LAYER)
        assert ticks.tick() == {"sparse_coder": [LAYER], "activations": [LAYER]}, revision
        ticks.build_layer()
        ticks.tick()
    ticks.observed("sparse_coder_source", "B", LAYER)  # observed again, unchanged: nothing to do
    assert ticks.tick() == {}
    ticks.observed("subject_model_source", "model-2")
    assert ticks.tick() == {"sparse_coder": [LAYER], "activations": [LAYER]}


def test_an_edit_is_rescored_and_an_accept_is_not(ticks):
    ticks.tick()
    ticks.build_layer()
    ticks.materialised("reviews", P0, data_version="no-edits")  # an accept: the text scored is unchanged
    assert ticks.tick() == {}
    ticks.materialised("reviews", P0, data_version="no-edits")  # another accept
    assert ticks.tick() == {}
    ticks.materialised("reviews", P0, data_version="edit-17")  # an edit
    assert ticks.tick() == {"scores": [P0]}
    ticks.materialised("scores", P0)
    assert ticks.tick() == {"report": [LAYER]}
    ticks.materialised("report", LAYER)
    ticks.materialised("explanations", P0)  # new explanations: what stands is recomputed, then scored
    assert ticks.tick() == {"reviews": [P0], "scores": [P0]}  # the report waits for these scores
    ticks.materialised("reviews", P0, data_version="no-edits")  # the edit was of the old explanation
    ticks.materialised("scores", P0)
    assert ticks.tick() == {"report": [LAYER]}


def test_a_code_version_change_reruns_what_exists_from_that_asset_down(ticks):
    ticks.tick()
    ticks.build_layer()
    ticks.tick()
    cfg = ticks.cfg
    ticks.defs = build_definitions(cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"n_top": 3})}))
    requested = ticks.tick()
    assert requested == {"contexts": IN_CODER, "explanations": [P0], "scores": [P0], "report": [LAYER]}
