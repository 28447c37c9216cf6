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
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fsspec
import numpy as np
import polars as pl

from ..config import CorpusConfig

CODE_VERSION = "1"  # bump when a change here changes what the stage writes: its asset and all below go stale
SAE_TRAIN = "sae_train"
ANALYSIS = "analysis"


class Tokenizer(Protocol):
    def __call__(self, text: str, add_special_tokens: bool = ...) -> Any: ...


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable: source path, or path#row
    text: str


class EmptyCorpusError(ValueError):
    pass


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


def _expand(paths: list[str], storage_options: dict | None) -> list[str]:
    found: list[str] = []
    for pattern in paths:
        fs, _ = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
        matches = sorted(fs.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        protocol = pattern.split("://")[0] + "://" if "://" in pattern else ""
        found += [m if m.startswith(protocol) else protocol + m for m in matches]
    return found


def _open_bytes(path: str, storage_options: dict | None) -> bytes:
    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        return f.read()


def file_documents(cfg: CorpusConfig, storage_options: dict | None) -> Iterator[Document]:
    paths = _expand(cfg.paths, storage_options)
    if not paths:
        raise EmptyCorpusError(f"corpus.paths {cfg.paths} matched no files; fix the paths or globs")
    for path in paths:
        data = _open_bytes(path, storage_options)
        if cfg.source == "files":
            yield Document(path, data.decode("utf-8", errors="replace"))
            continue
        if cfg.source == "jsonl":
            rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            frame = pl.DataFrame(rows) if rows else pl.DataFrame()
        else:
            frame = pl.read_parquet(io.BytesIO(data))
        if cfg.text_column not in frame.columns:
            raise ValueError(
                f"{path} has no column '{cfg.text_column}' (columns: {frame.columns}); set corpus.text_column"
            )
        for i, text in enumerate(frame[cfg.text_column].to_list()):
            if text:
                yield Document(f"{path}#{i}", str(text))


def hub_documents(cfg: CorpusConfig) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise ImportError("corpus.source 'hub' needs the `datasets` package: pip install datasets") from None
    ds = datasets.load_dataset(cfg.dataset, split=cfg.split, streaming=True)
    for i, row in enumerate(ds):
        yield Document(f"{cfg.dataset}#{i}", str(row[cfg.text_column]))


def documents(cfg: CorpusConfig, storage_options: dict | None = None) -> Iterator[Document]:
    if cfg.source == "stdlib":
        return stdlib_documents(cfg.seed)
    if cfg.source == "hub":
        return hub_documents(cfg)
    return file_documents(cfg, storage_options)


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
