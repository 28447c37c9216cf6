"""Dagster resources, each built from its section of the project config."""

from __future__ import annotations

import dagster as dg

from autointerp_assets.config import ProjectConfig

from .llm import LLMResource
from .project import Project
from .storage import Storage
from .subject_model import SubjectModel
from .tokenizer import Tokenizer

__all__ = ["LLMResource", "Project", "Storage", "SubjectModel", "Tokenizer", "build_resources"]


def build_resources(cfg: ProjectConfig) -> dict[str, dg.ConfigurableResource]:
    """The resources of a code location running `cfg`."""
    llm = cfg.llm
    return {
        "project": Project.of(cfg),
        "subject_model": SubjectModel(
            model_id=cfg.subject_model.id, revision=cfg.subject_model.revision, dtype=cfg.subject_model.dtype,
            device=cfg.subject_model.device, batch_size=cfg.subject_model.batch_size,
        ),
        "tokenizer": Tokenizer(model_id=cfg.subject_model.id, revision=cfg.subject_model.revision),
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
