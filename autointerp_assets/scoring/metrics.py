"""Binary-classification metrics for the scorers, in plain numpy, and the one place where a
scorer's per-window scores become per-latent metrics with their n (`summarise`).

Conventions (every function here follows them):
- `y_true` and `y_pred` are 0/1 (or bool) arrays of equal length; `y_score` is a float array
  where higher means "more likely positive".
- An undefined value (a zero denominator, a missing class) is `float("nan")`, never 0 and never
  an exception: a latent with no predicted positives has an undefined precision, which is not the
  same as a precision of 0. Callers turn NaN into a null column value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .base import WindowScore

NAN = float("nan")


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def _ratio(num: int | float, den: int | float) -> float:
    return num / den if den else NAN


def _binary(a: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 values")
    return arr.astype(bool)


def confusion(y_true: ArrayLike, y_pred: ArrayLike) -> Confusion:
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return Confusion(
        tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), tn=int(np.sum(~t & ~p)), fn=int(np.sum(t & ~p))
    )


def precision(c: Confusion) -> float:
    """tp / (tp + fp); NaN when nothing was predicted positive."""
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Confusion) -> float:
    """tp / (tp + fn) (true-positive rate); NaN when there are no true positives."""
    return _ratio(c.tp, c.tp + c.fn)


def specificity(c: Confusion) -> float:
    """tn / (tn + fp) (true-negative rate); NaN when there are no true negatives."""
    return _ratio(c.tn, c.tn + c.fp)


def f1(c: Confusion) -> float:
    """2tp / (2tp + fp + fn), the harmonic mean of precision and recall written so that it is
    defined whenever any positive exists (true or predicted): with true positives but none
    predicted it is 0, not NaN. NaN only when there are neither true nor predicted positives."""
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def balanced_accuracy(c: Confusion) -> float:
    """Mean of recall and specificity; NaN unless both classes are present. A missing class is
    never averaged away: with negatives only, a scorer answering "0" everywhere would get 1.0."""
    return (recall(c) + specificity(c)) / 2


def accuracy(c: Confusion) -> float:
    return _ratio(c.tp + c.tn, c.n)


def auroc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic: the probability that a random
    positive scores above a random negative, ties counting one half. Ranks of tied scores are
    averaged. NaN when either class is absent."""
    t = _binary(y_true, "y_true")
    s = np.asarray(y_score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"y_true and y_score differ in length: {t.size} vs {s.size}")
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = _average_ranks(s)
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]  # exclusive
    run_rank = (starts + 1 + ends) / 2  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


# --------------------------------------------------------------------------------------------
# Per-latent metrics from WindowScores: every scorer's, computed here and nowhere else.


@dataclass(frozen=True)
class Metric:
    """A metric's value (None when undefined, with why) and the number of windows behind it.
    Per-quantile metrics hold one value and one n per activation-rank bin."""

    value: float | list[float | None] | None
    n: int | list[int]
    why_null: str | None = None


@dataclass(frozen=True)
class Settings:
    n_bins: int  # activation-rank bins of the partition's test windows
    min_auroc_n: int  # ScorerConfig.min_auroc_n


NO_DECISIONS = "no 0/1 decisions: the scorer ranks windows (likelihood mode); see its auroc"


def _value(x: float) -> float | None:
    return None if math.isnan(x) else x


def _auroc(scores: Sequence[WindowScore], s: Settings) -> Metric:
    with_score = [w for w in scores if w.score is not None]
    n = len(with_score)
    if n < s.min_auroc_n:
        why = "no window has a probability (no logprobs)" if n == 0 else (
            f"{n} windows with a score < scorer.min_auroc_n={s.min_auroc_n}")
        return Metric(None, n, why)
    value = auroc([w.label for w in with_score], [w.score for w in with_score])
    return Metric(_value(value), n, "one class only among the scored windows" if math.isnan(value) else None)


def _confusion_metric(fn: Callable[[Confusion], float], name: str) -> Callable[[Sequence[WindowScore], Settings], Metric]:
    def metric(scores: Sequence[WindowScore], s: Settings) -> Metric:
        decided = [w for w in scores if w.pred is not None]
        if scores and not decided:
            return Metric(None, 0, NO_DECISIONS)
        value = fn(confusion([w.label for w in decided], [w.pred for w in decided]))
        return Metric(_value(value), len(decided), f"{name} undefined on these answers" if math.isnan(value) else None)

    return metric


def _accuracy_of(scores: Sequence[WindowScore]) -> Metric:
    decided = [w for w in scores if w.pred is not None]
    return Metric(sum(w.pred == w.label for w in decided) / len(decided) if decided else None, len(decided))


def _accuracy_by_quantile(scores: Sequence[WindowScore], s: Settings) -> Metric:
    if not any(w.pred is not None for w in scores):
        return Metric(None, [0] * s.n_bins, NO_DECISIONS if scores else "no answers")
    bins = [_accuracy_of([w for w in scores if w.window.activating and w.window.quantile == q]) for q in range(s.n_bins)]
    return Metric([b.value for b in bins], [b.n for b in bins])  # type: ignore[misc]


def _negative_accuracy(kind: str) -> Callable[[Sequence[WindowScore], Settings], Metric]:
    def metric(scores: Sequence[WindowScore], s: Settings) -> Metric:
        return _accuracy_of([w for w in scores if w.window.kind == kind])

    return metric


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson's r; NaN when either side is constant or there are fewer than two points."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return NAN
    return float(np.corrcoef(a, b)[0, 1])


def _token_pairs(scores: Sequence[WindowScore]) -> tuple[list[float], list[float]]:
    """(true activation, simulated activation) of every simulated token; unread tokens left out."""
    true, simulated = [], []
    for w in scores:
        for act, value in zip(w.window.acts, w.simulated or (), strict=False):
            if value is not None:
                true.append(act)
                simulated.append(value)
    return true, simulated


def _r_of(scores: Sequence[WindowScore]) -> Metric:
    true, simulated = _token_pairs(scores)
    r = pearson(true, simulated)
    if not math.isnan(r):
        return Metric(r, len(true))
    if not scores:
        why = "no window was simulated"
    elif not any(a > 0 for w in scores for a in w.window.acts):
        why = "no token of these windows activates"
    elif not true:
        why = "no token could be simulated"
    else:
        why = f"the simulated activations are constant ({simulated[0]:.2f} on {len(true)} tokens)"
    return Metric(None, len(true), why)


def _r(scores: Sequence[WindowScore], s: Settings) -> Metric:
    return _r_of(scores)


def _r_top_random(scores: Sequence[WindowScore], s: Settings) -> Metric:
    """Bills et al.'s top-and-random: the top activation bin's windows and the random negatives."""
    top = max((w.window.quantile for w in scores if w.window.activating), default=-1)
    return _r_of([w for w in scores if (w.window.activating and w.window.quantile == top) or w.window.kind == "random"])


def _r_by_quantile(scores: Sequence[WindowScore], s: Settings) -> Metric:
    bins = [_r_of([w for w in scores if w.window.activating and w.window.quantile == q]) for q in range(s.n_bins)]
    return Metric([b.value for b in bins], [b.n for b in bins])  # type: ignore[misc]


# name -> metric over the answered WindowScores of one latent and one explanation. Every n counts
# windows, except the Pearson r metrics', which count the tokens they correlate.
METRICS: dict[str, Callable[[Sequence[WindowScore], Settings], Metric]] = {
    "auroc": _auroc,
    "balanced_accuracy": _confusion_metric(balanced_accuracy, "balanced accuracy (needs both classes)"),
    "precision": _confusion_metric(precision, "precision (nothing predicted positive)"),
    "recall": _confusion_metric(recall, "recall (no positives)"),
    "f1": _confusion_metric(f1, "F1"),
    "accuracy_by_quantile": _accuracy_by_quantile,
    "random_negative_accuracy": _negative_accuracy("random"),
    "hard_negative_accuracy": _negative_accuracy("hard_negative"),
    "cooccurring_negative_accuracy": _negative_accuracy("cooccurring"),
    "similar_negative_accuracy": _negative_accuracy("similar"),
    "r": _r,
    "r_top_random": _r_top_random,
    "r_by_quantile": _r_by_quantile,
}
LIST_METRICS = frozenset({"accuracy_by_quantile", "r_by_quantile"})  # one value per activation-rank bin


def summarise(names: Sequence[str], scores: Sequence[WindowScore], settings: Settings) -> dict[str, Metric]:
    """The metrics `names` over the answered samples (failed and copied answers left out: they are
    counted by the caller)."""
    answered = [w for w in scores if w.failure is None and not w.copied]
    return {name: METRICS[name](answered, settings) for name in names}


def lift(value, chance):
    """value - chance (element-wise for per-quantile lists); None where either is None."""
    if isinstance(value, list) or isinstance(chance, list):
        if value is None or chance is None:
            return None
        return [lift(v, c) for v, c in zip(value, chance, strict=True)]
    return None if value is None or chance is None else value - chance
