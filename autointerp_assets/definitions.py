"""The code location: assets, resources from the project config, jobs, sensors, schedules."""

from __future__ import annotations

import os

import dagster as dg

from resources.llm import LLMResource
from resources.storage import Storage
from resources.subject_model import SubjectModel
from sensors import (
    build_hookpoint_sensor,
    build_model_update_sensor,
    build_refresh_schedules,
    build_source_assets,
)
from sensors.state import graph_of, stage_jobs

from . import assets
from .checks import build_asset_checks
from .config import ProjectConfig, project_config


def build_resources(cfg: ProjectConfig) -> dict[str, dg.ConfigurableResource]:
    llm = cfg.llm
    return {
        "subject_model": SubjectModel(
            model_id=cfg.subject_model.id, revision=cfg.subject_model.revision, dtype=cfg.subject_model.dtype,
            device=cfg.subject_model.device, batch_size=cfg.subject_model.batch_size,
        ),
        "storage": Storage(root=cfg.storage_root),
        "llm": LLMResource(
            backend=llm.backend, base_url=llm.base_url, model=llm.model,
            api_key=dg.EnvVar(llm.api_key_env) if llm.api_key_env else None,
            max_concurrency=llm.max_concurrency, requests_per_minute=llm.requests_per_minute,
            timeout_s=llm.timeout_s, max_retries=llm.max_retries,
            price_per_million_input=llm.price_per_million_input,
            price_per_million_output=llm.price_per_million_output,
        ),
    }


def executor() -> dg.ExecutorDefinition:
    """A process per step. Locally they fork from a server that has imported this module once
    (torch and the graph: ~6 s of CPU a step otherwise). $AUTOINTERP_EXECUTOR=k8s: a pod per
    step instead (deploy/README.md), so only GPU steps hold a GPU."""
    if os.environ.get("AUTOINTERP_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the deployment image

        return k8s_job_executor
    return dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": [__name__]}}}, name="multiprocess_forkserver"
    )


all_assets = dg.load_assets_from_modules([assets])

_cfg = project_config()
pipeline = graph_of(all_assets)  # type: ignore[arg-type]  # the planner's view of the graph
jobs = stage_jobs(pipeline)  # one job per stage: corpus, layer (GPU), latent range (LLM), report

defs = dg.Definitions(
    assets=[*all_assets, *build_source_assets(_cfg)],
    asset_checks=build_asset_checks(_cfg.checks),
    jobs=list(jobs.values()),
    sensors=[build_hookpoint_sensor(_cfg), build_model_update_sensor(_cfg, pipeline, list(jobs.values()))],
    schedules=build_refresh_schedules(_cfg, pipeline, jobs),
    resources=build_resources(_cfg),
    executor=executor(),
)
