import math

import numpy as np
import pytest

from autointerp_assets.scoring import metrics

# 10 examples: 4 positives, 6 negatives.
Y_TRUE = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
Y_PRED = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
# positives predicted 1,1,1,0 -> tp = 3, fn = 1; negatives predicted 1,1,0,0,0,0 -> fp = 2, tn = 4


def test_confusion_counts():
    assert metrics.confusion(Y_TRUE, Y_PRED) == metrics.Confusion(tp=3, fp=2, tn=4, fn=1)


def test_rates_by_hand():
    c = metrics.confusion(Y_TRUE, Y_PRED)
    assert metrics.precision(c) == pytest.approx(3 / 5)  # tp / (tp + fp) = 3 / 5 = 0.6
    assert metrics.recall(c) == pytest.approx(3 / 4)  # tp / (tp + fn) = 3 / 4 = 0.75
    assert metrics.specificity(c) == pytest.approx(4 / 6)  # tn / (tn + fp) = 4 / 6
    # (0.75 + 0.6667) / 2 = 0.708333...
    assert metrics.balanced_accuracy(c) == pytest.approx((3 / 4 + 4 / 6) / 2)
    # 2tp / (2tp + fp + fn) = 6 / (6 + 2 + 1) = 0.6667; equals 2PR/(P+R) = 2*0.6*0.75/1.35
    assert metrics.f1(c) == pytest.approx(6 / 9)
    assert metrics.f1(c) == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert metrics.accuracy(c) == pytest.approx(7 / 10)  # (tp + tn) / n


def test_no_predicted_positives():
    # tp = 0, fp = 0, fn = 2, tn = 2
    c = metrics.confusion([1, 1, 0, 0], [0, 0, 0, 0])
    assert math.isnan(metrics.precision(c))  # 0 / 0
    assert metrics.recall(c) == 0.0  # 0 / 2
    assert metrics.f1(c) == 0.0  # 0 / (0 + 0 + 2): defined although precision is not
    assert metrics.balanced_accuracy(c) == pytest.approx(0.5)  # (0 + 1) / 2


def test_single_class_and_empty():
    # Negatives only: tn = 2, fp = 1. Recall and F1 undefined; so is balanced accuracy: a missing
    # class is never averaged away (answering "0" everywhere would otherwise score 1.0).
    c = metrics.confusion([0, 0, 0], [0, 1, 0])
    assert math.isnan(metrics.recall(c))
    assert metrics.f1(c) == 0.0  # 2tp + fp + fn = 1 -> 0 / 1
    assert math.isnan(metrics.balanced_accuracy(c))
    assert math.isnan(metrics.balanced_accuracy(metrics.confusion([0, 0, 0], [0, 0, 0])))
    # Negatives only, all right: 2tp + fp + fn = 0 -> F1 undefined.
    assert math.isnan(metrics.f1(metrics.confusion([0, 0], [0, 0])))
    empty = metrics.confusion([], [])
    assert empty.n == 0
    assert math.isnan(metrics.balanced_accuracy(empty))
    assert math.isnan(metrics.accuracy(empty))


def test_auroc_with_ties_by_hand():
    # Pairs (positive score, negative score): (0.9, 0.3)=1, (0.9, 0.4)=1, (0.4, 0.3)=1, (0.4, 0.4)=0.5
    # -> 3.5 / 4 = 0.875. Via ranks: 0.3 -> 1, 0.4/0.4 -> 2.5 each, 0.9 -> 4;
    # positive rank sum 4 + 2.5 = 6.5, U = 6.5 - 2*3/2 = 3.5, AUROC = 3.5 / (2*2).
    assert metrics.auroc([1, 0, 1, 0], [0.9, 0.3, 0.4, 0.4]) == pytest.approx(0.875)


def test_auroc_extremes():
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.auroc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: every pair counts 1/2
    assert math.isnan(metrics.auroc([1, 1], [0.2, 0.7]))  # one class only
    assert math.isnan(metrics.auroc([], []))


def test_average_ranks_by_hand():
    # sorted: 1.0 (rank 1), 2.0 x3 (ranks 2,3,4 -> 3), 5.0 (rank 5)
    ranks = metrics._average_ranks(np.array([2.0, 5.0, 2.0, 1.0, 2.0]))
    assert ranks.tolist() == [3.0, 5.0, 3.0, 1.0, 3.0]


def test_invalid_inputs():
    with pytest.raises(ValueError, match="0/1"):
        metrics.confusion([0, 2], [0, 1])
    with pytest.raises(ValueError, match="length"):
        metrics.confusion([0, 1], [0])
    with pytest.raises(ValueError, match="length"):
        metrics.auroc([0, 1], [0.5])


def test_summarise_counts_each_metrics_n_and_leaves_failures_out():
    from autointerp_assets.scoring.base import Window, WindowScore

    def w(activating, kind="quantile", quantile=0):
        return Window(activating, kind, quantile if activating else -1, ("a",), (1.0 if activating else 0.0,))

    scores = [WindowScore(1, w(True), score=0.9, pred=1), WindowScore(1, w(True, quantile=1), score=None, pred=0),
              WindowScore(0, w(False, "random"), score=0.2, pred=0), WindowScore(0, w(False, "hard_negative"), pred=1),
              WindowScore(1, w(True), failure="llm error: timeout"), WindowScore(0, w(False), pred=1, copied=True)]
    out = metrics.summarise(list(metrics.METRICS), scores, metrics.Settings(n_bins=2, min_auroc_n=2))
    assert out["auroc"] == metrics.Metric(1.0, 2)  # the two windows with a probability
    assert out["balanced_accuracy"].value == pytest.approx((1 / 2 + 1 / 2) / 2) and out["balanced_accuracy"].n == 4
    assert out["accuracy_by_quantile"] == metrics.Metric([1.0, 0.0], [1, 1])
    assert out["random_negative_accuracy"] == metrics.Metric(1.0, 1)
    assert out["hard_negative_accuracy"] == metrics.Metric(0.0, 1)
    few = metrics.summarise(["auroc"], scores, metrics.Settings(n_bins=2, min_auroc_n=3))["auroc"]
    assert few.value is None and few.n == 2 and "min_auroc_n=3" in few.why_null
    assert metrics.lift([0.5, None], [0.25, 0.5]) == [0.25, None] and metrics.lift(0.75, None) is None
