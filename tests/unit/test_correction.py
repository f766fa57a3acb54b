"""Tests of label expansion and the simulated annotator (alc_fiftyone.core.correction)."""

from __future__ import annotations

import numpy as np
import pytest

from alc_fiftyone.core.acquisition import score_superpixels
from alc_fiftyone.core.correction import (
    AnswerOutcome,
    answer_query,
    expand_answer,
    oracle_answer,
    region_mask,
)


def test_expand_answer_counts_changed_pixels_and_copies():
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0:2] = 3
    region = np.zeros((4, 4), bool)
    region[0, 0:4] = True  # 4 pixels, 2 of which already hold 3
    region[1, 0] = True
    new, changed = expand_answer(labels, region, 3)
    assert changed == 3
    assert (new[region] == 3).all()
    assert (new[~region] == labels[~region]).all()
    assert labels[0, 2] == 0  # input untouched
    assert new.dtype == labels.dtype


def test_expand_answer_validation():
    labels = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="boolean"):
        expand_answer(labels, np.ones((2, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="shape"):
        expand_answer(labels, np.ones((3, 2), bool), 1)
    with pytest.raises(ValueError, match="fit"):
        expand_answer(labels, np.ones((2, 2), bool), 300)


def _region_case(n_match: int, n: int = 100):
    """A 10x10 region whose labels match the ground truth (class 2) on n_match pixels."""
    gt = np.full((10, 10), 2, np.uint8)
    labels = np.full((10, 10), 5, np.uint8)
    labels.reshape(-1)[:n_match] = 2
    region = np.zeros((10, 10), bool)
    region.reshape(-1)[:n] = True
    return gt, labels, region


def test_oracle_exactly_half_matching_changes():
    gt, labels, region = _region_case(50)
    assert oracle_answer(gt, labels, region) == 2
    new, outcome = answer_query(gt, labels, region)
    assert outcome == AnswerOutcome(changed=50, answer=2)
    assert (new == 2).all()


def test_oracle_51_percent_matching_is_a_no_op():
    gt, labels, region = _region_case(51)
    assert oracle_answer(gt, labels, region) is None
    assert oracle_answer(gt, labels, region, rule="rep", rep_yx=(9, 9)) is None
    new, outcome = answer_query(gt, labels, region)
    assert outcome == AnswerOutcome(changed=0, answer=None)
    np.testing.assert_array_equal(new, labels)


def test_oracle_small_region_half_rule():
    gt = np.array([[1, 1]], np.uint8)
    assert oracle_answer(gt, np.array([[1, 0]], np.uint8), np.ones((1, 2), bool)) == 1
    assert oracle_answer(gt, np.array([[1, 1]], np.uint8), np.ones((1, 2), bool)) is None
    assert oracle_answer(gt, np.array([[0, 0]], np.uint8), np.zeros((1, 2), bool)) is None


def test_gt_ignore_counts_as_mismatch():
    gt = np.array([[1, 1, 255, 255]], np.uint8)
    labels = np.array([[1, 0, 255, 255]], np.uint8)  # 3 equal values, but only 1 real match
    region = np.ones((1, 4), bool)
    assert oracle_answer(gt, labels, region) == 1
    # without an ignore value the 255s are a class like any other: 3 of 4 match
    assert oracle_answer(gt, labels, region, ignore_index=None) is None


def test_majority_never_returns_ignore():
    gt = np.full((3, 3), 255, np.uint8)
    gt[0, 0] = 4
    gt[0, 1] = 4
    gt[0, 2] = 1
    labels = np.zeros((3, 3), np.uint8)
    region = np.ones((3, 3), bool)
    assert oracle_answer(gt, labels, region) == 4
    all_ignore = np.full((3, 3), 255, np.uint8)
    assert oracle_answer(all_ignore, labels, region) is None
    _, outcome = answer_query(all_ignore, labels, region)
    assert outcome.answer is None and outcome.changed == 0


def test_majority_ties_go_to_smallest_class():
    gt = np.array([[3, 3, 1, 1]], np.uint8)
    assert oracle_answer(gt, np.zeros((1, 4), np.uint8), np.ones((1, 4), bool)) == 1


def test_rep_rule_may_return_ignore():
    gt = np.array([[255, 2, 2, 2]], np.uint8)
    labels = np.zeros((1, 4), np.uint8)
    region = np.ones((1, 4), bool)
    assert oracle_answer(gt, labels, region, rule="rep", rep_yx=(0, 0)) == 255
    assert oracle_answer(gt, labels, region, rule="rep", rep_yx=(0, 1)) == 2
    assert oracle_answer(gt, labels, region, rule="majority") == 2
    new, outcome = answer_query(gt, labels, region, rule="rep", rep_yx=(0, 0))
    assert outcome == AnswerOutcome(changed=4, answer=255)
    assert (new == 255).all()


def test_oracle_validation():
    gt = np.zeros((2, 2), np.uint8)
    region = np.ones((2, 2), bool)
    with pytest.raises(ValueError, match="rule"):
        oracle_answer(gt, gt + 1, region, rule="vote")
    with pytest.raises(ValueError, match="rep_yx"):
        oracle_answer(gt, gt + 1, region, rule="rep")
    with pytest.raises(ValueError):
        oracle_answer(gt, np.zeros((3, 2), np.uint8), region)


def test_region_mask_tau_zero_is_whole_superpixel():
    sp = np.array([[1, 1, 2], [0, 2, 2]], np.uint16)
    np.testing.assert_array_equal(region_mask(sp, 2), sp == 2)
    with pytest.raises(ValueError, match="probs"):
        region_mask(sp, 2, tau=0.5)


def test_region_mask_with_tau_matches_expanded_sizes():
    probs = np.zeros((2, 4, 4), np.float32)
    probs[:, :, 0:2] = np.array([0.8, 0.2], np.float32)[:, None, None]
    probs[:, 0:3, 2:4] = np.array([0.3, 0.7], np.float32)[:, None, None]
    probs[:, 3, 2:4] = np.array([0.9, 0.1], np.float32)[:, None]
    sp = np.ones((4, 4), np.uint16)
    sp[:, 2:4] = 2
    labels = np.ones((4, 4), np.uint8)
    res = score_superpixels(probs, sp, labels, "sim", tau=0.9)
    mask = region_mask(sp, 2, probs=probs, rep_yx=res.rep_yx[1], tau=0.9)
    assert mask.sum() == res.expanded_sizes[1] == 6
    assert not mask[3].any()
    # the answer is expanded to E(s) only
    gt = np.zeros((4, 4), np.uint8)
    new, outcome = answer_query(gt, labels, mask)
    assert outcome == AnswerOutcome(changed=6, answer=0)
    assert (new[3, 2:4] == 1).all()
