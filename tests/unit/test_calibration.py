"""Temperature scaling of out-of-fold probabilities."""

from __future__ import annotations

import numpy as np

from alc_fiftyone.core.probabilities import apply_temperature, fit_temperature


def _data(conf: float, acc: float, n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 3, n)
    right = rng.random(n) < acc
    target = np.where(right, pred, (pred + 1 + rng.integers(0, 2, n)) % 3)
    p = np.full((n, 3), (1 - conf) / 2)
    p[np.arange(n), pred] = conf
    return p, target


def test_overconfident_gets_t_above_one_and_underconfident_below():
    p, t = _data(conf=0.99, acc=0.7)
    T = fit_temperature([p], [t])
    assert T > 1.5
    q = apply_temperature(p, T)
    assert np.allclose(q.sum(axis=1), 1) and abs(q.max(axis=1).mean() - 0.7) < 0.05
    p, t = _data(conf=0.4, acc=0.95)
    assert fit_temperature([p], [t]) < 1.0


def test_skips_unlabelled_and_empty():
    p, t = _data(conf=0.9, acc=0.9)
    t[:100] = -1
    assert 0.05 <= fit_temperature([p], [t], [np.ones(len(t))]) <= 20
    assert fit_temperature([p], [np.full(len(t), -1)]) == 1.0
    assert fit_temperature([], []) == 1.0
