"""The project config file: one YAML file read at code-load time.

`definitions.py` reads it when Dagster loads the code location and binds it to the
`Project` resource. Its path comes from `$AUTOINTERP_CONFIG`; without it the packaged
`autointerp.yaml` (offline defaults) is used. An invalid file fails with the field's path
and the fix (did-you-mean for typos), never a traceback.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from .config import ProjectConfig, field_names
from .errors import UserError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("autointerp.yaml")
CONFIG_ENV = "AUTOINTERP_CONFIG"


class ConfigError(UserError, ValueError):
    """The project config is invalid; the message names the field and the fix."""


def _describe(err: dict) -> str:
    """One validation error as `field: problem (got value); fix`."""
    where = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        name = str(err["loc"][-1])
        close = difflib.get_close_matches(name, field_names(), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "remove it"
        return f"{where}: unknown field; {hint} (every field is documented in autointerp_assets/config.py)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and (not err["loc"] or str(err["loc"][-1]) in message):
        return message  # the rule names its fields itself
    if err["type"] == "missing":
        return f"{where}: required field is missing; add it (documented in autointerp_assets/config.py)"
    given = err.get("input")
    if err["type"] not in ("missing", "value_error") and "api_key" not in where and isinstance(given, str | int | float):
        message += f" (got {given!r})"
    return f"{where}: {message}"


def parse_config(raw: dict | None, source: str = "<dict>") -> ProjectConfig:
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config {source} must be a YAML mapping of sections (subject_model:, hookpoints:, corpus:, "
                          f"...), not a {type(raw).__name__}; start from autointerp_assets/autointerp.yaml")
    try:
        return ProjectConfig.model_validate(raw or {})
    except ValidationError as e:
        lines = [f"  {_describe(err)}" for err in e.errors()]  # type: ignore[arg-type]
        raise ConfigError(f"invalid autointerp config {source}:\n" + "\n".join(lines)) from None


def load_config(path: str | os.PathLike | None = None) -> ProjectConfig:
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; set ${CONFIG_ENV} to a valid YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read ({e}); set ${CONFIG_ENV} to a readable YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return parse_config(raw, str(path))

