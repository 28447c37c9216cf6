"""The asset graph: Dagster wrappers only, one module per group. The logic of each stage
lives in a pure module (`data/`, `coders/`, `explain/`, `scoring/`, `report/`)."""

import dagster as dg

from . import data, llm, report

ALL_ASSETS: list[dg.AssetsDefinition] = dg.load_assets_from_modules([data, llm, report])  # type: ignore[assignment]
