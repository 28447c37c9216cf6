"""An AutomationCondition Dagster cannot express: "this partition is one the project's coders have".

A `layer|range` multi-partition is a cross product of two dynamic dimensions, so a layer
with a 256-latent coder also shows the ranges of a 16k-latent one. Those partitions can
only fail. This condition is true for a partition only if its layer is a configured
hookpoint and, for `layer|range` assets, the range is one that layer's coder has; ANDed in
front of every partitioned asset's condition, automation never requests anything else.

It reads the project config, so it runs in the code location: the automation sensors set
`use_user_code_server=True`.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from autointerp_assets.config import ProjectConfig
from autointerp_assets.partitions import layer_ranges


class InProjectCoders(dg.AutomationCondition):
    """True for partitions of a configured layer, within the ranges its coder has."""

    def __init__(self, ranges: Mapping[str, frozenset[str]]):
        self._ranges = dict(ranges)

    @classmethod
    def of(cls, cfg: ProjectConfig) -> InProjectCoders:
        return cls({layer: frozenset(layer_ranges(cfg, layer)) for layer in cfg.hookpoints})

    @property
    def name(self) -> str:
        return "in_project_coders"

    @property
    def description(self) -> str:
        return "partition of a configured layer, within the latent ranges its coder has"

    def accepts(self, partition_key: str) -> bool:
        layer, _, latent_range = partition_key.partition("|")
        if layer not in self._ranges:
            return False
        return not latent_range or latent_range in self._ranges[layer]

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        if not candidates.is_partitioned:
            return dg.AutomationResult(context=context, true_subset=candidates)
        keys = {k for k in candidates.expensively_compute_partition_keys() if self.accepts(k)}
        return dg.AutomationResult(context=context, true_subset=candidates.compute_intersection_with_partition_keys(keys))
