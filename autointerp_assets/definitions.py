"""The code location Dagster loads (`dagster dev`, workspace.yaml). Nothing imports it."""

from .code_location import build_definitions
from .config import load_config

defs = build_definitions(load_config())
