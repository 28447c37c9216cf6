"""Corpus documents that are not text are skipped and counted, never decoded into garbage."""

from __future__ import annotations

import json

import polars as pl
import pytest

from autointerp_assets.config import CorpusConfig
from autointerp_assets.data.corpus import CorpusError, EmptyCorpusError, SkippedDocuments, decode_text, documents


@pytest.mark.parametrize("data, reason", [
    (b"plain text\n", None),
    ("\ufeffwith a BOM and accents: é ü".encode(), None),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
    ("UTF-16 text".encode("utf-16"), "not UTF-8 text"),
    (b"ascii but \x00 NUL", "contains NUL bytes"),
    (b"\x01\x02\x03\x04 mostly control characters \x05\x06", "control characters"),
])
def test_decode_text(data, reason):
    text, why = decode_text(data)
    assert (why is None) == (reason is None) and (text is None) == (reason is not None)
    assert reason is None or reason in why


def test_files_jsonl_and_parquet_skip_what_is_not_text(tmp_path):
    (tmp_path / "a.txt").write_text("real text " * 20)
    (tmp_path / "b.txt").write_bytes(bytes(range(256)))
    skipped = SkippedDocuments()
    docs = list(documents(CorpusConfig(source="files", paths=[str(tmp_path / "*.txt")]), None, skipped))
    assert [d.doc_id for d in docs] == [str(tmp_path / "a.txt")]
    assert skipped.as_metadata()["n_skipped_documents"] == 1

    lines = [json.dumps({"text": "good"}), '{"text": "cut off', "[1, 2]", json.dumps({"text": "a\x00b"})]
    (tmp_path / "c.jsonl").write_text("\n".join(lines))
    skipped = SkippedDocuments()
    docs = list(documents(CorpusConfig(source="jsonl", paths=[str(tmp_path / "c.jsonl")]), None, skipped))
    assert [d.text for d in docs] == ["good"]
    assert [why for _, why in skipped.items] == ["not JSON (Unterminated string starting at)", "not a JSON object",
                                                 "binary: contains NUL bytes"]

    pl.DataFrame({"text": ["one", "two"]}).write_parquet(tmp_path / "d.parquet")
    (tmp_path / "e.parquet").write_text("not parquet")
    skipped = SkippedDocuments()
    docs = list(documents(CorpusConfig(source="parquet", paths=[str(tmp_path / "*.parquet")]), None, skipped))
    assert [d.text for d in docs] == ["one", "two"] and skipped.items[0][0].endswith("e.parquet")


def test_unusable_corpora_name_the_fix(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00" * 100)
    with pytest.raises(EmptyCorpusError, match="every corpus document was skipped .*point corpus.paths at UTF-8"):
        list(documents(CorpusConfig(source="files", paths=[str(tmp_path / "bin.txt")])))
    pl.DataFrame({"body": ["x"]}).write_parquet(tmp_path / "f.parquet")
    with pytest.raises(CorpusError, match=r"has no column 'text' \(columns: \['body'\]\); set corpus.text_column"):
        list(documents(CorpusConfig(source="parquet", paths=[str(tmp_path / "f.parquet")])))
    with pytest.raises(CorpusError, match="is a directory"):
        list(documents(CorpusConfig(source="files", paths=[str(tmp_path)])))
