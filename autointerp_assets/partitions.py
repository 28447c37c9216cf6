"""The two partition dimensions, defined once: Dagster matches mappings by equality."""

from __future__ import annotations

import dagster as dg

from .config import project_config

LAYER_DIM = "layer"
LATENTS_DIM = "latents"


def latent_range_keys(n_latents: int, width: int) -> list[str]:
    """Zero-padded, inclusive ranges: 130 latents, width 64 -> 00000-00063, 00064-00127, 00128-00129."""
    digits = max(5, len(str(n_latents - 1)))
    return [
        f"{lo:0{digits}d}-{min(lo + width, n_latents) - 1:0{digits}d}" for lo in range(0, n_latents, width)
    ]


def parse_latent_range(key: str) -> range:
    lo, hi = key.split("-")
    return range(int(lo), int(hi) + 1)


_config = project_config()

layer_partitions = dg.DynamicPartitionsDefinition(name="layer")
latent_partitions = dg.StaticPartitionsDefinition(latent_range_keys(_config.n_latents, _config.latent_range_width))
layer_latent_partitions = dg.MultiPartitionsDefinition({LAYER_DIM: layer_partitions, LATENTS_DIM: latent_partitions})
# Every latent range of a layer depends on that layer's one forward pass.
from_layer = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=LAYER_DIM)
