"""numpy backend: the primitives the vectorised algorithm (:mod:`.vectorized`) is written
against; pixels of a superpixel are made contiguous by one stable radix sort."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    _LOW32,
    _bad_label_error,
    _check_prob_values,
    _check_shapes,
    _dense_ids_numpy,
    _Image,
)


class _NumpyOps:
    """numpy primitives. Pixels of a superpixel are made contiguous by one stable sort."""

    is_torch = False

    # elementwise helpers (float32 unless stated)
    def dev(self, x: np.ndarray) -> np.ndarray:
        return x

    def host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def full(self, n: int, value: float) -> np.ndarray:
        return np.full(n, value, dtype=np.float32)

    def class_index_array(self, n: int, num_classes: int) -> np.ndarray:
        return np.zeros(n, dtype=np.uint8 if num_classes <= 256 else np.int32)

    def argmax_update(self, am: np.ndarray, greater: np.ndarray, c: int) -> None:
        # classes are scanned in increasing order, so the last strict improvement is the
        # largest c: a branch-free running maximum of greater * c
        np.maximum(am, np.multiply(greater, am.dtype.type(c), dtype=am.dtype), out=am)

    def maximum_(self, a: np.ndarray, b: np.ndarray) -> None:
        np.maximum(a, b, out=a)

    def minimum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)

    def clamp_min(self, a: np.ndarray, value: np.float32) -> np.ndarray:
        return np.maximum(a, value)

    def sqrt(self, a: np.ndarray) -> np.ndarray:
        return np.sqrt(a)

    def log(self, a: np.ndarray) -> np.ndarray:
        return np.log(a)

    def where(self, cond: Any, a: Any, b: Any) -> np.ndarray:
        return np.where(cond, a, b)

    def take(self, table: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.take(table, idx)

    def to_int64(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.int64)

    def gather_rows(self, P: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """P[rows[j], j] for every column j of a C-contiguous (C, M) array."""
        m = P.shape[1]
        return np.take(P.reshape(-1), rows * m + np.arange(m))

    def float_key(self, cos: np.ndarray) -> np.ndarray:
        """int64 key ordered by the float32 value (high 32 bits), then by -position."""
        bits = (cos + np.float32(0.0)).view(np.int32)
        key = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
        key <<= 32
        key += _LOW32 - np.arange(cos.shape[0], dtype=np.int64)
        return key

    def count(self, idx: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(idx, minlength=n)[:n].astype(np.int64)

    def layout(
        self, img: _Image, is_dom: np.ndarray, sizes: np.ndarray, n_dom: np.ndarray
    ) -> _NumpyLayout:
        return _NumpyLayout(img, is_dom, sizes, n_dom)


class _NumpyLayout:
    """Valid pixels sorted by (superpixel, dominant first), row-major within each group.

    Gathers of per-superpixel values become ``np.repeat`` and segment sums ``reduceat``.
    """

    def __init__(
        self, img: _Image, is_dom: np.ndarray, sizes: np.ndarray, n_dom: np.ndarray
    ) -> None:
        n_sp = sizes.shape[0]
        key = 2 * img.sid + (~is_dom)  # "no superpixel" (sid == S) sorts last
        if 2 * n_sp + 1 < (1 << 16):
            key = key.astype(np.uint16)  # numpy sorts 16-bit keys with a radix sort
        m = int(sizes.sum())
        self.perm = np.argsort(key, kind="stable")[:m]
        self.P = np.take(img.P, self.perm, axis=1)
        self.sizes = sizes
        starts = np.zeros(n_sp, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        self.starts = starts
        inter = np.empty(2 * n_sp, dtype=np.int64)
        inter[0::2] = starts
        inter[1::2] = starts + n_dom
        # reduceat wants indices < M; the last group's end is implied by the array's end
        self.dom_bounds = inter if inter[-1] < m else inter[:-1]

    def to_layout(self, x: np.ndarray) -> np.ndarray:
        return np.take(x, self.perm)

    def expand(self, row: np.ndarray) -> np.ndarray:
        return np.repeat(row, self.sizes)

    def seg_sum(self, x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, self.starts, dtype=np.float64)

    def seg_sum_dom(self, x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, self.dom_bounds, dtype=np.float64)[0::2]

    def seg_max_dom(self, key: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(key, self.dom_bounds)[0::2]

    def flat(self, pos: np.ndarray) -> np.ndarray:
        return self.perm[pos]


def _prepare_numpy(probs: Any, superpixels: Any, labels: Any, ignore_index: int | None) -> _Image:
    probs = np.asarray(probs)
    superpixels = np.asarray(superpixels)
    labels = np.asarray(labels)
    _check_shapes(
        probs.shape,
        np.issubdtype(probs.dtype, np.floating),
        superpixels.shape,
        np.issubdtype(superpixels.dtype, np.integer),
        labels.shape,
        np.issubdtype(labels.dtype, np.integer),
    )
    num_classes, height, width = probs.shape
    n = height * width
    lab = labels.reshape(n).astype(np.int64)
    bad = (lab < 0) | (lab >= num_classes)
    if ignore_index is not None:
        bad &= lab != ignore_index
    if bad.any():
        raise _bad_label_error(np.unique(lab[bad]), num_classes, ignore_index)
    sp = superpixels.reshape(n)
    if sp.dtype.kind == "i" and n and sp.min() < 0:
        raise ValueError("superpixel ids must be non-negative (0 = no superpixel)")
    P = np.ascontiguousarray(probs.reshape(num_classes, n), dtype=np.float32)
    if n:
        _check_prob_values(float(P.min()), float(P.max()))
    ids, sid = _dense_ids_numpy(sp)
    return _Image(P=P, lab=lab, sid=sid, ids=ids, width=width)
