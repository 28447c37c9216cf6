"""Example windows per latent: an explanation set and a disjoint held-out test set.

Window: `example_ctx_len` (L) tokens cut from one corpus window, with the peak at
index L // 4 (`PEAK_FRACTION`), shifted only where it would cross the context's
start or end; `peak_index` records where the peak landed.

Per latent:
- Activating windows come from non-maximum suppression over the latent's
  non-zero tokens (highest first, a window is kept only if it overlaps no kept
  window), so every window's peak is its maximum and no two windows share a token.
- The `n_top` strongest go to the explanation set. The rest are split into
  `n_quantiles` bins **by rank** (equal counts; bin 0 weakest). Each bin gives
  `n_per_quantile_test` windows to the test set, then `n_per_quantile_explain`
  to the explanation set.
- The test set comes first when windows are scarce: `n_top` gives way so that at least
  `min_test_positives` activating windows are held out (explanation-set quantile windows
  move to the test set if the bins alone fall short). A latent that cannot keep one
  activating window for the explainer besides is skipped with the reason.
- Non-activating windows contain no non-zero token of the latent: `n_hard_negatives`
  that hold the peak token of an activating window ("looks similar"),
  `n_cooccurring_negatives` around the strongest firings of the latents of the range that
  fire on the most of the same tokens ("fires with it": a neighbour's examples, where this
  latent is silent; the shards hold only the range's latents, so neighbours are found within
  the range), `n_similar_negatives` whose text a sentence encoder finds most like the
  latent's strongest activating windows (`embed`, among `SIMILAR_CANDIDATES` times as many
  random silent windows), then `n_random_negatives` random ones plus as many as the others
  fell short, for each split, the test split first. Fewer than asked for is a shortfall (`ContextSet.shortfalls`);
  fewer than `min_test_negatives` in the test split (a latent too dense to find silent
  windows) skips the latent with the reason.
- Every window of a latent, across both splits and all kinds, is token-disjoint
  from every other, which makes the two splits disjoint by construction.
- Fewer than `min_examples` activating windows -> the latent is skipped with a reason.
Sampling draws from `numpy.random.default_rng([seed, latent])`: deterministic and
independent of which other latents are in the range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..config import SamplingConfig
from .corpus import TokenIndex

NEIGHBOURS = 3  # co-occurring latents whose firings give a latent's co-occurring negatives
SIMILAR_CANDIDATES = 8  # random silent windows drawn per similar negative wanted
SIMILAR_QUERIES = 10  # a latent's strongest activating windows its similar negatives are compared with
# texts -> unit vectors [len(texts), d]; cosine similarity is their dot product
Embed = Callable[[list[str]], np.ndarray]
CODE_VERSION = "2"  # bump when a change here changes what the stage writes: its asset and all below go stale
PEAK_FRACTION = 4
EXPLAIN, TEST = "explain", "test"

CONTEXT_SCHEMA = {
    "latent": pl.Int64,
    "split": pl.Utf8,
    "kind": pl.Utf8,  # top | quantile | random | hard_negative | cooccurring | similar
    "quantile": pl.Int32,  # rank bin, -1 for top and non-activating windows
    "seq": pl.Int64,
    "start": pl.Int64,
    "peak_index": pl.Int32,  # -1 for non-activating windows
    "tokens": pl.List(pl.Int64),
    "token_strs": pl.List(pl.Utf8),
    "acts": pl.List(pl.Float32),
    "max_act": pl.Float32,
    "activating": pl.Boolean,
}
SKIPPED_SCHEMA = {"latent": pl.Int64, "reason": pl.Utf8}
# Latents given fewer non-activating windows than asked for (dense latents, few look-alikes).
SHORTFALL_SCHEMA = {"latent": pl.Int64, "split": pl.Utf8, "wanted": pl.Int64, "found": pl.Int64}


@dataclass(frozen=True)
class ContextSet:
    examples: pl.DataFrame  # CONTEXT_SCHEMA
    skipped: pl.DataFrame  # SKIPPED_SCHEMA
    shortfalls: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SHORTFALL_SCHEMA))


@dataclass(frozen=True)
class _Window:
    seq: int
    start: int
    kind: str
    quantile: int = -1
    peak_pos: int = -1  # position of the peak within the corpus window


class _Occupancy:
    """Kept windows per corpus sequence; all windows have the same length L."""

    def __init__(self, length: int):
        self.length = length
        self.starts: dict[int, list[int]] = defaultdict(list)

    def free(self, seq: int, start: int) -> bool:
        return all(abs(start - s) >= self.length for s in self.starts[seq])

    def take(self, seq: int, start: int) -> None:
        self.starts[seq].append(start)


def window_start(pos: int, ctx_len: int, length: int) -> int:
    return min(max(pos - length // PEAK_FRACTION, 0), ctx_len - length)


def build_contexts(
    rows: pl.DataFrame,  # latent-major (latent, seq, pos, value) of this range
    latents: range,
    tokens: np.ndarray,  # [n_seq, ctx_len] of the analysed windows; a memory map reads only the rows used
    seq_ids: Sequence[int],  # [n_seq] their global ids (a range: rows found by arithmetic)
    decode: Callable[[int], str],
    cfg: SamplingConfig,
    token_index: TokenIndex | None = None,  # of `tokens`; built here when not given (small corpora)
    embed: Embed | None = None,  # needed when cfg.n_similar_negatives > 0
) -> ContextSet:
    n_seq, ctx_len = tokens.shape
    length = cfg.example_ctx_len
    if length > ctx_len:
        raise ValueError(f"sampling.example_ctx_len={length} exceeds corpus.ctx_len={ctx_len}; lower it")
    if cfg.n_similar_negatives and embed is None:
        raise ValueError("sampling.n_similar_negatives needs a sentence encoder (embed)")
    row_of_seq = _row_lookup(seq_ids)
    token_index = token_index or TokenIndex.build(tokens)
    decoded: dict[int, str] = {}

    def strs(ids: np.ndarray) -> list[str]:
        ids = ids.tolist()
        for t in ids:
            if t not in decoded:  # decode each distinct token once
                decoded[t] = decode(t)
        return [decoded[t] for t in ids]

    by_latent = {int(k[0]): g for k, g in rows.group_by("latent", maintain_order=True)}
    neighbours = cooccurring_latents(rows, NEIGHBOURS) if cfg.n_cooccurring_negatives else {}
    examples: list[dict] = []
    skipped: list[dict] = []
    shortfalls: list[dict] = []
    for latent in latents:
        group = by_latent.get(latent)
        if group is None:
            skipped.append({"latent": latent, "reason": "dead: never fires on the analysed corpus"})
            continue
        rng = np.random.default_rng([cfg.seed, latent])
        seqs, poss, vals = (group[c].to_numpy() for c in ("seq", "pos", "value"))
        firing: dict[int, dict[int, float]] = defaultdict(dict)
        for s, p, v in zip(seqs.tolist(), poss.tolist(), vals.tolist()):
            firing[s][p] = v
        occupied = _Occupancy(length)
        activating = _activating_windows(seqs, poss, ctx_len, length, occupied)
        if len(activating) < cfg.min_examples:
            skipped.append({
                "latent": latent,
                "reason": f"only {len(activating)} activating windows (< sampling.min_examples={cfg.min_examples})",
            })
            continue
        picks = _split_activating(activating, cfg, rng)
        if sum(split == TEST for split, _ in picks) < cfg.min_test_positives or all(split == TEST for split, _ in picks):
            skipped.append({"latent": latent, "reason": f"only {len(activating)} activating windows: the test set needs "
                            f"sampling.min_test_positives={cfg.min_test_positives} and the explainer at least one"})
            continue
        peak_tokens = [int(tokens[row_of_seq(w.seq), w.peak_pos]) for w in activating]
        wanted = cfg.n_random_negatives + cfg.n_hard_negatives + cfg.n_cooccurring_negatives + cfg.n_similar_negatives

        def text(w: _Window) -> str:
            return "".join(strs(np.asarray(tokens[row_of_seq(w.seq), w.start : w.start + length])))

        queries = embed([text(w) for w in activating[:SIMILAR_QUERIES]]) if cfg.n_similar_negatives else None
        n_test_negatives = 0
        for split in (TEST, EXPLAIN):  # the test set first: scores need its negatives
            hard = _hard_negatives(rng, token_index, peak_tokens, seq_ids, ctx_len, length, firing, occupied,
                                   cfg.n_hard_negatives)
            hard += _cooccurring_negatives([by_latent[m] for m in neighbours.get(latent, ())], ctx_len, length,
                                           firing, occupied, cfg.n_cooccurring_negatives)
            if queries is not None:
                hard += _similar_negatives(rng, seq_ids, ctx_len, length, firing, occupied, cfg.n_similar_negatives,
                                           text, embed, queries)  # type: ignore[arg-type]
            random = _random_negatives(rng, seq_ids, ctx_len, length, firing, occupied, wanted - len(hard))
            picks += [(split, w) for w in hard + random]
            if len(hard) + len(random) < wanted:
                shortfalls.append({"latent": latent, "split": split, "wanted": wanted, "found": len(hard) + len(random)})
            if split == TEST:
                n_test_negatives = len(hard) + len(random)
        if n_test_negatives < cfg.min_test_negatives:
            skipped.append({"latent": latent, "reason": f"too dense: only {n_test_negatives} non-activating test windows "
                            f"found (< sampling.min_test_negatives={cfg.min_test_negatives})"})
            continue
        for split, w in picks:
            ids = np.asarray(tokens[row_of_seq(w.seq), w.start : w.start + length])
            acts = [firing[w.seq].get(p, 0.0) for p in range(w.start, w.start + length)]
            examples.append({
                "latent": latent, "split": split, "kind": w.kind, "quantile": w.quantile,
                "seq": w.seq, "start": w.start,
                "peak_index": w.peak_pos - w.start if w.peak_pos >= 0 else -1,
                "tokens": ids.tolist(), "token_strs": strs(ids), "acts": acts,
                "max_act": max(acts), "activating": w.peak_pos >= 0,
            })
    return ContextSet(pl.DataFrame(examples, schema=CONTEXT_SCHEMA), pl.DataFrame(skipped, schema=SKIPPED_SCHEMA),
                      pl.DataFrame(shortfalls, schema=SHORTFALL_SCHEMA))


def _row_lookup(seq_ids: Sequence[int]) -> Callable[[int], int]:
    """Row of a global seq id: arithmetic for a contiguous range (no object per corpus window)."""
    if isinstance(seq_ids, range) and seq_ids.step == 1:
        first = seq_ids.start
        return lambda seq: seq - first
    return {int(s): i for i, s in enumerate(seq_ids)}.__getitem__


def _activating_windows(seqs, poss, ctx_len: int, length: int, occupied: _Occupancy) -> list[_Window]:
    """Non-maximum suppression; rows arrive sorted by value, highest first."""
    kept = []
    for s, p in zip(seqs.tolist(), poss.tolist()):
        start = window_start(p, ctx_len, length)
        if occupied.free(s, start):
            occupied.take(s, start)
            kept.append(_Window(s, start, "top", peak_pos=p))
    return kept


def _split_activating(windows: list[_Window], cfg: SamplingConfig, rng: np.random.Generator) -> list[tuple[str, _Window]]:
    n_top = min(cfg.n_top, max(0, len(windows) - cfg.min_test_positives))  # the test set first
    picks = [(EXPLAIN, w) for w in windows[:n_top]]
    rest = windows[n_top:][::-1]  # weakest first, so bin 0 is the weakest
    test: list[_Window] = []
    spare: list[tuple[str, _Window]] = []  # quantile windows the test set may still take
    for q, bin_ in enumerate(np.array_split(np.arange(len(rest)), cfg.n_quantiles)):
        order = rng.permutation(bin_)
        chosen = [_Window(rest[i].seq, rest[i].start, "quantile", q, rest[i].peak_pos) for i in order]
        n_test = cfg.n_per_quantile_test
        test += chosen[:n_test]
        picks += [(EXPLAIN, w) for w in chosen[n_test : n_test + cfg.n_per_quantile_explain]]
        spare += [(EXPLAIN, w) for w in chosen[n_test:]]
    for pick in spare:  # too few windows per bin: the test set takes what the explainer would have had
        if len(test) >= cfg.min_test_positives:
            break
        test.append(pick[1])
        if pick in picks:
            picks.remove(pick)
    return picks + [(TEST, w) for w in test]


def _is_negative(firing: dict[int, dict[int, float]], seq: int, start: int, length: int) -> bool:
    return not any(start <= p < start + length for p in firing.get(seq, ()))


def _random_negatives(rng, seq_ids, ctx_len, length, firing, occupied, n, kind="random", take=True) -> list[_Window]:
    """Up to `n` random silent windows free of every kept one (and of each other); `take=False`
    only draws them (candidates), leaving `occupied` as it was."""
    found: list[_Window] = []
    drawn = _Occupancy(length)
    for _ in range(20 * n):
        if len(found) == n:
            break
        seq = int(seq_ids[rng.integers(len(seq_ids))])
        start = int(rng.integers(ctx_len - length + 1))
        if _is_negative(firing, seq, start, length) and occupied.free(seq, start) and drawn.free(seq, start):
            (occupied if take else drawn).take(seq, start)
            found.append(_Window(seq, start, kind))
    return found


def _similar_negatives(rng, seq_ids, ctx_len, length, firing, occupied, n, text, embed: Embed,
                       queries: np.ndarray) -> list[_Window]:
    """The `n` of `SIMILAR_CANDIDATES * n` random silent windows whose text is most like any of
    the latent's strongest activating windows (`queries` [q, d]), most similar first."""
    candidates = _random_negatives(rng, seq_ids, ctx_len, length, firing, occupied, SIMILAR_CANDIDATES * n,
                                   kind="similar", take=False)
    if not candidates:
        return []
    similarity = (embed([text(w) for w in candidates]) @ queries.T).max(axis=1)  # [candidates]
    chosen = [candidates[i] for i in np.argsort(-similarity, kind="stable")[:n]]
    for w in chosen:
        occupied.take(w.seq, w.start)
    return chosen


def _hard_negatives(rng, index: TokenIndex, peak_tokens, seq_ids, ctx_len, length, firing, occupied, n) -> list[_Window]:
    found: list[_Window] = []
    tokens, counts = np.unique(peak_tokens, return_counts=True)
    for token in tokens[np.argsort(-counts, kind="stable")]:
        candidates = index.positions(int(token))  # memory-mapped: only the drawn entries are read
        for flat in candidates[rng.permutation(len(candidates))[: 20 * n]]:  # == rng.permutation(candidates)[:20n]
            if len(found) == n:
                return found
            seq, pos = int(seq_ids[flat // ctx_len]), int(flat % ctx_len)
            start = window_start(pos, ctx_len, length)
            if _is_negative(firing, seq, start, length) and occupied.free(seq, start):
                occupied.take(seq, start)
                found.append(_Window(seq, start, "hard_negative"))
    return found


def cooccurring_latents(rows: pl.DataFrame, top: int) -> dict[int, list[int]]:
    """Per latent: the `top` other latents of `rows` that fire on the most of the same tokens, most
    first (ties by latent id)."""
    cells = rows.select("latent", "seq", "pos")
    pairs = (cells.join(cells, on=["seq", "pos"], suffix="_other")
             .filter(pl.col("latent") != pl.col("latent_other"))
             .group_by("latent", "latent_other").len()
             .sort(["latent", "len", "latent_other"], descending=[False, True, False]))
    return {int(k[0]): g["latent_other"].head(top).to_list() for k, g in pairs.group_by("latent", maintain_order=True)}


def _cooccurring_negatives(neighbour_rows: Sequence[pl.DataFrame], ctx_len, length, firing, occupied, n) -> list[_Window]:
    """Windows around each neighbour's firings, strongest first (rows arrive sorted by value), where
    this latent is silent; neighbours in turn, so one dense neighbour does not fill them all."""
    found: list[_Window] = []
    streams = [zip(r["seq"].to_list(), r["pos"].to_list()) for r in neighbour_rows]
    while streams and len(found) < n:
        for stream in list(streams):
            for seq, pos in stream:
                start = window_start(pos, ctx_len, length)
                if _is_negative(firing, seq, start, length) and occupied.free(seq, start):
                    occupied.take(seq, start)
                    found.append(_Window(seq, start, "cooccurring"))
                    break
            else:
                streams.remove(stream)  # this neighbour has no firing left to offer
            if len(found) == n:
                break
    return found
