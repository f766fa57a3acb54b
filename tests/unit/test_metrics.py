"""Tests of the confusion matrix and data mIoU (alc_fiftyone.core.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alc_fiftyone.core.metrics import ConfusionMatrix, data_miou


def test_hand_computed_iou():
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2])  # absent from both maps
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert cm.pixel_accuracy() == pytest.approx(3 / 4)
    assert cm.total == 4


def test_ignore_excluded_on_both_sides():
    gt = np.array([[0, 1, 255, 1]], np.uint8)
    pred = np.array([[0, 255, 1, 1]], np.uint8)
    cm = ConfusionMatrix(2)
    cm.update(pred, gt)
    # only pixels 0 and 3 count: both correct
    assert cm.total == 2
    np.testing.assert_allclose(cm.iou(), [1.0, 1.0])
    assert data_miou(pred, gt, 2) == pytest.approx(1.0)
    # if only ground-truth ignore were excluded, the pred-ignore pixel would be a miss
    assert data_miou(np.where(pred == 255, 0, pred), gt, 2) < 1.0


def test_class_absent_from_both_is_nan_and_left_out_of_mean():
    gt = np.array([[0, 0, 2, 2]])
    pred = np.array([[0, 0, 2, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    iou = cm.iou()
    assert math.isnan(iou[1]) and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_false_positive_only_class_has_zero_iou():
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 0]), np.array([0, 0]))
    np.testing.assert_allclose(cm.iou(), [0.5, 0.0])


def test_empty_matrix_gives_nan():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou())
    assert math.isnan(cm.pixel_accuracy())
    assert np.isnan(cm.iou()).all()
    assert math.isnan(data_miou(np.full((2, 2), 255), np.full((2, 2), 255), 3))


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 5, size=(6, 20, 30))
    gts = rng.integers(0, 5, size=(6, 20, 30))
    preds[rng.random(preds.shape) < 0.1] = 255
    gts[rng.random(gts.shape) < 0.1] = 255
    one = ConfusionMatrix(5)
    one.update(preds, gts)
    stream = ConfusionMatrix(5)
    for p, g in zip(preds, gts):
        stream.update(p, g)
    np.testing.assert_array_equal(stream.matrix, one.matrix)
    assert stream.miou() == pytest.approx(one.miou())
    assert data_miou(preds, gts, 5) == pytest.approx(one.miou())
    # merging two halves gives the same counts
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    for p, g in zip(preds[:3], gts[:3]):
        a.update(p, g)
    for p, g in zip(preds[3:], gts[3:]):
        b.update(p, g)
    merged = a.merge(b)
    assert merged is a
    np.testing.assert_array_equal(merged.matrix, one.matrix)


def test_values_out_of_range_are_named():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="pred.*7"):
        cm.update(np.array([0, 7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="gt.*9"):
        cm.update(np.array([0, 1]), np.array([9, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3, int), np.zeros(4, int))
    assert cm.total == 0


def test_no_ignore_index_counts_everything():
    cm = ConfusionMatrix(3, ignore_index=None)
    with pytest.raises(ValueError, match="255"):
        cm.update(np.array([0, 255]), np.array([0, 1]))
    cm.update(np.array([0, 2]), np.array([0, 1]))
    assert cm.total == 2


def test_custom_ignore_index():
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(np.array([0, -1, 1]), np.array([0, 1, -1]))
    assert cm.total == 1


def test_merge_rejects_mismatch():
    with pytest.raises(ValueError):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
    with pytest.raises(TypeError):
        ConfusionMatrix(3).merge(np.zeros((3, 3)))


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    np.testing.assert_array_equal(cm.matrix, [[1, 1], [0, 0]])
