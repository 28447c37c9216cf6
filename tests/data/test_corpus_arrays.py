"""The corpus as fixed-width arrays: round trip, and `contexts` reading only the windows it needs."""

from __future__ import annotations

import numpy as np
import polars as pl

from autointerp_assets.config import CorpusConfig, SamplingConfig
from autointerp_assets.data.corpus import ANALYSIS, SAE_TRAIN, Corpus, Document, build_corpus
from autointerp_assets.data.sampling import build_contexts
from autointerp_assets.data.shards import latent_slice
from autointerp_assets.store import layout
from autointerp_assets.store.store import ArtifactStore


class WordTokenizer:
    """One id per whitespace word: enough to cut windows, with no model."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.ids.setdefault(w, len(self.ids)) for w in text.split()]}


def test_corpus_round_trips_as_memory_mapped_arrays(tmp_path):
    docs = [Document(f"d{i}", " ".join(f"w{(i * 7 + j) % 97}" for j in range(300))) for i in range(20)]
    cfg = CorpusConfig(ctx_len=16, max_tokens=4096, sae_train_fraction=0.25, max_windows_per_doc=8)
    built = build_corpus(iter(docs), WordTokenizer(), cfg)
    store = ArtifactStore(str(tmp_path))
    layout.write_corpus(store, built)
    read = layout.read_corpus(store, with_windows=True)
    assert store.bytes_read < 4096  # the manifest and the provenance table; no tokens yet
    assert np.array_equal(np.asarray(read.tokens), built.tokens) and read.content_hash == built.content_hash
    assert read.windows.equals(built.windows) and read.tokens.shape == (built.tokens.shape[0], 16)
    assert np.array_equal(np.asarray(read.token_array(SAE_TRAIN)), built.tokens[: built.n_train])
    tokens, seq_ids = layout.analysis_tokens(read)
    assert list(seq_ids) == built.windows.filter(pl.col("split") == ANALYSIS)["seq"].to_list()
    index = layout.read_token_index(store)
    flat = built.token_array(ANALYSIS).reshape(-1)
    for token in np.unique(flat)[:10]:
        assert index.positions(int(token)).tolist() == np.flatnonzero(flat == token).tolist()


def test_contexts_read_only_the_windows_they_need_and_match_the_in_memory_result(tmp_path):
    """A 400k-token corpus; a range of latents firing in a few hundred windows. Sampling through
    the stored, memory-mapped corpus gives exactly the in-memory result and touches a sliver of it."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 500, size=(6250, 64)).astype(np.int32)  # 400k tokens
    windows = pl.DataFrame({"seq": np.arange(6250), "split": [ANALYSIS] * 6250, "doc_id": ["d"] * 6250,
                            "offset": np.zeros(6250, dtype=np.int64)})
    store = ArtifactStore(str(tmp_path))
    layout.write_corpus(store, Corpus(tokens, windows, "h", n_train=0))
    rows = []
    for latent, token in ((0, 7), (1, 11), (2, 13)):
        r, p = np.nonzero(tokens[:400] == token)  # firing only in the first 400 windows
        rows += [(int(s), int(q), latent, float(v)) for s, q, v in zip(r, p, rng.uniform(0.1, 5, len(r)))]
    frame = pl.DataFrame(rows, schema={"seq": pl.Int64, "pos": pl.Int32, "latent": pl.Int32, "value": pl.Float32},
                         orient="row")
    shard = latent_slice([frame], range(0, 3))
    cfg = SamplingConfig(example_ctx_len=16, min_examples=4)

    expected = build_contexts(shard, range(0, 3), tokens, np.arange(6250), str, cfg)
    stored_tokens, seq_ids = layout.analysis_tokens(layout.read_corpus(store))
    before = store.bytes_read
    got = build_contexts(shard, range(0, 3), stored_tokens, seq_ids, str, cfg, layout.read_token_index(store))
    read = store.bytes_read - before
    assert got.examples.equals(expected.examples) and got.skipped.equals(expected.skipped)
    assert got.examples.height > 50
    assert read < tokens.nbytes / 4, f"read {read} bytes of a {tokens.nbytes}-byte corpus"
