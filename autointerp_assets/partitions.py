"""The two partition dimensions, defined once: Dagster matches partition mappings by equality.

Both are dynamic, so nothing here depends on the config at import and a key never changes:
- `layer`: hookpoint names such as `layers.6` or `layers.6.mlp`;
- `range`: latent ranges `00000-04095`, each bound zero-padded to at least 5 digits.
Dagster orders a key's dimensions by name, so a key reads `layers.6|00000-04095`. The ranges of
every configured coder are registered (`register_partitions`); a range beyond a layer's coder
is refused by `latent_shards` with the valid ranges named.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from .config import ProjectConfig

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


def parse_latent_range(key: str) -> range:
    lo, hi = key.split("-")
    return range(int(lo), int(hi) + 1)


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
