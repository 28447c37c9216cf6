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
