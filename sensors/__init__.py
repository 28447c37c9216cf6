"""Sensors and schedules: layer partitions from the config, re-runs on model/coder updates,
and cron refreshes of stale or missing partitions."""

from .hookpoints import build_hookpoint_sensor
from .model_update import build_model_update_sensor, build_source_assets
from .refresh import build_refresh_schedules

__all__ = ["build_hookpoint_sensor", "build_model_update_sensor", "build_refresh_schedules", "build_source_assets"]
