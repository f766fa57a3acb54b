"""The stratified sample of regions and the estimate of what remains (core.estimation)."""

import numpy as np
import pytest

from alc_fiftyone.core.estimation import (
    allocate,
    remaining_total,
    score_strata,
    stratified_sample,
)


def test_strata_cut_by_score_quantiles():
    scores = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0])
    strata = score_strata(scores, 3)
    assert strata.tolist() == [2, 0, 1, 1, 2, 0]
    assert score_strata(scores, 10).max() == 5  # never more strata than regions
    assert score_strata(np.zeros(0), 3).size == 0


def test_allocation_is_proportional_with_two_per_stratum():
    assert allocate([100, 100, 100, 100], 8).tolist() == [2, 2, 2, 2]
    assert allocate([10, 30, 60], 20).tolist() == [2, 6, 12]
    alloc = allocate([1, 50, 400], 30)
    assert alloc.sum() == 30 and alloc[0] == 1 and alloc[1] >= 2
    assert allocate([3, 3], 100).tolist() == [3, 3]  # at most every region
    assert allocate([5, 5], 0).tolist() == [0, 0]


def test_sample_draws_without_replacement_with_its_inclusion_probabilities():
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    idx, strata, probs, all_strata = stratified_sample(scores, 40, 4, rng)
    assert idx.size == 40 and np.unique(idx).size == 40
    assert (all_strata[idx] == strata).all()
    sizes = np.bincount(all_strata)
    for h in range(4):
        n_h = int((strata == h).sum())
        assert n_h == 10
        assert np.allclose(probs[strata == h], n_h / sizes[h])


def test_a_census_of_a_stratum_leaves_nothing_unknown():
    est = remaining_total([3], np.zeros(3, dtype=int), np.array([1.0, 2.0, 3.0]))
    assert est.total == 0 and est.se == 0


def test_no_answered_draw_gives_an_open_interval():
    est = remaining_total([10], np.zeros(0, dtype=int), np.zeros(0), upper=500)
    assert np.isnan(est.total) and est.low == 0 and est.high == 500


def _population(rng, n=3000):
    """Regions whose error (pixels an answer would change) grows with their score, as a
    ranking's score is meant to: mostly zero, sometimes the whole region."""
    scores = rng.gamma(1.0, 1.0, n)
    sizes = rng.integers(50, 2000, n)
    p_wrong = 1 / (1 + np.exp(-(scores - 3.0)))
    wrong = rng.random(n) < p_wrong
    return scores, np.where(wrong, sizes, 0).astype(float), sizes


def test_interval_covers_the_known_truth_at_its_level():
    rng = np.random.default_rng(42)
    scores, errors, sizes = _population(rng)
    covered, widths = 0, []
    runs = 300
    for _ in range(runs):
        idx, strata, _, all_strata = stratified_sample(scores, 150, 4, rng)
        rest = np.ones(scores.size, dtype=bool)
        rest[idx] = False
        truth = errors[rest].sum()
        est = remaining_total(
            np.bincount(all_strata), strata, errors[idx], upper=float(sizes[rest].sum())
        )
        covered += est.low <= truth <= est.high
        widths.append((est.high - est.low) / truth)
    assert covered / runs >= 0.90  # nominal 95%, a normal interval on skewed values
    assert np.median(widths) < 1.5


def test_estimate_is_unbiased():
    rng = np.random.default_rng(7)
    scores, errors, _ = _population(rng, 1000)
    got = []
    for _ in range(400):
        idx, strata, _, all_strata = stratified_sample(scores, 80, 4, rng)
        rest = np.ones(scores.size, dtype=bool)
        rest[idx] = False
        est = remaining_total(np.bincount(all_strata), strata, errors[idx])
        got.append(est.total - errors[rest].sum())
    assert abs(np.mean(got)) < 3 * np.std(got) / np.sqrt(len(got))  # zero within its error


@pytest.mark.parametrize("num_strata", [1, 4])
def test_ht_equals_stratified_expansion(num_strata):
    rng = np.random.default_rng(3)
    scores = rng.random(200)
    y = rng.integers(0, 5, 200).astype(float)
    idx, strata, probs, all_strata = stratified_sample(scores, 30, num_strata, rng)
    ht_total = (y[idx] / probs).sum()
    est = remaining_total(np.bincount(all_strata), strata, y[idx])
    assert est.total + y[idx].sum() == pytest.approx(ht_total)


def test_ratio_estimate_on_pixels_covers_the_truth():
    """Allocation by pixels and the separate ratio estimator: the interval holds the pixels
    still wrong at about its level, and is narrower than the expansion estimate's."""
    rng = np.random.default_rng(11)
    scores, errors, sizes = _population(rng)
    covered, ratio_w, plain_w = 0, [], []
    runs = 300
    for _ in range(runs):
        idx, strata, _, all_strata = stratified_sample(scores, 150, 4, rng, weights=sizes)
        rest = np.ones(scores.size, dtype=bool)
        rest[idx] = False
        truth = errors[rest].sum()
        big_n = np.bincount(all_strata)
        big_x = np.bincount(all_strata, weights=sizes)
        est = remaining_total(
            big_n, strata, errors[idx], aux=sizes[idx].astype(float), stratum_aux=big_x
        )
        plain = remaining_total(big_n, strata, errors[idx])
        covered += est.low <= truth <= est.high
        ratio_w.append(est.high - est.low)
        plain_w.append(plain.high - plain.low)
    assert covered / runs >= 0.90
    assert np.median(ratio_w) < np.median(plain_w)


def test_allocation_by_pixels_favours_the_big_strata():
    from alc_fiftyone.core.estimation import allocate_by

    assert allocate_by([100.0, 100.0, 800.0], [50, 50, 50], 20).tolist() == [2, 2, 16]
    assert allocate_by([1.0, 1000.0], [10, 3], 8).tolist() == [5, 3]  # at most a stratum


def test_nothing_found_still_gives_an_upper_bound():
    est = remaining_total(
        [100], np.zeros(10, dtype=int), np.zeros(10), aux=np.full(10, 5.0), stratum_aux=[500.0]
    )
    assert est.total == 0 and est.low == 0
    assert est.high == pytest.approx(3 / 10 * 450)  # the rule of three


def test_combined_ratio_to_a_predictive_score_covers_the_truth_and_is_narrower():
    """A score that predicts the pixels an answer changes (sim's expected pixels, noisy and
    0 on many regions that still hold errors): the combined ratio to it holds the truth at
    about its level, its estimate is unbiased, and its interval is narrower than the ratio
    to the pixels'."""
    rng = np.random.default_rng(5)
    n = 3000
    sizes = rng.integers(50, 2000, n).astype(float)
    p_wrong = rng.beta(0.6, 2.0, n)
    wrong = rng.random(n) < p_wrong
    errors = np.where(wrong, sizes * rng.uniform(0.3, 1.0, n), 0.0)
    # the model's expectation: p * size, blurred, and 0 where it is sure (but not always right)
    score = np.where(p_wrong > 0.05, p_wrong * sizes * rng.lognormal(0, 0.3, n), 0.0)
    covered, comb_w, pix_w, bias = 0, [], [], []
    runs = 300
    for _ in range(runs):
        idx, strata, _, all_strata = stratified_sample(score, 60, 4, rng, weights=sizes)
        rest = np.ones(n, dtype=bool)
        rest[idx] = False
        truth = errors[rest].sum()
        big_n = np.bincount(all_strata)
        comb = remaining_total(
            big_n,
            strata,
            errors[idx],
            aux=score[idx],
            stratum_aux=np.bincount(all_strata, weights=score),
            combined=True,
        )
        pix = remaining_total(
            big_n,
            strata,
            errors[idx],
            aux=sizes[idx],
            stratum_aux=np.bincount(all_strata, weights=sizes),
        )
        covered += comb.low <= truth <= comb.high
        comb_w.append(comb.high - comb.low)
        pix_w.append(pix.high - pix.low)
        bias.append(comb.total - truth)
    assert covered / runs >= 0.90
    assert abs(np.mean(bias)) < 3 * np.std(bias) / np.sqrt(runs)
    assert np.median(comb_w) < np.median(pix_w)


def test_combined_ratio_counts_the_errors_of_regions_scored_zero():
    """A stratum whose regions all score 0 (the model is sure) but whose draws found errors:
    the separate ratio has nothing to scale there, the combined estimate still counts them."""
    strata = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([100.0, 0.0, 50.0, 10.0, 20.0, 30.0])
    score = np.array([0.0, 0.0, 0.0, 10.0, 20.0, 30.0])
    est = remaining_total(
        [30, 30], strata, y, aux=score, stratum_aux=[0.0, 600.0], combined=True, upper=1e6
    )
    # stratum 0: 27 regions left at a mean residual of 50; stratum 1: B = 1 on 540 left
    assert est.total == pytest.approx(27 * 50.0 + 540.0, rel=0.05)
