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
    # Negatives only: tn = 2, fp = 1. Recall and F1 undefined; balanced accuracy = specificity 2/3.
    c = metrics.confusion([0, 0, 0], [0, 1, 0])
    assert math.isnan(metrics.recall(c))
    assert metrics.f1(c) == 0.0  # 2tp + fp + fn = 1 -> 0 / 1
    assert metrics.balanced_accuracy(c) == pytest.approx(2 / 3)
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
