"""Explanations you bring: a CSV or parquet file of (latent, explanation) for one latent range,
written by people or another tool, stored as that `explanations` partition and scored as usual.

Every problem is found before anything is written, and named with its fix: a file that cannot
be read, missing columns, empty or non-integer latents, empty explanations, latents outside the
partition's range, a latent given twice. Latents of the range that the file leaves out are
recorded as skipped with the reason, so nothing vanishes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import fsspec
import polars as pl

from ..llm.prompts import version
from .explainer import EXPLANATION_SCHEMA

EXPLAINER = "imported"
_EXAMPLES = 5  # offending latents named in an error


class ExplanationImportError(ValueError):
    """The file cannot be imported; the message names the problem and the fix."""


@dataclass(frozen=True)
class ImportedFile:
    frame: pl.DataFrame  # latent Int64, explanation Utf8
    sha256: str
    uri: str


def read_file(uri: str, storage_options: dict[str, Any] | None = None) -> ImportedFile:
    """Read `uri` (local path or s3://…; .csv or .parquet) and check its columns."""
    suffix = uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
    if suffix not in ("csv", "parquet"):
        raise ExplanationImportError(f"{uri}: unknown format '.{suffix}'; give a .csv or .parquet file with "
                                     "columns latent, explanation")
    options = (storage_options or {}) if uri.startswith("s3://") else {}
    try:
        with fsspec.open(uri, "rb", **options) as f:
            data = f.read()
    except (OSError, ValueError) as e:
        raise ExplanationImportError(f"cannot read {uri}: {e}") from None
    try:
        frame = pl.read_csv(data, infer_schema_length=0) if suffix == "csv" else pl.read_parquet(data)
    except Exception as e:  # noqa: BLE001 - any parser error means the same thing to the operator
        raise ExplanationImportError(f"{uri} is not a valid {suffix} file: {e}") from None
    missing = [c for c in ("latent", "explanation") if c not in frame.columns]
    if missing:
        raise ExplanationImportError(f"{uri} lacks column(s) {missing} (has {frame.columns}); the file needs "
                                     "columns latent, explanation")
    frame = frame.select("latent", "explanation")
    latents = frame["latent"].cast(pl.Utf8).str.strip_chars().cast(pl.Int64, strict=False)
    bad = frame.filter(latents.is_null())["latent"].to_list()
    if bad:
        raise ExplanationImportError(f"{uri}: {len(bad)} row(s) with a latent that is not an integer, e.g. "
                                     f"{bad[:_EXAMPLES]}; every latent must be a latent id")
    explanations = frame["explanation"].cast(pl.Utf8).str.strip_chars()
    empty = frame.filter(explanations.is_null() | (explanations == ""))["latent"].to_list()
    if empty:
        raise ExplanationImportError(f"{uri}: latent(s) {empty[:_EXAMPLES]} have an empty explanation; "
                                     "give each a text or leave the row out")
    return ImportedFile(pl.DataFrame({"latent": latents, "explanation": explanations}), hashlib.sha256(data).hexdigest(), uri)


def explanations_table(imported: ImportedFile, latents: range) -> pl.DataFrame:
    """The `explanations` table of one latent range (EXPLANATION_SCHEMA): explainer 'imported',
    prompt_version naming the file's hash; the range's other latents skipped with the reason."""
    frame = imported.frame
    duplicated = frame.filter(pl.col("latent").is_duplicated())["latent"].unique().sort().to_list()
    if duplicated:
        raise ExplanationImportError(f"{imported.uri}: latent(s) {duplicated[:_EXAMPLES]} appear more than once; "
                                     "keep one explanation per latent")
    unknown = frame.filter(~pl.col("latent").is_between(latents.start, latents.stop - 1))["latent"].sort().to_list()
    if unknown:
        raise ExplanationImportError(
            f"{imported.uri}: latent(s) {unknown[:_EXAMPLES]} are not in this partition's range "
            f"{latents.start}-{latents.stop - 1}; import them into their own range's partition")
    given = dict(frame.iter_rows())
    tag = f"import:{imported.sha256[:12]}"
    rows = [{"latent": latent, "status": "ok" if latent in given else "skipped", "explanation": given.get(latent),
             "reason": None if latent in given else f"not in the imported file {imported.uri}",
             "explainer": EXPLAINER, "explainer_model": None, "prompt_version": tag, "n_examples": 0}
            for latent in latents]
    return pl.DataFrame(rows, schema=EXPLANATION_SCHEMA)


PROMPT_VERSION = version(EXPLAINER)  # what PROMPT_VERSIONS lists for the import "prompt"
