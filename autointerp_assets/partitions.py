"""The two partition dimensions, defined once: Dagster matches partition mappings by equality.

Both are dynamic, so nothing here depends on the config at import and a key never changes:
- `layer`: hookpoint names such as `layers.6` or `layers.6.mlp`;
- `range`: latent ranges `00000-04095`, each bound zero-padded to at least 5 digits.
Dagster orders a key's dimensions by name, so a key reads `layers.6|00000-04095`. The ranges of
every configured coder are registered (`register_partitions`). A multi-partition is a cross
product, so a narrow layer's grid also shows the ranges of wider coders: automation never
requests those (`sensors/coder_ranges.py`), backfills from the CLI leave them out
(`coder_partition_keys`), and `latent_shards` refuses one with the valid ranges named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import dagster as dg

from .config import ProjectConfig
from .errors import PartitionKeyError

LAYER_DIM = "layer"
RANGE_DIM = "range"

layer_partitions = dg.DynamicPartitionsDefinition(name="layer")
range_partitions = dg.DynamicPartitionsDefinition(name="latent_range")
layer_range_partitions = dg.MultiPartitionsDefinition({LAYER_DIM: layer_partitions, RANGE_DIM: range_partitions})
# Every latent range of a layer depends on that layer's one forward pass.
from_layer = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=LAYER_DIM)


def latent_range_keys(n_latents: int, width: int) -> list[str]:
    """Zero-padded, inclusive ranges: 130 latents, width 64 -> 00000-00063, 00064-00127, 00128-00129."""
    return [f"{lo:05d}-{min(lo + width, n_latents) - 1:05d}" for lo in range(0, n_latents, width)]


_RANGE = re.compile(r"^(\d{5,})-(\d{5,})$")


def parse_latent_range(key: str) -> range:
    match = _RANGE.match(key)
    if not match or int(match[1]) > int(match[2]):
        raise PartitionKeyError(f"'{key}' is not a latent range; ranges read LOW-HIGH, zero-padded, e.g. 00000-00031")
    return range(int(match[1]), int(match[2]) + 1)


def in_coder(cfg: ProjectConfig, layer: str, latent_range: str) -> bool:
    """Whether the range is one the layer's coder has (Dagster's cross product also holds others)."""
    return layer in cfg.hookpoints and latent_range in set(layer_ranges(cfg, layer))


def layer_ranges(cfg: ProjectConfig, layer: str) -> list[str]:
    """The latent ranges that layer's coder has."""
    return latent_range_keys(cfg.hookpoints[layer].n_latents, cfg.latent_range_width)


def partition_key(layer: str, latent_range: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({LAYER_DIM: layer, RANGE_DIM: latent_range})


def register_partitions(instance: dg.DagsterInstance, cfg: ProjectConfig, layers: Iterable[str] | None = None) -> list[str]:
    """Add the layer partitions (default: every hookpoint) and the latent ranges of their coders;
    return what was added. Already registered keys are left as they are."""
    layers = list(cfg.hookpoints if layers is None else layers)
    ranges = list(dict.fromkeys(r for layer in layers for r in layer_ranges(cfg, layer)))
    added = []
    for definition, keys in ((layer_partitions, layers), (range_partitions, ranges)):
        new = [k for k in keys if not instance.has_dynamic_partition(definition.name, k)]
        if new:
            instance.add_dynamic_partitions(definition.name, new)
            added += new
    return added


def coder_partition_keys(cfg: ProjectConfig, layers: Iterable[str]) -> list[str]:
    """Every `layer|range` key the layers' coders have, in order: what a backfill should cover."""
    return [str(partition_key(layer, r)) for layer in layers for r in layer_ranges(cfg, layer)]
