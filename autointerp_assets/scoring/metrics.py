"""Binary-classification metrics for the scorers, in plain numpy.

Conventions (every function here follows them):
- `y_true` and `y_pred` are 0/1 (or bool) arrays of equal length; `y_score` is a float array
  where higher means "more likely positive".
- An undefined value (a zero denominator, a missing class) is `float("nan")`, never 0 and never
  an exception: a latent with no predicted positives has an undefined precision, which is not the
  same as a precision of 0. Callers turn NaN into a null column value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

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
    """Mean of recall and specificity over the classes present (sklearn's convention): with one
    class only it is that class's accuracy; NaN when there are no examples."""
    rates = [r for r in (recall(c), specificity(c)) if not math.isnan(r)]
    return sum(rates) / len(rates) if rates else NAN


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
