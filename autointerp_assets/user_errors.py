"""How bad input is shown on a command line: one line that names the fix, no traceback.

`message(exc)` turns our `UserError`s, and the Dagster errors that bad input causes before any
of our code runs (an unknown partition key, an unset EnvVar), into that line; anything else is
a bug and keeps its traceback. The CLI calls it; `install_excepthook` makes any process that
loads the code location (`dagster asset materialize`) print it too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import dagster as dg

from .errors import UserError
from .store.layout import MissingUpstreamError

USER_ERRORS = (UserError, MissingUpstreamError)
LAYER_ASSETS = "sparse_coder, activations and report"
RANGE_ASSETS = "latent_shards, contexts, explanations, scores and intervention_scores"
_UNSET_ENV = re.compile(r'environment variable "([^"]+)" which is not set')
_SUBSET_KEY = re.compile(r"partition key `([^`]*)`")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__  # explicit wrapping only: an error raised while handling another is its own


def message(exc: BaseException) -> str | None:
    """The line to print for bad input, or None for a bug."""
    for link in _chain(exc):
        if isinstance(link, USER_ERRORS):
            return str(link)
        text = str(link)
        unset = _UNSET_ENV.search(text)
        if isinstance(link, dg.DagsterInvalidConfigError) and unset:
            name = unset.group(1)
            return (f"${name} is not set (the project config names it in llm.api_key_env, or a resource reads it); "
                    f"export {name}=<value> before running")
        key = _SUBSET_KEY.search(text)
        if isinstance(link, dg.DagsterInvalidSubsetError) and key:
            return partition_help(key.group(1))
    return None


def _registered_layers() -> list[str] | None:
    from .partitions import layer_partitions

    try:
        return dg.DagsterInstance.get().get_dynamic_partitions(layer_partitions.name)
    except Exception:  # noqa: BLE001 - no $DAGSTER_HOME, or an instance we cannot open: just say less
        return None


def partition_help(key: str) -> str:
    """Why Dagster has no partition `key`, with the valid keys and the command that registers them."""
    from .config_file import load_config
    from .partition_keys import check_partition_key
    from .partitions import layer_ranges

    forms = f"{LAYER_ASSETS} take a layer key; {RANGE_ASSETS} take LAYER|RANGE"
    try:
        cfg = load_config()
        layer, _ = check_partition_key(cfg, key)
    except UserError as e:
        return f"{e}. {forms}"
    registered = _registered_layers()
    if registered is not None and layer not in registered:
        problem = (f"partition key '{key}' fits the project config but is not registered in this Dagster "
                   f"instance; register it: python -m autointerp_assets add-layer {layer}")
    else:
        problem = f"partition key '{key}' does not fit the selected assets"
    first = next(iter(cfg.hookpoints))
    return f"{problem}. {forms}, e.g. {first} or {first}|{layer_ranges(cfg, first)[0]}"


def install_excepthook() -> None:
    """Print bad input that ends a command-line process as its one line; leave bugs' tracebacks."""
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        line = message(exc)
        if line is None:
            previous(exc_type, exc, tb)  # type: ignore[arg-type]
        else:
            print(f"autointerp: {line}", file=sys.stderr)

    sys.excepthook = hook

