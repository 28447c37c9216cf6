"""Corpus: documents from a configured source, tokenised into fixed context windows.

A window never crosses a document boundary (each keeps its doc_id and offset); a
document's tail shorter than ctx_len is dropped, and so are windows past
`max_windows_per_doc`. Window order is a seeded shuffle,
and the leading `sae_train_fraction` of windows is reserved for training SAEs, the
rest is analysed. Same config + same files -> the same windows and content hash.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fsspec
import numpy as np
import polars as pl

from ..config import CorpusConfig
from ..errors import UserError

SAE_TRAIN = "sae_train"
ANALYSIS = "analysis"


class Tokenizer(Protocol):
    def __call__(self, text: str, add_special_tokens: bool = ...) -> Any: ...


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable: source path, or path#row
    text: str


class EmptyCorpusError(UserError, ValueError):
    pass


class CorpusError(UserError, ValueError):
    """A corpus path or column that cannot be read; the message names it and the fix."""


# -- undecodable documents: skipped, counted, reported ---------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_MAX_CONTROL_SHARE = 0.01  # text has next to none; binary decoded by luck has many
_REPORTED = 20


@dataclass
class SkippedDocuments:
    """Documents left out because they are not text: (doc id, reason). Reported in the metadata."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def as_metadata(self) -> dict[str, object]:
        shown = [f"{doc}: {why}" for doc, why in self.items[:_REPORTED]]
        return {"n_skipped_documents": len(self.items),
                "skipped_documents": "\n".join(shown) + ("\n…" if len(self.items) > _REPORTED else "")}


def text_problem(text: str) -> str | None:
    """Why a decoded string is not text (binary that happened to decode), or None."""
    if "\x00" in text:
        return "binary: contains NUL bytes"
    control = len(_CONTROL.findall(text))
    if control > _MAX_CONTROL_SHARE * len(text):
        return f"binary: {control} control characters in {len(text)}"
    return None


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for UTF-8 text, else (None, why): never a string full of replacement characters."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (undecodable byte at offset {e.start})"
    problem = text_problem(text)
    return (None, problem) if problem else (text, None)


# -- sources ---------------------------------------------------------------------------------
_STDLIB_SKIP = {"site-packages", "test", "tests", "idle_test", "turtledemo", "__pycache__", "lib2to3"}


def stdlib_documents(seed: int) -> Iterator[Document]:
    """Python's own sources (code) interleaved with its pydoc topics (English prose)."""
    import pydoc_data.topics

    root = Path(sysconfig.get_paths()["stdlib"])
    code = sorted(
        p for p in root.rglob("*.py") if not _STDLIB_SKIP.intersection(p.relative_to(root).parts[:-1])
    )
    random.Random(seed).shuffle(code)
    prose = [Document(f"pydoc:{k}", v) for k, v in sorted(pydoc_data.topics.topics.items())]
    random.Random(seed + 1).shuffle(prose)
    code_docs = (Document(f"stdlib:{p.relative_to(root)}", p.read_text(errors="replace")) for p in code)
    for pair in itertools.zip_longest(prose, code_docs):
        yield from (d for d in pair if d is not None)


def expand_paths(paths: list[str], storage_options: dict | None) -> list[str]:
    found: list[str] = []
    for pattern in paths:
        fs, _ = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
        matches = sorted(fs.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        protocol = pattern.split("://")[0] + "://" if "://" in pattern else ""
        found += [m if m.startswith(protocol) else protocol + m for m in matches]
    return found


def _open_bytes(path: str, storage_options: dict | None) -> bytes:
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as f:
            return f.read()
    except IsADirectoryError:
        raise CorpusError(f"corpus.paths: {path} is a directory; list files or a glob such as "
                          f"{path.rstrip('/')}/**/*.txt") from None
    except FileNotFoundError:
        raise CorpusError(f"corpus.paths: {path} does not exist; fix the path or use a glob") from None


def _rows(path: str, data: bytes, cfg: CorpusConfig, skipped: SkippedDocuments) -> list[object]:
    """The text column of a jsonl or parquet file; unreadable lines and files are skipped."""
    column = cfg.text_column
    if cfg.source == "jsonl":
        text, why = decode_text(data)
        if text is None:
            skipped.items.append((path, str(why)))
            return []
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.items.append((f"{path}:{n}", f"not JSON ({e.msg})"))
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped.items.append((f"{path}:{n}", "not a JSON object"))
        if records and not any(column in r for r in records):
            raise CorpusError(f"{path} has no field '{column}' (fields: {sorted(records[0])}); set "
                              "corpus.text_column to the field holding the text")
        return [r.get(column) for r in records]
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - polars/arrow raise many kinds for a non-parquet file
        skipped.items.append((path, f"not a parquet file ({type(e).__name__})"))
        return []
    if column not in frame.columns:
        raise CorpusError(f"{path} has no column '{column}' (columns: {frame.columns}); set "
                          "corpus.text_column to the column holding the text")
    return frame[column].to_list()


def file_documents(cfg: CorpusConfig, storage_options: dict | None,
                   skipped: SkippedDocuments | None = None) -> Iterator[Document]:
    """Text documents of the configured files; what is not text is skipped and recorded in `skipped`."""
    skipped = SkippedDocuments() if skipped is None else skipped
    paths = expand_paths(cfg.paths, storage_options)
    if not paths:
        raise EmptyCorpusError(f"corpus.paths {cfg.paths} matched no files; fix the paths or globs")
    n_yielded = 0
    for path in paths:
        data = _open_bytes(path, storage_options)
        if cfg.source == "files":
            text, why = decode_text(data)
            if text is None:
                skipped.items.append((path, str(why)))
                continue
            n_yielded += 1
            yield Document(path, text)
            continue
        for i, value in enumerate(_rows(path, data, cfg, skipped)):
            if not value:
                continue
            text = str(value)
            why = text_problem(text)
            if why:
                skipped.items.append((f"{path}#{i}", why))
                continue
            n_yielded += 1
            yield Document(f"{path}#{i}", text)
    if not n_yielded and skipped.items:
        doc, why = skipped.items[0]
        wanted = {"files": "UTF-8 text files", "jsonl": "JSON-lines files", "parquet": "parquet files"}[cfg.source]
        raise EmptyCorpusError(f"every corpus document was skipped ({len(skipped.items)}; first: {doc}: {why}); "
                               f"corpus.source is '{cfg.source}', so point corpus.paths at {wanted}")


def hub_documents(cfg: CorpusConfig) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise ImportError("corpus.source 'hub' needs the `datasets` package: pip install datasets") from None
    ds = datasets.load_dataset(cfg.dataset, split=cfg.split, streaming=True)
    for i, row in enumerate(ds):
        yield Document(f"{cfg.dataset}#{i}", str(row[cfg.text_column]))


def documents(cfg: CorpusConfig, storage_options: dict | None = None,
              skipped: SkippedDocuments | None = None) -> Iterator[Document]:
    """The configured source's documents; those that are not text are skipped and added to `skipped`."""
    if cfg.source == "stdlib":
        return stdlib_documents(cfg.seed)
    if cfg.source == "hub":
        return hub_documents(cfg)
    return file_documents(cfg, storage_options, skipped)


# -- tokenisation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Corpus:
    windows: pl.DataFrame  # seq, split, doc_id, offset, tokens: List(Int32)[ctx_len]
    content_hash: str

    @property
    def n_tokens(self) -> int:
        return self.windows.height * len(self.windows["tokens"][0])

    def token_array(self, split: str | None = None) -> np.ndarray:
        """[n_seq, ctx_len] int32, rows ordered by seq."""
        frame = self.windows if split is None else self.windows.filter(pl.col("split") == split)
        return np.asarray(frame["tokens"].to_list(), dtype=np.int32).reshape(frame.height, -1)


def build_corpus(docs: Iterator[Document], tokenizer: Tokenizer, cfg: CorpusConfig) -> Corpus:
    max_windows = cfg.max_tokens // cfg.ctx_len
    rows: list[tuple[str, int, list[int]]] = []
    for doc in docs:
        ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        offsets = range(0, len(ids) - cfg.ctx_len + 1, cfg.ctx_len)
        for offset in offsets[: cfg.max_windows_per_doc]:
            rows.append((doc.doc_id, offset, ids[offset : offset + cfg.ctx_len]))
        if len(rows) >= max_windows:
            break
    rows = rows[:max_windows]
    if not rows:
        raise EmptyCorpusError(
            f"the corpus yields no window of {cfg.ctx_len} tokens; add text (corpus.paths) or lower corpus.ctx_len"
        )
    random.Random(cfg.seed).shuffle(rows)
    n_train = int(len(rows) * cfg.sae_train_fraction)
    windows = pl.DataFrame(
        {
            "seq": np.arange(len(rows), dtype=np.int64),
            "split": [SAE_TRAIN] * n_train + [ANALYSIS] * (len(rows) - n_train),
            "doc_id": [r[0] for r in rows],
            "offset": np.array([r[1] for r in rows], dtype=np.int64),
            "tokens": pl.Series([r[2] for r in rows], dtype=pl.List(pl.Int32)),
        }
    )
    digest = hashlib.sha256()
    digest.update(json.dumps({"ctx_len": cfg.ctx_len, "n_train": n_train}).encode())
    digest.update(np.asarray([r[2] for r in rows], dtype=np.int32).tobytes())
    for r in rows:
        digest.update(f"{r[0]}:{r[1]}\n".encode())
    return Corpus(windows, digest.hexdigest()[:16])
