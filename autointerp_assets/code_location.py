"""Everything a code location holds, built from one project config: assets, checks, jobs,
sensors, schedules, resources and the executor. `definitions.py` calls it with the config
of `$AUTOINTERP_CONFIG`; tests call it with their own."""

from __future__ import annotations

import os

import dagster as dg

from resources import build_resources
from sensors import (
    build_hookpoint_sensor,
    build_model_update_sensor,
    build_refresh_schedules,
    build_source_assets,
)
from sensors.state import graph_of, stage_jobs

from .assets import ALL_ASSETS
from .assets.llm import import_explanations_job
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


def build_definitions(cfg: ProjectConfig) -> dg.Definitions:
    pipeline = graph_of(ALL_ASSETS)  # the planner's view of the graph
    jobs = stage_jobs(pipeline)  # one job per stage: corpus, layer (GPU), latent range (LLM), report
    return dg.Definitions(
        assets=[*ALL_ASSETS, *build_source_assets(cfg)],
        asset_checks=build_asset_checks(cfg.checks),
        jobs=[*jobs.values(), import_explanations_job],
        sensors=[build_hookpoint_sensor(cfg), build_model_update_sensor(cfg, pipeline, list(jobs.values()))],
        schedules=build_refresh_schedules(cfg, pipeline, jobs),
        resources=build_resources(cfg),
        executor=executor(),
    )
