"""Partition keys as a user types them, checked against the project config before anything runs.

A layer key must be a configured hookpoint; a range key one of that layer's coder's ranges;
a combined key reads `layer|range`, layer first. Every error lists the valid keys and the form.
"""

from __future__ import annotations

import re

from .config import ProjectConfig
from .errors import PartitionKeyError
from .partitions import layer_ranges

_RANGE_FORM = re.compile(r"^\d{5,}-\d{5,}$")
_SHOWN = 3


def _listing(keys: list[str]) -> str:
    if len(keys) <= 2 * _SHOWN:
        return ", ".join(keys)
    return f"{', '.join(keys[:_SHOWN])}, …, {', '.join(keys[-_SHOWN:])} ({len(keys)} ranges)"


def _layers(cfg: ProjectConfig) -> str:
    return ", ".join(cfg.hookpoints)


def check_layer(cfg: ProjectConfig, layer: str) -> str:
    if layer in cfg.hookpoints:
        return layer
    if _RANGE_FORM.match(layer):
        raise PartitionKeyError(f"'{layer}' is a latent range, not a layer; a layer is a configured hookpoint: "
                                f"{_layers(cfg)}")
    raise PartitionKeyError(f"layer '{layer}' is not a hookpoint of the project config; valid layers: {_layers(cfg)} "
                            "(add others under `hookpoints:` in the config)")


def check_range(cfg: ProjectConfig, layer: str, latent_range: str) -> str:
    valid = layer_ranges(cfg, check_layer(cfg, layer))
    if latent_range in valid:
        return latent_range
    if latent_range in cfg.hookpoints:
        raise PartitionKeyError(f"'{latent_range}' is a layer, not a latent range; the ranges of {layer} are "
                                f"{_listing(valid)}")
    form = ("" if _RANGE_FORM.match(latent_range) else
            f"; a range reads LO-HI, zero-padded and inclusive, {cfg.latent_range_width} latents wide, e.g. {valid[0]}")
    raise PartitionKeyError(f"latent range '{latent_range}' is not a range of {layer}'s coder "
                            f"({cfg.hookpoints[layer].n_latents} latents); valid ranges: {_listing(valid)}{form}")


def check_layer_and_range(cfg: ProjectConfig, layer: str, latent_range: str) -> tuple[str, str]:
    """A layer and a range given separately (CLI options); says so when they were swapped."""
    if latent_range in cfg.hookpoints and _RANGE_FORM.match(layer):
        raise PartitionKeyError(f"the layer and the range are swapped: the layer is '{latent_range}', the range "
                                f"'{layer}' (--layer {latent_range} --range {layer})")
    return check_layer(cfg, layer), check_range(cfg, layer, latent_range)


def check_partition_key(cfg: ProjectConfig, key: str) -> tuple[str, str | None]:
    """`layer` or `layer|range` -> (layer, range or None), or a PartitionKeyError listing what is valid."""
    layer, sep, latent_range = key.partition("|")
    if not sep:
        return check_layer(cfg, key), None
    if _RANGE_FORM.match(layer) and latent_range in cfg.hookpoints:
        raise PartitionKeyError(f"partition key '{key}' has its dimensions swapped; the layer comes first: "
                                f"'{latent_range}|{layer}'")
    try:
        check_layer(cfg, layer)
    except PartitionKeyError as e:
        raise PartitionKeyError(f"partition key '{key}': {e}; a key reads LAYER|RANGE, e.g. "
                                f"'{next(iter(cfg.hookpoints))}|{layer_ranges(cfg, next(iter(cfg.hookpoints)))[0]}'"
                                ) from None
    return layer, check_range(cfg, layer, latent_range)
