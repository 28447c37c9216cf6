"""The project config (autointerp.yaml) as a resource: what every asset reads its settings from.

`definitions.py` loads the YAML once and binds it here, so a test or a second code
location builds its own `Project.of(cfg)` instead of patching module globals.
"""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from pydantic import Field

from autointerp_assets.config import ProjectConfig


@lru_cache(maxsize=8)
def _parse(config_json: str) -> ProjectConfig:
    return ProjectConfig.model_validate_json(config_json)


class Project(dg.ConfigurableResource):
    """The validated project config; every field is documented in `autointerp_assets/config/`."""

    config_json: str = Field(description="The project config as JSON; build it with Project.of(cfg).")

    @classmethod
    def of(cls, cfg: ProjectConfig) -> Project:
        return cls(config_json=cfg.model_dump_json())

    @property
    def config(self) -> ProjectConfig:
        return _parse(self.config_json)
