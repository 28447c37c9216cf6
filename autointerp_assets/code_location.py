"""Everything a code location holds, built from one project config: assets (with the code
versions and automation conditions of `automation.py`), the observable sources, checks, jobs,
sensors, resources and the executor. `definitions.py` calls it with the config of
`$AUTOINTERP_CONFIG`; tests and the CLI call it with theirs."""

from __future__ import annotations

import os

import dagster as dg

from resources import build_resources
from sensors import build_hookpoint_sensor, build_source_assets

from .assets import ALL_ASSETS
from .assets.llm import import_explanations_job
from .assets.review import review_job
from .automation import GPU_ASSETS, LAYER_GPU_ASSETS, source_condition, with_policy
from .checks import build_asset_checks
from .config import ProjectConfig


def executor() -> dg.ExecutorDefinition:
    """A process per step. Locally they fork from a server that has imported the code location
    once (torch and the graph: ~6 s of CPU a step otherwise). $AUTOINTERP_EXECUTOR=k8s: a pod per
    step instead (deploy/README.md), so only GPU steps hold a GPU."""
    if os.environ.get("AUTOINTERP_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the deployment image

        return k8s_job_executor
    return dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": ["autointerp_assets.definitions"]}}},
        name="multiprocess_forkserver",
    )


def build_assets(cfg: ProjectConfig) -> list[dg.AssetsDefinition]:
    """The pipeline's assets with the code versions and automation conditions `cfg` gives them."""
    return with_policy(ALL_ASSETS, cfg)


def jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """Named selections for the launchpad; automation and backfills need none of them."""

    def job(name: str, assets: list[str], description: str):
        return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*assets), description=description)

    return [
        job("corpus_job", ["corpus"], description="Tokenise the corpus."),
        job("sparse_coder_to_activations_job", list(LAYER_GPU_ASSETS),
            "A layer's GPU stage: its coder and one forward pass."),
        job("latent_shards_to_scores_job", ["latent_shards", "contexts", "explanations", "scores"],
            "One latent range, shards to scores (explanations take a latent selection)."),
        job("report_job", ["report"], "A layer's roll-up."),
        review_job,
    ]


def automation_sensors() -> list[dg.AutomationConditionSensorDefinition]:
    """Two sensors so GPU work can be paused alone. Both evaluate in the code location
    (`use_user_code_server`): `sensors.coder_ranges` reads the project config."""
    gpu = dg.AssetSelection.assets(*GPU_ASSETS)
    return [
        dg.AutomationConditionSensorDefinition(
            "gpu_automation", target=gpu, use_user_code_server=True, default_status=dg.DefaultSensorStatus.RUNNING,
            description="Declarative automation of the GPU stages (sparse_coder, activations, intervention_scores); "
                        "pause it to hold GPU work.",
        ),
        dg.AutomationConditionSensorDefinition(
            "automation", target=dg.AssetSelection.all(include_sources=True) - gpu, use_user_code_server=True,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Declarative automation of everything else: sources observed on a cron, data stages eager, "
                        "LLM stages kept fresh where an operator started them (see README, Operating it).",
        ),
    ]


def build_definitions(cfg: ProjectConfig) -> dg.Definitions:
    return dg.Definitions(
        assets=[*build_assets(cfg), *build_source_assets(cfg, source_condition(cfg))],
        asset_checks=build_asset_checks(cfg.checks),
        jobs=[*jobs(), import_explanations_job],
        sensors=[build_hookpoint_sensor(cfg), *automation_sensors()],
        resources=build_resources(cfg),
        executor=executor(),
    )
