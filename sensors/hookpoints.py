"""Hookpoint sensor: every configured hookpoint becomes a `layer` partition.

Add-only: a hookpoint removed from the config keeps its partition (and its history);
`python -m autointerp_assets add-layer` does the same by hand.
"""

import dagster as dg

from autointerp_assets.config import ProjectConfig
from autointerp_assets.partitions import layer_partitions


def build_hookpoint_sensor(cfg: ProjectConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name="hookpoint_partitions_sensor", minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds a `layer` partition for every hookpoint in the project config.",
    )
    def hookpoint_partitions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        registered = set(context.instance.get_dynamic_partitions(layer_partitions.name))
        missing = [h for h in cfg.hookpoints if h not in registered]
        if not missing:
            extra = sorted(registered - set(cfg.hookpoints))
            return dg.SkipReason("all hookpoints registered" + (f"; not in the config: {extra}" if extra else ""))
        context.log.info(f"adding layer partitions {missing}")
        return dg.SensorResult(dynamic_partitions_requests=[layer_partitions.build_add_request(missing)])

    return hookpoint_partitions_sensor
