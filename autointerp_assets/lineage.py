"""Lineage metadata shared by every asset: which model, coder, corpus, prompt and LLM."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

from .data.subject import Subject

MANIFEST_LINEAGE_KEYS = ("model_id", "model_revision", "corpus_hash", "coder_kind", "coder_id", "coder_hash")


def subject_lineage(subject: Subject) -> dict[str, str]:
    return {"model_id": subject.model_id, "model_revision": subject.revision}


def from_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The upstream lineage recorded by `activations`, carried into every downstream partition."""
    return {k: manifest[k] for k in MANIFEST_LINEAGE_KEYS if k in manifest}


def digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def frame_digest(frame: pl.DataFrame) -> str:
    """Content hash of a table (row order included), for data versions."""
    hashes = frame.hash_rows(seed=0).to_numpy().tobytes() if frame.height else b""
    return hashlib.sha256(json.dumps(frame.columns).encode() + hashes).hexdigest()[:16]


def markdown_table(frame: pl.DataFrame, max_rows: int = 20, max_chars: int = 80) -> str:
    """A small GitHub-flavoured table for the Dagster UI."""
    shown = frame.head(max_rows)

    def cell(v: Any) -> str:
        text = f"{v:.3f}" if isinstance(v, float) else str(v)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows()]
    if frame.height > max_rows:
        lines.append(f"\n… {frame.height - max_rows} more rows")
    return "\n".join(lines)


_TABLE_TYPES = {pl.Int8: "int", pl.Int16: "int", pl.Int32: "int", pl.Int64: "int", pl.UInt32: "int",
                pl.UInt64: "int", pl.Float32: "float", pl.Float64: "float", pl.Boolean: "bool"}


def rounded(value: Any) -> Any:
    """Floats rounded for reading: 3 decimals, 3 significant digits below 0.01, 1 decimal from
    100 (NaN becomes None, which the UI shows as empty)."""
    if not isinstance(value, float):
        return value
    if value != value:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return round(value, 3) if abs(value) >= 0.01 else float(f"{value:.3g}")


def table_metadata(frame: pl.DataFrame, max_rows: int = 100, max_chars: int = 200):
    """A Dagster table (typed columns the UI renders and sorts), numbers rounded, long text cut."""
    import dagster as dg  # metadata values are Dagster's; the pure modules keep using markdown_table

    columns = [dg.TableColumn(name, _TABLE_TYPES.get(dtype.base_type(), "string")) for name, dtype in frame.schema.items()]

    def cell(v: Any) -> Any:
        if v is not None and not isinstance(v, str | int | float | bool):
            v = str(v)
        if isinstance(v, str) and len(v) > max_chars:
            return v[: max_chars - 1] + "…"
        return rounded(v)

    records = [dg.TableRecord({k: cell(v) for k, v in row.items()}) for row in frame.head(max_rows).iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))
