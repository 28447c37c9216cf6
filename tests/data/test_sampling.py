import numpy as np
import polars as pl
import pytest

from autointerp_assets.config import SamplingConfig
from autointerp_assets.data.sampling import PEAK_FRACTION, build_contexts, cooccurring_latents, window_start
from autointerp_assets.data.shards import latent_slice, latent_stats

CTX, L = 64, 16
CFG = SamplingConfig(example_ctx_len=L, n_top=4, n_quantiles=3, n_per_quantile_explain=2,
                     n_per_quantile_test=3, n_random_negatives=4, n_hard_negatives=3, min_examples=6, seed=7)


def synthetic(n_seq=200, seed=0):
    """Tokens plus activations: latent 0 fires on token 5 in even rows only (so token 5 in odd
    rows makes hard negatives), latent 1 fires three times, latent 2 never."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 50, size=(n_seq, CTX)).astype(np.int32)
    seq_ids = np.arange(1000, 1000 + n_seq)
    rows = []
    for latent, token in ((0, 5), (1, 9)):
        r, p = np.nonzero(tokens == token)
        if latent == 0:
            r, p = r[r % 2 == 0], p[r % 2 == 0]
        if latent == 1:  # three firings in three different sequences
            _, first = np.unique(r, return_index=True)
            r, p = r[first[:3]], p[first[:3]]
        for row, pos in zip(r, p):
            rows.append((int(seq_ids[row]), int(pos), latent, float(rng.uniform(0.1, 10))))
    frame = pl.DataFrame(rows, schema={"seq": pl.Int64, "pos": pl.Int32, "latent": pl.Int32, "value": pl.Float32},
                         orient="row")
    return tokens, seq_ids, latent_slice([frame], range(0, 3))


def windows(frame):
    return {(s, st) for s, st in frame.select("seq", "start").iter_rows()}


@pytest.fixture(scope="module")
def built():
    tokens, seq_ids, rows = synthetic()
    return tokens, seq_ids, rows, build_contexts(rows, range(0, 3), tokens, seq_ids, lambda t: f"<{t}>", CFG)


def test_explain_and_test_sets_never_share_a_window_or_a_token(built):
    *_, ctx = built
    ex = ctx.examples.filter(pl.col("latent") == 0)
    explain, test = ex.filter(pl.col("split") == "explain"), ex.filter(pl.col("split") == "test")
    assert explain.height and test.height
    assert not windows(explain) & windows(test)
    # Stronger: no two windows of a latent overlap at all.
    spans = sorted((s, st) for s, st in ex.select("seq", "start").iter_rows())
    for (s1, a), (s2, b) in zip(spans, spans[1:]):
        assert s1 != s2 or b - a >= L


def test_counts_kinds_and_labels(built):
    *_, ctx = built
    ex = ctx.examples.filter(pl.col("latent") == 0)
    count = {f"{s}/{k}": n for s, k, n in ex.group_by("split", "kind").len().iter_rows()}
    assert count["explain/top"] == CFG.n_top
    assert count["test/quantile"] == CFG.n_quantiles * CFG.n_per_quantile_test
    assert count["explain/quantile"] == CFG.n_quantiles * CFG.n_per_quantile_explain
    assert count["test/random"] == CFG.n_random_negatives and count["explain/random"] == CFG.n_random_negatives
    assert count["test/hard_negative"] == CFG.n_hard_negatives
    assert ex.filter(pl.col("activating"))["max_act"].min() > 0
    assert ex.filter(~pl.col("activating"))["max_act"].max() == 0
    assert set(ex.filter(pl.col("kind") == "quantile")["quantile"]) == {0, 1, 2}


def test_windows_hold_their_tokens_activations_and_peak(built):
    tokens, seq_ids, rows, ctx = built
    row_of = {int(s): i for i, s in enumerate(seq_ids)}
    firing = {(s, p): v for s, p, lat, v in rows.iter_rows() if lat == 0}
    for r in ctx.examples.filter(pl.col("latent") == 0).iter_rows(named=True):
        assert r["tokens"] == tokens[row_of[r["seq"]], r["start"]:r["start"] + L].tolist()
        assert r["token_strs"] == [f"<{t}>" for t in r["tokens"]]
        expected = [firing.get((r["seq"], r["start"] + i), 0.0) for i in range(L)]
        assert np.allclose(r["acts"], expected)
        if r["activating"]:
            assert r["acts"][r["peak_index"]] == pytest.approx(max(r["acts"]))
        if r["kind"] == "hard_negative":  # looks similar: holds the token the latent peaks on
            assert max(r["acts"]) == 0 and 5 in r["tokens"]


def test_top_examples_are_the_strongest_and_bins_are_by_rank(built):
    *_, ctx = built
    ex = ctx.examples.filter(pl.col("latent") == 0)
    top_min = ex.filter(pl.col("kind") == "top")["max_act"].min()
    assert top_min >= ex.filter(pl.col("kind") == "quantile")["max_act"].max()
    by_bin = ex.filter(pl.col("kind") == "quantile").group_by("quantile").agg(pl.col("max_act").min().alias("lo"),
                                                                             pl.col("max_act").max().alias("hi"))
    lo = dict(by_bin.select("quantile", "lo").iter_rows())
    hi = dict(by_bin.select("quantile", "hi").iter_rows())
    assert hi[0] <= lo[1] and hi[1] <= lo[2]


def test_rare_and_dead_latents_are_skipped_with_reasons(built):
    *_, ctx = built
    reasons = dict(ctx.skipped.iter_rows())
    assert set(reasons) == {1, 2}
    assert "only 3 activating windows" in reasons[1] and "min_examples=6" in reasons[1]
    assert reasons[2].startswith("dead")


def test_sampling_is_deterministic_and_independent_of_the_range(built):
    tokens, seq_ids, rows, ctx = built
    again = build_contexts(rows, range(0, 1), tokens, seq_ids, lambda t: f"<{t}>", CFG)
    assert again.examples.equals(ctx.examples.filter(pl.col("latent") == 0))


def test_peak_position_is_a_quarter_in_unless_clamped():
    assert window_start(30, CTX, 32) == 30 - 32 // PEAK_FRACTION
    assert window_start(3, CTX, 32) == 0
    assert window_start(63, CTX, 32) == CTX - 32


def test_latent_stats_cover_dead_latents(built):
    _, _, rows, _ = built
    stats = latent_stats(rows, range(0, 3), n_tokens=200 * CTX)
    assert stats["latent"].to_list() == [0, 1, 2]
    assert stats["dead"].to_list() == [False, False, True]
    assert stats.filter(pl.col("latent") == 1)["n_firing"].item() == 3
    assert stats.filter(pl.col("latent") == 1)["density"].item() == pytest.approx(3 / (200 * CTX))


def _one_latent(firing: np.ndarray, seed: int = 0):
    """tokens, seq ids and latent-major rows of latent 0 firing where `firing` [n_seq, CTX] is set."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 50, size=firing.shape).astype(np.int32)
    seq_ids = np.arange(firing.shape[0])
    r, p = np.nonzero(firing)
    frame = pl.DataFrame({"seq": seq_ids[r].astype(np.int64), "pos": p.astype(np.int32),
                          "latent": np.zeros(r.size, dtype=np.int32), "value": rng.uniform(0.1, 10, r.size)},
                         schema={"seq": pl.Int64, "pos": pl.Int32, "latent": pl.Int32, "value": pl.Float32})
    return tokens, seq_ids, latent_slice([frame], range(0, 1))


def test_n_top_gives_way_to_the_test_set_when_windows_are_scarce():
    firing = np.zeros((100, CTX), dtype=bool)
    firing[:8, 20] = True  # 8 activating windows, one per sequence
    cfg = SamplingConfig(example_ctx_len=L, n_top=10, n_quantiles=3, n_per_quantile_explain=1, n_per_quantile_test=2,
                         n_random_negatives=4, n_hard_negatives=2, min_examples=8, min_test_positives=5,
                         min_test_negatives=4)
    tokens, seq_ids, rows = _one_latent(firing)
    ctx = build_contexts(rows, range(0, 1), tokens, seq_ids, lambda t: str(t), cfg)
    ex = ctx.examples
    test = ex.filter((pl.col("split") == "test") & pl.col("activating"))
    explain = ex.filter((pl.col("split") == "explain") & pl.col("activating"))
    assert test.height == 5 and explain.height == 3  # not 8 top windows for the explainer and none held out
    # Negatives are untouched: n_hard_negatives + n_random_negatives.
    assert ex.filter((pl.col("split") == "test") & ~pl.col("activating")).height == 6
    assert ctx.skipped.is_empty()


def test_a_latent_too_dense_for_negatives_is_skipped_and_the_shortfall_counted():
    firing = np.ones((40, CTX), dtype=bool)
    firing[0, :] = False  # one silent sequence: at most 4 silent windows in the whole corpus
    cfg = SamplingConfig(example_ctx_len=L, n_top=4, n_quantiles=2, n_per_quantile_test=3, n_random_negatives=5,
                         n_hard_negatives=0, min_test_negatives=5)
    tokens, seq_ids, rows = _one_latent(firing)
    ctx = build_contexts(rows, range(0, 1), tokens, seq_ids, lambda t: str(t), cfg)
    assert ctx.examples.is_empty()
    (reason,) = ctx.skipped["reason"].to_list()
    assert reason.startswith("too dense: only ") and "sampling.min_test_negatives=5" in reason
    short = ctx.shortfalls.row(0, named=True)
    assert short["latent"] == 0 and short["split"] == "test" and short["wanted"] == 5 and short["found"] < 5


def test_test_set_minimums_must_be_reachable():
    with pytest.raises(ValueError, match="min_test_positives=9 exceeds"):
        SamplingConfig(n_quantiles=2, n_per_quantile_test=4, min_test_positives=9)
    with pytest.raises(ValueError, match="min_test_negatives=9 exceeds"):
        SamplingConfig(n_random_negatives=4, n_hard_negatives=4, min_test_negatives=9)


def test_cooccurring_negatives_are_a_neighbours_firings_where_the_latent_is_silent():
    """Known neighbour: latent 3 fires on token 5 everywhere, latent 0 only in even rows, so they
    co-fire on every even-row 5 and latent 3's odd-row firings are latent 0's look-alike negatives."""
    tokens, seq_ids, rows = synthetic()
    r, p = np.nonzero(tokens == 5)
    neighbour = pl.DataFrame({"seq": seq_ids[r].astype(np.int64), "pos": p.astype(np.int32),
                              "latent": np.full(len(r), 3, dtype=np.int32), "value": np.linspace(9, 1, len(r), dtype=np.float32)})
    frame = pl.concat([rows.select(neighbour.columns).cast(neighbour.schema), neighbour])
    rows = latent_slice([frame], range(0, 4))
    assert cooccurring_latents(rows, 3)[0] == [3]
    cfg = CFG.model_copy(update={"n_cooccurring_negatives": 2})
    ctx = build_contexts(rows, range(0, 4), tokens, seq_ids, lambda t: f"<{t}>", cfg)
    ex = ctx.examples.filter(pl.col("latent") == 0)
    cooc = ex.filter(pl.col("kind") == "cooccurring")
    assert cooc.group_by("split").len().sort("split").rows() == [("explain", 2), ("test", 2)]
    fires_3 = set(zip(neighbour["seq"].to_list(), neighbour["pos"].to_list(), strict=True))
    for w in cooc.iter_rows(named=True):
        assert not w["activating"] and max(w["acts"]) == 0.0  # latent 0 is silent in it
        assert (w["seq"] - 1000) % 2 == 1  # an odd row: where only the neighbour fires
        assert any((w["seq"], w["start"] + i) in fires_3 for i in range(L))  # and the neighbour does
    spans = sorted((s, st) for s, st in ex.select("seq", "start").iter_rows())  # still token-disjoint
    assert all(s1 != s2 or b - a >= L for (s1, a), (s2, b) in zip(spans, spans[1:]))


def test_similar_negatives_are_the_silent_windows_an_encoder_finds_most_alike():
    """Known similarity: the encoder sees only whether a text holds token 5, latent 0's trigger, so
    the most similar silent windows are those holding a 5 where latent 0 is silent (odd rows)."""
    tokens, seq_ids, rows = synthetic()
    tokens[1::2, ::8] = 5  # every window of an odd row now holds a 5: about half the silent windows
    holding: list[float] = []  # per call, the share of texts holding a 5

    def embed(texts: list[str]) -> np.ndarray:
        holding.append(sum("<5>" in t for t in texts) / len(texts))
        return np.asarray([[1.0, 0.0] if "<5>" in t else [0.0, 1.0] for t in texts])

    cfg = CFG.model_copy(update={"n_hard_negatives": 0, "n_similar_negatives": 2})
    ctx = build_contexts(rows, range(0, 3), tokens, seq_ids, lambda t: f"<{t}>", cfg, embed=embed)
    ex = ctx.examples.filter(pl.col("latent") == 0)
    similar = ex.filter(pl.col("kind") == "similar")
    assert similar.group_by("split").len().sort("split").rows() == [("explain", 2), ("test", 2)]
    for w in similar.iter_rows(named=True):
        assert not w["activating"] and max(w["acts"]) == 0.0 and 5 in w["tokens"]
    assert min(holding) < 1  # some candidates held no 5: the encoder's ranking chose
    with pytest.raises(ValueError, match="needs a sentence encoder"):
        build_contexts(rows, range(0, 3), tokens, seq_ids, lambda t: f"<{t}>", cfg)
