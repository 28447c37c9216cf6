"""The code location: assets, resources from the project config, jobs, sensors, schedules."""

from __future__ import annotations

import dagster as dg

from resources.llm import LLMResource
from resources.storage import Storage
from resources.subject_model import SubjectModel

from . import assets
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


all_assets = dg.load_assets_from_modules([assets])

defs = dg.Definitions(assets=all_assets, resources=build_resources(project_config()))
