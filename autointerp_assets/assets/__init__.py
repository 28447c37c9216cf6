"""The asset graph: Dagster wrappers only, one module per group. The logic of each stage
lives in a pure module (`data/`, `coders/`, `explain/`, `scoring/`, `report/`).

These are the bare definitions; `code_location.build_definitions(cfg)` gives each its code
version and automation condition (`automation.py`)."""

import dagster as dg

from . import data, llm, report, review, steering

ALL_ASSETS: list[dg.AssetsDefinition] = dg.load_assets_from_modules([data, llm, report, review, steering])  # type: ignore[assignment]
