"""Hookpoint sensor: every configured hookpoint becomes a `layer` partition.

Add-only: a hookpoint removed from the config keeps its partition (and its history);
`python -m autointerp_assets add-layer` does the same by hand.
"""

import dagster as dg

from autointerp_assets.config import ProjectConfig
from autointerp_assets.partitions import layer_partitions, layer_ranges, range_partitions


def build_hookpoint_sensor(cfg: ProjectConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name="hookpoint_partitions_sensor", minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds a `layer` partition for every hookpoint in the project config, and the latent ranges of its coder.",
    )
    def hookpoint_partitions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        registered = set(context.instance.get_dynamic_partitions(layer_partitions.name))
        missing = [h for h in cfg.hookpoints if h not in registered]
        have_ranges = set(context.instance.get_dynamic_partitions(range_partitions.name))
        ranges = [r for h in cfg.hookpoints for r in layer_ranges(cfg, h) if r not in have_ranges]
        ranges = list(dict.fromkeys(ranges))
        if not missing and not ranges:
            extra = sorted(registered - set(cfg.hookpoints))
            return dg.SkipReason("all hookpoints registered" + (f"; not in the config: {extra}" if extra else ""))
        context.log.info(f"adding layer partitions {missing} and {len(ranges)} latent ranges")
        requests = [d.build_add_request(keys) for d, keys in ((layer_partitions, missing), (range_partitions, ranges)) if keys]
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return hookpoint_partitions_sensor
