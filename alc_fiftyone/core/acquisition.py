"""Superpixel acquisition functions for active label correction.

Ranks the superpixels of one image for a correction query. The proposed function is the
look-ahead SIM of Kim, Hwang, Kwak and Ok, "Active Label Correction for Semantic Segmentation
with Foundation Models", ICML 2024 (PMLR 235): the expected number of pixels one answer fixes,

    A(s) = sum_{x in E(s)} w(x; s) * a(x),

with ``a(x) = 1 - P(y'(x) | x)`` (y' the current label, or the model's argmax where the label
is ignore), ``w(x; s)`` the cosine between the probability vectors of x and of the
representative pixel rep(s), and ``E(s) = {x in s : w(x; s) >= tau}`` the expansion region.
rep(s) is, among the pixels of s whose argmax is the dominant (most frequent) predicted class
of s, the one whose probability vector is closest (cosine) to their mean vector; ties go to the
first pixel in row-major order.

Baselines: pixel-CIL ``a(rep(s))`` and mean-CIL (mean of ``a`` over E(s)) from the same paper;
entropy and margin (best-versus-second-best) uncertainty; ClassBal from Cai et al.,
"Revisiting Superpixels for Active Learning in Semantic Segmentation with Realistic
Annotation Costs", CVPR 2021; the adaptively balanced ABC function from Jeon, Cho, Woo and Kim,
"Active and Automated Label Correction for Semantic Segmentation" (A2LC, arXiv 2506.11599);
and seeded random.

Three backends compute the same thing. The CPU default is numba (when it is importable;
numpy otherwise): four fused passes over the pixels in row-major order (pass 1 in tiles of
pixels, the others in runs of pixels of one superpixel within an image row). Pass 1 takes the
argmax, the pixel norms, a(x) and the class histogram of every superpixel (hence its dominant
class); pass 2 sums the probability vectors of the dominant-class pixels (their mean); pass 3
takes the cosine of every pixel to its superpixel's mean and keeps the highest among the
dominant-class pixels, the first in row-major order on ties (rep(s)); pass 4 takes the cosine
to the representative and sums w * a over E(s). It is compiled once per process on first use
(and cached on disk), runs on one thread and releases the GIL.

The numpy and torch backends are vectorised over the pixels of the image (no Python loop over
superpixels, only over the C classes): a dense superpixel index per pixel, the dominant class by
``bincount(sid * C + argmax)``, and the representative as one segment maximum of an int64 key
packing the float32 cosine (high bits) and the negated pixel position (low bits), so that the
largest key is the highest cosine and, among equal cosines, the first pixel in row-major
order. On numpy the valid pixels are first grouped by (superpixel, dominant or not) with one
stable radix sort, which turns per-superpixel gathers into ``np.repeat`` and segment sums
into ``reduceat``; on torch (CPU or CUDA) gathers are ``index_select`` and segment sums
``index_add_`` / ``scatter_reduce_``. The arithmetic that decides the representative and the
expansion region is float32 in the same operation order on all backends (per-superpixel
means summed in float64, then rounded), so they choose the same pixels, ties included.
:func:`score_loop` is a plain per-superpixel loop of the same semantics, kept as a readable
reference and as the baseline of ``benchmarks/acquisition_speed.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "SuperpixelScores",
    "abc_class_weights",
    "class_prior_from_dominant",
    "expansion_mask",
    "numba_available",
    "score_loop",
    "score_superpixels",
]

METHODS = ("sim", "cil_pixel", "cil_mean", "entropy", "margin", "random", "classbal", "abc")

_LOW32 = (1 << 32) - 1
_INT64_MIN = np.iinfo(np.int64).min
_TINY = np.float32(1e-30)
_LOG_EPS = np.float32(1e-12)
# Dense superpixel indexing uses a lookup table over the id range when the largest id is at
# most max(_LUT_MAX_ID, 4 * pixels); larger ids go through unique().
_LUT_MAX_ID = 1 << 16


@dataclass
class SuperpixelScores:
    """Acquisition scores of the superpixels of one image.

    All arrays are aligned and have one entry per superpixel id present in the map (id 0,
    "no superpixel", excluded), ids ascending.
    """

    ids: np.ndarray  # (S,) int64
    scores: np.ndarray  # (S,) float64, higher = ask first
    rep_yx: np.ndarray  # (S, 2) int64 (row, col) of rep(s)
    dominant: np.ndarray  # (S,) int64 dominant predicted class
    sizes: np.ndarray  # (S,) int64 pixel count of s
    expanded_sizes: np.ndarray  # (S,) int64 |E(s)|

    def order(self) -> np.ndarray:
        """Indices sorting the superpixels by score descending, ties by id ascending."""
        return np.lexsort((self.ids, -self.scores))

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def class_prior_from_dominant(dominant_counts: Any) -> np.ndarray:
    """Normalise per-class region counts into the ClassBal prior ``p_c``.

    ``dominant_counts[c]`` is the number of regions whose dominant predicted class is c
    (Cai et al., CVPR 2021). Returns ``counts / counts.sum()`` as float64 (all zeros when there
    is no region).
    """
    counts = np.asarray(dominant_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"dominant_counts must be 1-D, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("dominant_counts must be non-negative")
    total = counts.sum()
    if total <= 0:
        return np.zeros_like(counts)
    return counts / total


def abc_class_weights(label_counts: Any) -> np.ndarray:
    """Class weights of the adaptively balanced acquisition (ABC) of A2LC (arXiv 2506.11599).

    ``W_c = (min_{k: N_k > 0} N_k / N_c) ** (KL ** 3)`` with ``N_c = label_counts[c]`` and KL
    the Kullback-Leibler divergence of ``p = N / N.sum()`` from the uniform distribution over
    all C classes (``0 log 0 = 0``). A balanced distribution (KL = 0) gives weight 1 to every
    present class; the more skewed it is, the more the frequent classes are damped. Absent
    classes (``N_c == 0``) weigh 0.
    """
    counts = np.asarray(label_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"label_counts must be 1-D, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("label_counts must be non-negative")
    weights = np.zeros_like(counts)
    present = counts > 0
    if not present.any():
        return weights
    p = counts / counts.sum()
    num_classes = counts.shape[0]
    kl = float(np.sum(p[present] * np.log(p[present] * num_classes)))
    kl = max(kl, 0.0)
    weights[present] = (counts[present].min() / counts[present]) ** (kl**3)
    return weights


# ---------------------------------------------------------------------------------------------
# validation and backend selection


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device") and hasattr(x, "dim")


def _resolve_backend(device: Any, inputs: tuple[Any, ...]) -> Any:
    """Return ``"numba"`` or ``"numpy"`` for a host backend, else the ``torch.device``."""
    tensors = [x for x in inputs if _is_tensor(x)]
    if isinstance(device, str):
        name = device.strip().lower()
        if name == "numpy":
            return "numpy"
        if name == "numba":
            if not numba_available():
                raise ValueError("device 'numba' requested but numba cannot be imported")
            return "numba"
        if name == "cpu":
            return tensors[0].device if tensors else _cpu_default()
        if name == "auto":
            if _cuda_available():
                import torch

                return torch.device("cuda")
            return tensors[0].device if tensors else _cpu_default()
        import torch

        if name == "torch":
            return torch.device("cpu")
        name = name.removeprefix("torch:")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {device!r}") from exc
    elif _is_torch_device(device):
        import torch

        dev = device
    else:
        raise ValueError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def _cpu_default() -> str:
    """The CPU backend for numpy inputs: numba when importable, else numpy."""
    return "numba" if numba_available() else "numpy"


def _is_torch_device(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and type(x).__name__ == "device"


def _cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _check_shapes(
    p_shape: tuple,
    p_dtype_ok: bool,
    sp_shape: tuple,
    sp_int: bool,
    lab_shape: tuple,
    lab_int: bool,
) -> None:
    if len(p_shape) != 3:
        raise ValueError(f"probs must be 3-D (C, H, W), got shape {tuple(p_shape)}")
    if p_shape[0] < 1:
        raise ValueError("probs must have at least one class (C >= 1)")
    if not p_dtype_ok:
        raise ValueError("probs must be a floating point array")
    if len(sp_shape) != 2 or tuple(sp_shape) != tuple(p_shape[1:]):
        raise ValueError(
            f"superpixels must be (H, W) = {tuple(p_shape[1:])}, got shape {tuple(sp_shape)}"
        )
    if not sp_int:
        raise ValueError("superpixels must be an integer array (uint16 recommended)")
    if len(lab_shape) != 2 or tuple(lab_shape) != tuple(p_shape[1:]):
        raise ValueError(
            f"labels must be (H, W) = {tuple(p_shape[1:])}, got shape {tuple(lab_shape)}"
        )
    if not lab_int:
        raise ValueError("labels must be an integer array")


def _check_prob_values(lo: float, hi: float) -> None:
    """ValueError unless the probabilities lie in [0, inf) (``lo``/``hi``: their min and max;
    a NaN makes ``lo >= 0`` false)."""
    if not (lo >= 0 and np.isfinite(hi)):
        raise ValueError(
            f"probs must be finite and non-negative, got values in [{lo}, {hi}] (NaN, infinite "
            "or negative probabilities)"
        )


def _bad_label_error(bad_values: np.ndarray, num_classes: int, ignore_index: int | None):
    shown = ", ".join(str(int(v)) for v in bad_values[:10])
    more = " ..." if bad_values.shape[0] > 10 else ""
    ign = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
    return ValueError(f"labels hold values outside [0, {num_classes}){ign}: {shown}{more}")


@dataclass
class _Image:
    """One validated image on one backend; every pixel kept, in row-major order."""

    P: Any  # (C, N) float32, C-contiguous
    lab: Any  # (N,) int64 current labels
    sid: Any  # (N,) int64 dense superpixel index, S for "no superpixel"
    ids: np.ndarray  # (S,) int64 superpixel ids
    width: int


# ---------------------------------------------------------------------------------------------
# backends: the algorithm in _score is written once against these primitives


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


class _TorchOps:
    """torch primitives (CPU or CUDA): scatter/gather by superpixel index, no sorting."""

    is_torch = True

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        self.device = device

    def dev(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def host(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def copy(self, x: Any) -> Any:
        return x.clone()

    def full(self, n: int, value: float) -> Any:
        return self.torch.full((n,), value, dtype=self.torch.float32, device=self.device)

    def class_index_array(self, n: int, num_classes: int) -> Any:
        dtype = self.torch.uint8 if num_classes <= 256 else self.torch.int32
        return self.torch.zeros(n, dtype=dtype, device=self.device)

    def argmax_update(self, am: Any, greater: Any, c: int) -> None:
        am.masked_fill_(greater, c)

    def maximum_(self, a: Any, b: Any) -> None:
        self.torch.maximum(a, b, out=a)

    def minimum(self, a: Any, b: Any) -> Any:
        return self.torch.minimum(a, b)

    def clamp_min(self, a: Any, value: np.float32) -> Any:
        return a.clamp_min(float(value))

    def sqrt(self, a: Any) -> Any:
        # torch's vectorised float32 sqrt on CPU can be 1 ulp off the correctly rounded value
        # that numpy and numba give; in float64 and rounded back it is exact, so the cosines,
        # hence E(s) at a threshold, agree with the other backends
        return self.torch.sqrt(a.to(self.torch.float64)).to(a.dtype)

    def log(self, a: Any) -> Any:
        return self.torch.log(a)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.torch.where(cond, a, b)

    def take(self, table: Any, idx: Any) -> Any:
        return self.torch.index_select(table, 0, idx)  # much faster than table[idx] on CPU

    def to_int64(self, x: Any) -> Any:
        return x.to(self.torch.int64)

    def gather_rows(self, P: Any, rows: Any) -> Any:
        return P.gather(0, rows.unsqueeze(0)).squeeze(0)

    def float_key(self, cos: Any) -> Any:
        torch = self.torch
        bits = (cos + 0.0).view(torch.int32)
        key = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
        key = torch.bitwise_left_shift(key, 32)
        key += _LOW32 - torch.arange(cos.shape[0], dtype=torch.int64, device=cos.device)
        return key

    def count(self, idx: Any, n: int) -> np.ndarray:
        return self.host(self.torch.bincount(idx, minlength=n)[:n]).astype(np.int64)

    def layout(
        self, img: _Image, is_dom: Any, sizes: np.ndarray, n_dom: np.ndarray
    ) -> _TorchLayout:
        return _TorchLayout(self, img, is_dom)


class _TorchLayout:
    """Valid pixels in row-major order; per-superpixel values by index_add / scatter."""

    def __init__(self, ops: _TorchOps, img: _Image, is_dom: Any) -> None:
        torch = ops.torch
        self.torch = torch
        self.n_sp = int(img.ids.shape[0])
        valid = img.sid < self.n_sp
        self.idx = None if bool(valid.all()) else torch.nonzero(valid).squeeze(1)
        self.P = img.P if self.idx is None else torch.index_select(img.P, 1, self.idx)
        self.sid = self.to_layout(img.sid)
        self.sid_dom = torch.where(self.to_layout(is_dom), self.sid, self.n_sp)

    def to_layout(self, x: Any) -> Any:
        return x if self.idx is None else self.torch.index_select(x, 0, self.idx)

    def expand(self, row: Any) -> Any:
        return self.torch.index_select(row, 0, self.sid)

    def _sum(self, index: Any, x: Any, n: int) -> np.ndarray:
        torch = self.torch
        out = torch.zeros(n, dtype=torch.float64, device=x.device)
        out.index_add_(0, index, x.to(torch.float64))
        return out.cpu().numpy()

    def seg_sum(self, x: Any) -> np.ndarray:
        return self._sum(self.sid, x, self.n_sp)

    def seg_sum_dom(self, x: Any) -> np.ndarray:
        return self._sum(self.sid_dom, x, self.n_sp + 1)[: self.n_sp]

    def seg_max_dom(self, key: Any) -> np.ndarray:
        torch = self.torch
        best = torch.full((self.n_sp + 1,), int(_INT64_MIN), dtype=torch.int64, device=key.device)
        best.scatter_reduce_(0, self.sid_dom, key, reduce="amax", include_self=True)
        return best[: self.n_sp].cpu().numpy()

    def flat(self, pos: np.ndarray) -> np.ndarray:
        if self.idx is None:
            return pos
        return self.idx[self.torch.from_numpy(pos).to(self.idx.device)].cpu().numpy()


# ---------------------------------------------------------------------------------------------
# input preparation


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


def _dense_ids_numpy(sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids present (0 excluded) and each pixel's index into them (S for id 0)."""
    if sp.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    max_id = int(sp.max())
    if max_id <= max(_LUT_MAX_ID, 4 * sp.size):
        if sp.dtype.itemsize == 8 and sp.dtype.kind == "u":
            sp = sp.astype(np.int64)  # bincount refuses uint64
        present = np.bincount(sp, minlength=max_id + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.int64) - 1
        n_sp = int(lut[-1]) + 1
        lut[0] = n_sp
        return np.flatnonzero(present).astype(np.int64), np.take(lut, sp)
    ids, inverse = np.unique(sp, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    if ids[0] == 0:
        ids = ids[1:]
        inverse -= 1
        inverse[inverse < 0] = ids.shape[0]
    return ids.astype(np.int64), inverse


def _prepare_torch(
    probs: Any, superpixels: Any, labels: Any, ignore_index: int | None, device: Any
) -> _Image:
    import torch

    def to_tensor(x: Any) -> Any:
        if _is_tensor(x):
            return x.detach()
        arr = np.asarray(x)
        if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:
            arr = arr.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(arr))

    p = to_tensor(probs)
    s = to_tensor(superpixels)
    lab = to_tensor(labels)
    int_types = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
    int_types |= {getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)}
    _check_shapes(
        tuple(p.shape),
        p.is_floating_point(),
        tuple(s.shape),
        s.dtype in int_types,
        tuple(lab.shape),
        lab.dtype in int_types,
    )
    num_classes, height, width = p.shape
    n = height * width
    lab = lab.reshape(n).to(device=device, dtype=torch.int64)
    bad = (lab < 0) | (lab >= num_classes)
    if ignore_index is not None:
        bad &= lab != ignore_index
    if bool(bad.any()):
        raise _bad_label_error(np.unique(lab[bad].cpu().numpy()), num_classes, ignore_index)
    sp = s.reshape(n).to(device=device, dtype=torch.int64)
    if n and int(sp.min()) < 0:
        raise ValueError("superpixel ids must be non-negative (0 = no superpixel)")
    P = p.reshape(num_classes, n).to(device=device, dtype=torch.float32).contiguous()
    if n:
        _check_prob_values(float(P.min()), float(P.max()))
    if n == 0:
        return _Image(P=P, lab=lab, sid=sp, ids=np.zeros(0, np.int64), width=width)
    max_id = int(sp.max())
    if max_id <= max(_LUT_MAX_ID, 4 * n):
        present = torch.bincount(sp, minlength=max_id + 1) > 0
        present[0] = False
        lut = torch.cumsum(present.to(torch.int64), 0) - 1
        n_sp = int(lut[-1]) + 1
        lut[0] = n_sp
        ids = torch.nonzero(present).squeeze(1).cpu().numpy().astype(np.int64)
        sid = torch.index_select(lut, 0, sp)
    else:
        uniq, sid = torch.unique(sp, return_inverse=True)
        ids = uniq.cpu().numpy().astype(np.int64)
        if ids[0] == 0:
            ids = ids[1:]
            sid = torch.where(sid == 0, ids.shape[0] + 1, sid) - 1
    return _Image(P=P, lab=lab, sid=sid, ids=ids, width=width)


# ---------------------------------------------------------------------------------------------
# the vectorised algorithm


def _empty_scores() -> SuperpixelScores:
    z = np.zeros(0, dtype=np.int64)
    return SuperpixelScores(
        ids=z,
        scores=np.zeros(0, np.float64),
        rep_yx=np.zeros((0, 2), np.int64),
        dominant=z.copy(),
        sizes=z.copy(),
        expanded_sizes=z.copy(),
    )


def _seq_norm_host(vectors: np.ndarray) -> np.ndarray:
    """sqrt(sum_c v[c]^2) over axis 0 in float32, accumulated in class order."""
    acc = vectors[0] * vectors[0]
    for c in range(1, vectors.shape[0]):
        acc = acc + vectors[c] * vectors[c]
    return np.sqrt(acc)


def _score(
    ops: Any,
    img: _Image,
    method: str,
    tau: float,
    ignore_index: int | None,
    seed: int | None,
    class_prior: Any,
    class_weights: Any,
    score_range: Any,
    selected: list[int] | None,
) -> SuperpixelScores:
    P = img.P
    num_classes, n_pix = P.shape
    n_sp = int(img.ids.shape[0])
    if n_sp == 0:
        return _empty_scores()
    if n_pix >= _LOW32:
        raise ValueError("images of 2**32 pixels or more are not supported")
    tau32 = np.float32(tau)
    need_second = method in ("margin", "classbal")
    need_w = method == "sim" or tau32 > 0

    # 1. argmax (first maximum) and top-two values of every pixel, one pass over the classes
    m1 = ops.copy(P[0])
    am = ops.class_index_array(n_pix, num_classes)
    m2 = ops.full(n_pix, -np.inf) if need_second else None
    for c in range(1, num_classes):
        pc = P[c]
        ops.argmax_update(am, pc > m1, c)
        if m2 is not None:
            ops.maximum_(m2, ops.minimum(m1, pc))
        ops.maximum_(m1, pc)
    am = ops.to_int64(am)

    # 2. dominant predicted class of every superpixel (ties: smallest class index)
    counts = ops.count(img.sid * num_classes + am, (n_sp + 1) * num_classes)
    counts = counts[: n_sp * num_classes].reshape(n_sp, num_classes)
    sizes = counts.sum(axis=1)
    dominant = counts.argmax(axis=1).astype(np.int64)
    n_dom = counts[np.arange(n_sp), dominant]
    is_dom = am == ops.take(ops.dev(np.append(dominant, -1)), img.sid)

    # 3. pixels grouped by superpixel; mean vector of the dominant-class pixels (float64
    #    sums, rounded to float32 so that both backends use the very same vector)
    lay = ops.layout(img, is_dom, sizes, n_dom)
    PL = lay.P
    mu = np.empty((num_classes, n_sp), dtype=np.float32)
    for c in range(num_classes):
        mu[c] = (lay.seg_sum_dom(PL[c]) / n_dom).astype(np.float32)
    mu_norm = _seq_norm_host(mu)
    mu = ops.dev(mu)

    # 4. cosine of every pixel to its superpixel's mean vector (float32, class order)
    sq = PL[0] * PL[0]
    dot = PL[0] * lay.expand(mu[0])
    for c in range(1, num_classes):
        pc = PL[c]
        sq += pc * pc
        dot += pc * lay.expand(mu[c])
    pnorm = ops.sqrt(sq)
    cos_mu = dot / ops.clamp_min(pnorm * lay.expand(ops.dev(mu_norm)), _TINY)

    # 5. representative: highest cosine among dominant pixels, then first in row-major order
    best = lay.seg_max_dom(ops.float_key(cos_mu))
    rep_pos = (_LOW32 - (best & _LOW32)).astype(np.int64)
    rep_flat = np.asarray(lay.flat(rep_pos), dtype=np.int64)
    rep_yx = np.stack([rep_flat // img.width, rep_flat % img.width], axis=1)
    rep_pos_dev = ops.dev(rep_pos)

    # 6. similarity to the representative, expansion region E(s)
    w = None
    in_e = None
    expanded_sizes = sizes.copy()
    if need_w:
        reps = PL[:, rep_pos_dev]  # (C, S) representative vectors
        rdot = PL[0] * lay.expand(reps[0])
        for c in range(1, num_classes):
            rdot += PL[c] * lay.expand(reps[c])
        w = rdot / ops.clamp_min(pnorm * lay.expand(pnorm[rep_pos_dev]), _TINY)
        w[rep_pos_dev] = 1.0  # the representative always belongs to its own E(s)
        if tau32 > 0:
            in_e = w >= tau32
            expanded_sizes = np.rint(lay.seg_sum(in_e)).astype(np.int64)

    # 7. CIL: a(x) = 1 - P(y'(x)|x), y' the current label or the argmax where it is ignore
    lab = y_cur = None
    if method in ("sim", "cil_pixel", "cil_mean", "abc"):
        lab = lay.to_layout(img.lab)
        y_cur = lab
        if ignore_index is not None:
            y_cur = ops.where(lab == ignore_index, lay.to_layout(am), lab)

    # 8. scores
    if method == "sim":
        contrib = w * (1.0 - ops.gather_rows(PL, y_cur))
        if in_e is not None:
            contrib = contrib * in_e
        scores = lay.seg_sum(contrib)
    elif method == "cil_pixel":
        y_rep = y_cur[rep_pos_dev]
        scores = 1.0 - ops.host(PL[y_rep, rep_pos_dev]).astype(np.float64)
    elif method == "cil_mean":
        a = 1.0 - ops.gather_rows(PL, y_cur)
        if in_e is not None:
            scores = lay.seg_sum(a * in_e) / expanded_sizes
        else:
            scores = lay.seg_sum(a) / sizes
    elif method == "entropy":
        ent = None
        for c in range(num_classes):
            pc = PL[c]
            term = pc * ops.log(ops.clamp_min(pc, _LOG_EPS))
            ent = -term if ent is None else ent - term
        scores = lay.seg_sum(ent) / sizes
    elif method in ("margin", "classbal"):
        if num_classes == 1:
            unc = np.zeros(n_sp, dtype=np.float64)
        else:
            unc = lay.seg_sum(lay.to_layout(1.0 - (m1 - m2))) / sizes
        if method == "margin":
            scores = unc
        else:
            scores = _classbal(unc, dominant, num_classes, class_prior, score_range)
    elif method == "abc":
        a = 1.0 - ops.gather_rows(PL, y_cur)
        if class_weights is None:
            # labels were validated: anything outside [0, C) is the ignore value
            keep = (lab >= 0) & (lab < num_classes)
            if ignore_index is not None and 0 <= ignore_index < num_classes:
                keep = keep & (lab != ignore_index)
            if selected:
                unsel = ~np.isin(img.ids, np.asarray(selected, dtype=np.int64))
                keep = keep & lay.expand(ops.dev(unsel))
            weights = abc_class_weights(ops.count(lab[keep], num_classes))
        else:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"class_weights must have shape ({num_classes},), got {weights.shape}"
                )
        w_pix = ops.take(ops.dev(weights.astype(np.float32)), y_cur)
        scores = lay.seg_sum(cos_mu * w_pix * a)
    elif method == "random":
        scores = np.random.default_rng(seed).random(n_sp)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(method)

    scores = np.asarray(scores, dtype=np.float64)
    if selected:
        scores = np.where(np.isin(img.ids, np.asarray(selected, dtype=np.int64)), 0.0, scores)
    return SuperpixelScores(
        ids=img.ids.copy(),
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes.astype(np.int64),
        expanded_sizes=np.asarray(expanded_sizes, dtype=np.int64),
    )


def _classbal(
    unc: np.ndarray, dominant: np.ndarray, num_classes: int, class_prior: Any, score_range: Any
) -> np.ndarray:
    if score_range is not None:
        lo, hi = (float(v) for v in score_range)
    else:
        lo, hi = float(unc.min()), float(unc.max())
    if hi > lo:
        unc_norm = np.clip((unc - lo) / (hi - lo), 0.0, 1.0)
    else:  # degenerate range: every region equally uncertain
        unc_norm = np.ones_like(unc)
    if class_prior is None:
        prior = class_prior_from_dominant(np.bincount(dominant, minlength=num_classes))
    else:
        prior = np.asarray(class_prior, dtype=np.float64)
        if prior.shape != (num_classes,):
            raise ValueError(f"class_prior must have shape ({num_classes},), got {prior.shape}")
    return unc_norm * np.exp(-prior[dominant])


# ---------------------------------------------------------------------------------------------
# numba backend: the same algorithm in four streaming passes over the pixels
#
# The kernels below are plain Python functions compiled on first use by _numba_kernels() (numba
# is imported lazily: importing this module stays cheap, and a missing numba only disables the
# backend). They never call one another, so each compiles on its own. Every pass reads the
# probability rows sequentially (tiles of pixels, or runs of pixels of one superpixel within
# an image row), which the hardware prefetches well even when the maps are not in cache (a
# superpixel-at-a-time order was measured slower on cold maps). Per-pixel arithmetic is float32
# in class order, exactly as the numpy path computes it, so the same representative and
# expansion region are chosen (ties included); per-superpixel sums are float64.

_NB_RUN = 1024  # longest run of pixels processed at once (size of the kernels' scratch rows)


def _k_dense_ids(sp, max_id, max_run):  # pragma: no cover - compiled by numba
    """Ids present in ``sp`` (0 excluded), ascending; each pixel's index into them (int32; the
    number of ids for id 0); and the runs of pixels of one superpixel, (start, end) pairs in
    row-major order, at most ``max_run`` long. ``max_id`` is ``sp.max()``."""
    n = sp.shape[0]
    present = np.zeros(max_id + 1, np.bool_)
    for i in range(n):
        present[sp[i]] = True
    present[0] = False
    lut = np.zeros(max_id + 1, np.int32)
    n_sp = 0
    for v in range(max_id + 1):
        if present[v]:
            lut[v] = n_sp
            n_sp += 1
    lut[0] = n_sp
    ids = np.empty(n_sp, np.int64)
    for v in range(max_id + 1):
        if present[v]:
            ids[lut[v]] = v
    sid = np.empty(n, np.int32)
    runs = np.empty((n, 2), np.int64)
    n_runs = 0
    start = 0
    prev = -1
    for i in range(n):
        s = lut[sp[i]]
        sid[i] = s
        if s != prev or i - start == max_run:
            if prev >= 0 and prev < n_sp:
                runs[n_runs, 0] = start
                runs[n_runs, 1] = i
                n_runs += 1
            start = i
            prev = s
    if n > 0 and prev < n_sp:
        runs[n_runs, 0] = start
        runs[n_runs, 1] = n
        n_runs += 1
    return ids, sid, runs[:n_runs].copy()


def _k_pass_argmax(
    P,
    sid,
    n_sp,
    lab,
    ignore,
    has_ignore,
    margin,
    need_a,
    lab_hist,
    am,
    pnorm,
    val,
    counts,
    lab_counts,
):  # pragma: no cover - compiled by numba
    """Pass 1, in tiles of pixels: label check, argmax (first maximum), norm, class histogram
    of every superpixel (``counts`` is (4, S + 1, C): four interleaved copies, so that equal
    neighbours do not wait on one counter, and a row S for pixels of no superpixel). Per
    pixel ``val`` gets a(x) = 1 - P(y'(x)|x) with ``need_a``, or the margin uncertainty
    1 - (P1 - P2) with ``margin``; with ``lab_hist`` the histogram of the valid labels of
    every superpixel. Returns the number of label values outside [0, C) other than the
    ignore value (0: the labels are valid; otherwise the outputs are meaningless)."""
    num_classes, n = P.shape
    tile = _NB_RUN
    m1 = np.empty(tile, np.float32)
    m2 = np.empty(tile, np.float32)
    sq = np.empty(tile, np.float32)
    py = np.empty(tile, np.float32)
    amt = np.empty(tile, np.int32)
    yt = np.empty(tile, np.int32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    bad = 0
    for j0 in range(0, n, tile):
        t = min(tile, n - j0)
        lab_t = lab[j0 : j0 + t]
        # the current label; -1 where it is the ignore value (y' is the argmax) or invalid
        for k in range(t):
            y = np.int64(lab_t[k])
            valid = y >= 0 and y < num_classes
            is_ign = has_ignore and y == ignore
            if not valid and not is_ign:
                bad += 1
            yt[k] = y if valid and not is_ign else -1
        row = P[0, j0 : j0 + t]
        for k in range(t):
            v = row[k]
            m1[k] = v
            sq[k] = v * v
            amt[k] = 0
            py[k] = v if yt[k] == 0 else zero
        if margin:
            for k in range(t):
                m2[k] = -np.inf
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m2[k] = max(m2[k], min(cur, v))
                    m1[k] = max(cur, v)
                    sq[k] += v * v
        elif need_a:
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m1[k] = max(cur, v)
                    sq[k] += v * v
                    py[k] = v if yt[k] == c else py[k]
        else:
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m1[k] = max(cur, v)
                    sq[k] += v * v
        am_t = am[j0 : j0 + t]
        pn_t = pnorm[j0 : j0 + t]
        for k in range(t):
            am_t[k] = amt[k]
            pn_t[k] = np.sqrt(sq[k])
        if need_a:
            # P(y'|x): the label's probability, or the maximum where the label is ignore
            val_t = val[j0 : j0 + t]
            for k in range(t):
                val_t[k] = one - (m1[k] if yt[k] < 0 else py[k])
        elif margin:
            val_t = val[j0 : j0 + t]
            for k in range(t):
                val_t[k] = one - (m1[k] - m2[k])
        sid_t = sid[j0 : j0 + t]
        for k in range(t):
            counts[k & 3, sid_t[k], amt[k]] += 1
        if lab_hist:
            for k in range(t):
                y = yt[k]
                s = sid_t[k]
                if y >= 0 and s < n_sp:
                    lab_counts[s, y] += 1
    return bad


def _k_pass_mean(
    P, runs, sid, am, dominant, mu_sum, val, val_sum
):  # pragma: no cover - compiled by numba
    """Pass 2, in runs: float64 sums of the probability vectors of the dominant-class pixels,
    and (when ``val_sum`` is not empty) of the per-pixel values ``val`` of every superpixel."""
    num_classes = P.shape[0]
    sum_val = val_sum.shape[0] > 0
    is_dom = np.empty(_NB_RUN, np.bool_)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        if sum_val:
            v = val[i:j]
            acc = 0.0
            for k in range(t):
                acc += np.float64(v[k])
            val_sum[s] += acc
        d = dominant[s]
        am_r = am[i:j]
        for k in range(t):
            is_dom[k] = am_r[k] == d
        for c in range(num_classes):
            row = P[c, i:j]
            acc = 0.0
            for k in range(t):
                acc += np.float64(row[k]) if is_dom[k] else 0.0
            mu_sum[s, c] += acc


def _k_pass_rep(
    P,
    runs,
    sid,
    am,
    dominant,
    pnorm,
    mu,
    mu_norm,
    tiny,
    rep,
    abc,
    w_class,
    lab,
    ignore,
    has_ignore,
    a,
    abc_scores,
):  # pragma: no cover - compiled by numba
    """Pass 3, in runs: cosine of every pixel to its superpixel's mean vector; the
    representative is the dominant-class pixel of highest cosine, the first in row-major
    order on ties. With ``abc``, also the ABC sums of cos * W(y') * a."""
    num_classes = P.shape[0]
    n_sp = mu.shape[0]
    dot = np.empty(_NB_RUN, np.float32)
    best = np.full(n_sp, -np.inf, np.float32)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        m = mu[s, 0]
        row = P[0, i:j]
        for k in range(t):
            dot[k] = row[k] * m
        for c in range(1, num_classes):
            m = mu[s, c]
            row = P[c, i:j]
            for k in range(t):
                dot[k] += row[k] * m
        mn = mu_norm[s]
        pn = pnorm[i:j]
        for k in range(t):
            dot[k] = dot[k] / max(pn[k] * mn, tiny)
        d = dominant[s]
        am_r = am[i:j]
        b = best[s]
        r = rep[s]
        for k in range(t):
            if am_r[k] == d and dot[k] > b:
                b = dot[k]
                r = i + k
        best[s] = b
        rep[s] = r
        if abc:
            lab_r = lab[i:j]
            a_r = a[i:j]
            acc = 0.0
            for k in range(t):
                y = np.int64(lab_r[k])
                if has_ignore and y == ignore:
                    y = np.int64(am_r[k])
                acc += (dot[k] * w_class[y]) * a_r[k]
            abc_scores[s] += acc


def _k_pass_sim(
    P, runs, sid, pnorm, rep, a, tau, use_tau, tiny, mode, sums, expanded
):  # pragma: no cover - compiled by numba
    """Pass 4, in runs: w = cosine to the representative (1 at the representative itself),
    E(s) = {w >= tau} when ``use_tau``; |E(s)|, and the sum over E(s) of w * a (mode 1, SIM)
    or of a (mode 2, mean-CIL); mode 0 only counts."""
    num_classes = P.shape[0]
    dot = np.empty(_NB_RUN, np.float32)
    rv = np.empty(num_classes, np.float32)
    one = np.float32(1.0)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        r = rep[s]
        for c in range(num_classes):
            rv[c] = P[c, r]
        m = rv[0]
        row = P[0, i:j]
        for k in range(t):
            dot[k] = row[k] * m
        for c in range(1, num_classes):
            m = rv[c]
            row = P[c, i:j]
            for k in range(t):
                dot[k] += row[k] * m
        pr = pnorm[r]
        pn = pnorm[i:j]
        for k in range(t):
            dot[k] = dot[k] / max(pn[k] * pr, tiny)
        if i <= r < j:
            dot[r - i] = one
        a_r = a[i:j]
        if not use_tau:
            expanded[s] += t
            if mode == 1:
                # four independent float64 accumulators (a sum of float32 products)
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                k = 0
                while k + 4 <= t:
                    a0 += dot[k] * a_r[k]
                    a1 += dot[k + 1] * a_r[k + 1]
                    a2 += dot[k + 2] * a_r[k + 2]
                    a3 += dot[k + 3] * a_r[k + 3]
                    k += 4
                while k < t:
                    a0 += dot[k] * a_r[k]
                    k += 1
                sums[s] += (a0 + a1) + (a2 + a3)
            continue
        acc = 0.0
        cnt = 0
        for k in range(t):
            if dot[k] >= tau:
                cnt += 1
                if mode == 1:
                    acc += dot[k] * a_r[k]
                elif mode == 2:
                    acc += a_r[k]
        sums[s] += acc
        expanded[s] += cnt


_NB_KERNELS = {
    "dense_ids": (_k_dense_ids, {}),
    "pass_argmax": (_k_pass_argmax, {}),
    # float64 sums of masked rows: reassociation lets them vectorise (the float32 mean is
    # rounded from them; the numpy and torch backends sum in other orders too)
    "pass_mean": (_k_pass_mean, {"fastmath": {"reassoc"}}),
    "pass_rep": (_k_pass_rep, {}),
    "pass_sim": (_k_pass_sim, {}),
}
_nb_state: dict[str, Any] = {}
_nb_lock = threading.Lock()


def _numba_kernels() -> Any:
    """The compiled kernels (a namespace), or None when numba cannot be imported.

    Kernels are compiled lazily, once per process and argument types, and cached on disk
    (``cache=True``: next to this module, or numba's user-wide cache directory when the
    package directory is read-only, or ``NUMBA_CACHE_DIR``); when no cache location is
    writable they are compiled without a cache.
    """
    if "ns" in _nb_state:
        return _nb_state["ns"]
    with _nb_lock:
        if "ns" not in _nb_state:
            _nb_state["ns"] = _build_numba_kernels()
    return _nb_state["ns"]


def _build_numba_kernels() -> Any:
    try:
        import numba
    except (ImportError, OSError):  # absent, refuses this numpy, or llvmlite cannot load
        return None
    ns = SimpleNamespace()
    for name, (func, options) in _NB_KERNELS.items():
        try:
            kernel = numba.njit(cache=True, nogil=True, **options)(func)
        except RuntimeError:  # no writable cache location: compile in memory only
            kernel = numba.njit(cache=False, nogil=True, **options)(func)
        setattr(ns, name, kernel)
    return ns


def numba_available() -> bool:
    """True when the numba backend can be used (numba importable)."""
    return _numba_kernels() is not None


# map dtypes the kernels take as they are (one compilation each); others are cast to int64
_NB_LABEL_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.int32, np.int64))
_NB_ID_TYPES = tuple(np.dtype(t) for t in (np.uint16, np.int32, np.int64))


def _score_numba(
    probs: Any,
    superpixels: Any,
    labels: Any,
    method: str,
    tau: float,
    ignore_index: int | None,
    seed: int | None,
    class_prior: Any,
    class_weights: Any,
    score_range: Any,
    selected: list[int] | None,
) -> SuperpixelScores:
    nb = _numba_kernels()
    probs, superpixels, labels = (_to_numpy(x) for x in (probs, superpixels, labels))
    _check_shapes(
        probs.shape,
        np.issubdtype(probs.dtype, np.floating),
        superpixels.shape,
        np.issubdtype(superpixels.dtype, np.integer),
        labels.shape,
        np.issubdtype(labels.dtype, np.integer),
    )
    num_classes, height, width = probs.shape
    n_pix = height * width
    # no copy when probs is already float32 and C-contiguous
    P = np.ascontiguousarray(probs.reshape(num_classes, n_pix), dtype=np.float32)
    if n_pix:
        _check_prob_values(float(P.min()), float(P.max()))
    lab = labels.reshape(n_pix)
    if lab.dtype not in _NB_LABEL_TYPES:
        lab = lab.astype(np.int64)
    sp = superpixels.reshape(n_pix)
    if sp.dtype.kind == "i" and n_pix and sp.min() < 0:
        raise ValueError("superpixel ids must be non-negative (0 = no superpixel)")
    max_id = int(sp.max()) if n_pix else 0
    if max_id <= max(_LUT_MAX_ID, 4 * n_pix):
        if sp.dtype not in _NB_ID_TYPES:
            sp = sp.astype(np.int64)
        ids, sid, runs = nb.dense_ids(sp, max_id, _NB_RUN)
    else:
        ids, sid64 = _dense_ids_numpy(sp)
        sid = sid64.astype(np.int32)
        runs = _runs_numpy(sid, ids.shape[0])
    n_sp = int(ids.shape[0])
    if n_pix >= _LOW32:
        raise ValueError("images of 2**32 pixels or more are not supported")
    has_ignore = ignore_index is not None
    ignore = int(ignore_index) if has_ignore else 0
    tau32 = np.float32(tau)
    use_tau = bool(tau32 > 0)
    margin = method in ("margin", "classbal") and num_classes > 1
    need_a = method in ("sim", "cil_mean", "abc")
    lab_hist = method == "abc" and class_weights is None

    # pass 1: label check, argmax, pixel norms, a(x) or the margin, class histograms
    am = np.empty(n_pix, dtype=np.int16 if num_classes <= 32767 else np.int32)
    pnorm = np.empty(n_pix, dtype=np.float32)
    counts4 = np.zeros((4, n_sp + 1, num_classes), dtype=np.int32)  # < 2**32 pixels
    val = np.empty(n_pix if need_a or margin else 0, dtype=np.float32)
    lab_counts = np.zeros((n_sp, num_classes) if lab_hist else (0, 0), dtype=np.int64)
    bad = nb.pass_argmax(
        P,
        sid,
        n_sp,
        lab,
        ignore,
        has_ignore,
        margin,
        need_a,
        lab_hist,
        am,
        pnorm,
        val,
        counts4,
        lab_counts,
    )
    if bad:
        lab64 = lab.astype(np.int64)
        is_bad = (lab64 < 0) | (lab64 >= num_classes)
        if has_ignore:
            is_bad &= lab64 != ignore_index
        raise _bad_label_error(np.unique(lab64[is_bad]), num_classes, ignore_index)
    if n_sp == 0:
        return _empty_scores()
    counts = counts4[:, :n_sp].sum(axis=0, dtype=np.int64)
    sizes = counts.sum(axis=1)
    dominant = counts.argmax(axis=1).astype(np.int64)  # ties: smallest class index
    n_dom = counts[np.arange(n_sp), dominant]

    # pass 2: mean vector of the dominant-class pixels (float64 sums rounded to float32), and
    # the sums of a(x) (mean-CIL) or of the margin uncertainty (margin, ClassBal)
    mu_sum = np.zeros((n_sp, num_classes), dtype=np.float64)
    sum_val = margin or (method == "cil_mean" and not use_tau)
    val_sum = np.zeros(n_sp if sum_val else 0, dtype=np.float64)
    nb.pass_mean(P, runs, sid, am, dominant, mu_sum, val, val_sum)
    mu = (mu_sum / n_dom[:, None]).astype(np.float32)
    mu_norm = _seq_norm_host(mu.T)

    # pass 3: representative (and the ABC sums, which weigh by the cosine to the mean)
    abc = method == "abc"
    if abc:
        if class_weights is None:
            keep = np.ones(n_sp, dtype=bool)
            if selected:
                keep = ~np.isin(ids, np.asarray(selected, dtype=np.int64))
            weights = abc_class_weights(lab_counts[keep].sum(axis=0))
        else:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"class_weights must have shape ({num_classes},), got {weights.shape}"
                )
        w_class = weights.astype(np.float32)
    else:
        w_class = np.zeros(0, dtype=np.float32)
    abc_scores = np.zeros(n_sp, dtype=np.float64)
    rep = np.zeros(n_sp, dtype=np.int64)
    nb.pass_rep(
        P,
        runs,
        sid,
        am,
        dominant,
        pnorm,
        mu,
        mu_norm,
        _TINY,
        rep,
        abc,
        w_class,
        lab,
        ignore,
        has_ignore,
        val,
        abc_scores,
    )
    rep_yx = np.stack([rep // width, rep % width], axis=1)

    # pass 4: similarity to the representative, E(s), and the SIM / mean-CIL sums
    expanded_sizes = sizes
    sums = np.zeros(n_sp, dtype=np.float64)
    if method == "sim" or use_tau:
        mode = 1 if method == "sim" else 2 if method == "cil_mean" else 0
        expanded_sizes = np.zeros(n_sp, dtype=np.int64)
        nb.pass_sim(
            P, runs, sid, pnorm, rep, val, tau32, use_tau, _TINY, mode, sums, expanded_sizes
        )

    if method == "sim":
        scores = sums
    elif method == "cil_pixel":
        y_rep = lab[rep].astype(np.int64)
        if has_ignore:
            y_rep = np.where(y_rep == ignore_index, am[rep], y_rep)
        scores = 1.0 - P[y_rep, rep].astype(np.float64)
    elif method == "cil_mean":
        if use_tau:
            scores = sums / expanded_sizes
        else:
            scores = val_sum / sizes
    elif method == "entropy":
        scores = np.bincount(sid, weights=_entropy_per_pixel(P), minlength=n_sp + 1)[:n_sp]
        scores = scores / sizes
    elif method in ("margin", "classbal"):
        unc = val_sum / sizes if margin else np.zeros(n_sp, dtype=np.float64)
        if method == "margin":
            scores = unc
        else:
            scores = _classbal(unc, dominant, num_classes, class_prior, score_range)
    elif method == "abc":
        scores = abc_scores
    elif method == "random":
        scores = np.random.default_rng(seed).random(n_sp)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(method)

    scores = np.asarray(scores, dtype=np.float64)
    if selected:
        scores = np.where(np.isin(ids, np.asarray(selected, dtype=np.int64)), 0.0, scores)
    return SuperpixelScores(
        ids=ids,
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes.astype(np.int64),
        expanded_sizes=np.asarray(expanded_sizes, dtype=np.int64),
    )


def _runs_numpy(sid: np.ndarray, n_sp: int) -> np.ndarray:
    """(start, end) pairs of the runs of equal ``sid`` below ``n_sp``, at most _NB_RUN long."""
    n = sid.shape[0]
    starts = np.flatnonzero(np.diff(sid) != 0) + 1
    bounds = np.concatenate([[0], starts, [n]]).astype(np.int64)
    lengths = np.diff(bounds)
    pieces = -(-lengths // _NB_RUN)
    first = np.repeat(bounds[:-1], pieces)
    offset = np.arange(first.shape[0]) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    start = first + offset * _NB_RUN
    end = np.minimum(start + _NB_RUN, np.repeat(bounds[1:], pieces))
    runs = np.stack([start, end], axis=1)
    return np.ascontiguousarray(runs[sid[start] < n_sp])


def _entropy_per_pixel(P: np.ndarray, block: int = 8192) -> np.ndarray:
    """-sum_c P log max(P, 1e-12) per column of P (C, N), float32 in class order, computed in
    blocks of columns that stay in cache (numpy's vectorised log)."""
    num_classes, n = P.shape
    out = np.empty(n, dtype=np.float32)
    for j0 in range(0, n, block):
        pb = P[:, j0 : j0 + block]
        terms = pb * np.log(np.maximum(pb, _LOG_EPS))
        ent = -terms[0]
        for c in range(1, num_classes):
            ent -= terms[c]
        out[j0 : j0 + block] = ent
    return out


def score_superpixels(
    probs: Any,
    superpixels: Any,
    labels: Any,
    method: str = "sim",
    tau: float = 0.0,
    ignore_index: int | None = 255,
    device: Any = "cpu",
    *,
    seed: int | None = None,
    class_prior: Any = None,
    class_weights: Any = None,
    score_range: tuple[float, float] | None = None,
    selected: Iterable[int] | None = None,
) -> SuperpixelScores:
    """Score every superpixel of one image for a correction query (higher = ask first).

    Args:
        probs: (C, H, W) class probabilities P(c|x) of the current model (numpy or torch).
        superpixels: (H, W) integer superpixel ids (uint16 recommended); 0 = no superpixel,
            such pixels are ignored entirely. Ids need not be contiguous.
        labels: (H, W) integer current labels; ``ignore_index`` marks unlabelled pixels.
        method: one of :data:`METHODS`. ``"sim"`` is the look-ahead of Kim et al. (ICML 2024);
            see the module docstring for the others.
        tau: expansion threshold; E(s) = {x in s : cos(P(.|x), P(.|rep(s))) >= tau}.
            ``tau <= 0`` makes E(s) = s.
        ignore_index: label value meaning "ignore" (None: no ignore value). Where the label is
            ignore, the CIL terms use the model's argmax instead (trap 3 of the method).
        device: ``"cpu"`` (default) runs numba on numpy inputs when numba is importable,
            numpy otherwise (torch on the tensors' device for torch inputs); ``"numba"``
            always numba (tensors are copied to the host); ``"numpy"`` always numpy;
            ``"torch"`` / ``"torch:cpu"`` torch on CPU; ``"cuda"``, ``"cuda:N"`` or a
            ``torch.device`` torch there; ``"auto"`` CUDA when available, else as ``"cpu"``.
            All give the same ids, representatives, dominant classes and sizes, and scores
            equal up to float64 summation order.
        seed: seed of ``np.random.default_rng`` for ``"random"``.
        class_prior: (C,) ClassBal prior p_c, the dataset share of regions whose dominant
            predicted class is c (:func:`class_prior_from_dominant`); default: this image's.
        class_weights: (C,) ABC weights W_c (:func:`abc_class_weights` on dataset counts);
            default: computed from this image's labels in superpixels not in ``selected``.
        score_range: (lo, hi) for the ClassBal min-max normalisation of the margin
            uncertainty (dataset level); default: this image's min and max.
        selected: ids of superpixels already selected or answered; their score is set to 0
            (for every method; ClassBal and A2LC exclude answered regions).

    Returns:
        :class:`SuperpixelScores`, numpy arrays on the host whatever the device.

    Raises:
        ValueError: on inconsistent shapes, non-float probabilities, NaN, infinite or negative
            probabilities, non-integer maps, label
            values outside ``[0, C)`` other than ``ignore_index`` (named in the message), an
            unknown method or an unusable device (``"numba"`` without numba, CUDA without a
            GPU).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    tau = float(tau)
    if not np.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau}")
    if score_range is not None and len(tuple(score_range)) != 2:
        raise ValueError("score_range must be a (lo, hi) pair")
    if selected is not None:
        selected = [int(v) for v in selected]
    backend = _resolve_backend(device, (probs, superpixels, labels))
    if isinstance(backend, str) and backend == "numba":
        return _score_numba(
            probs,
            superpixels,
            labels,
            method,
            tau,
            ignore_index,
            seed,
            class_prior,
            class_weights,
            score_range,
            selected,
        )
    if isinstance(backend, str):  # "numpy"
        if any(_is_tensor(x) for x in (probs, superpixels, labels)):
            probs, superpixels, labels = (
                x.detach().cpu().numpy() if _is_tensor(x) else x
                for x in (probs, superpixels, labels)
            )
        image = _prepare_numpy(probs, superpixels, labels, ignore_index)
        ops: Any = _NumpyOps()
    else:
        image = _prepare_torch(probs, superpixels, labels, ignore_index, backend)
        ops = _TorchOps(backend)
    return _score(
        ops,
        image,
        method,
        tau,
        ignore_index,
        seed,
        class_prior,
        class_weights,
        score_range,
        selected,
    )


# ---------------------------------------------------------------------------------------------
# single-superpixel helpers and the plain reference loop


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _cos_to_vector(P: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float32 cosine of the columns of P (C, n) to v (C,), same arithmetic as the fast path."""
    sq = P[0] * P[0]
    dot = P[0] * v[0]
    for c in range(1, P.shape[0]):
        sq = sq + P[c] * P[c]
        dot = dot + P[c] * v[c]
    vnorm = _seq_norm_host(v.reshape(-1, 1))
    return dot / np.maximum(np.sqrt(sq) * vnorm, _TINY)


def expansion_mask(
    probs: Any, superpixels: Any, sp_id: int, rep_yx: Any, tau: float
) -> np.ndarray:
    """E(s) of superpixel ``sp_id`` as an (H, W) bool mask (Kim et al., ICML 2024).

    ``E(s) = {x in s : cos(P(.|x), P(.|rep(s))) >= tau}``; ``tau <= 0`` gives all of s. The
    cosine is computed in float32 exactly as :func:`score_superpixels` does, so the mask agrees
    with its ``expanded_sizes``. ``rep_yx`` must lie inside s; it always belongs to E(s).
    """
    sp = _to_numpy(superpixels)
    if sp.ndim != 2 or not np.issubdtype(sp.dtype, np.integer):
        raise ValueError(
            f"superpixels must be an (H, W) integer id map, got shape {sp.shape} {sp.dtype}"
        )
    mask = sp == sp_id
    if float(tau) <= 0:
        return mask
    P = _to_numpy(probs)
    if P.ndim != 3 or P.shape[1:] != sp.shape:
        raise ValueError(f"probs must be (C, {sp.shape[0]}, {sp.shape[1]}), got {P.shape}")
    ry, rx = (int(v) for v in np.asarray(rep_yx).reshape(2))
    if not (0 <= ry < sp.shape[0] and 0 <= rx < sp.shape[1]) or not mask[ry, rx]:
        raise ValueError(f"rep_yx {(ry, rx)} is not a pixel of superpixel {sp_id}")
    ys, xs = np.nonzero(mask)
    Ps = P[:, ys, xs].astype(np.float32)
    rep_vec = P[:, ry, rx].astype(np.float32)
    # rep norm computed like the fast path: from the pixel's own squared sum
    w = _cos_to_vector(Ps, rep_vec)
    w[(ys == ry) & (xs == rx)] = 1.0
    out = np.zeros_like(mask)
    out[ys, xs] = w >= np.float32(tau)
    return out


def score_loop(
    probs: Any,
    superpixels: Any,
    labels: Any,
    method: str = "sim",
    tau: float = 0.0,
    ignore_index: int | None = 255,
) -> SuperpixelScores:
    """Plain per-superpixel Python loop with the semantics of :func:`score_superpixels`.

    A readable reference, one superpixel at a time, used to cross-check the vectorised
    implementation and as the baseline of ``benchmarks/acquisition_speed.py``. Cosines are
    computed in float32 in class order like the fast path (the representative is decided on
    float32 values, where saturated softmax vectors tie), sums in float64. Supports ``"sim"``,
    ``"cil_pixel"`` and ``"cil_mean"``.
    """
    if method not in ("sim", "cil_pixel", "cil_mean"):
        raise ValueError(f"score_loop supports sim, cil_pixel and cil_mean, not {method!r}")
    P = _to_numpy(probs)
    sp = _to_numpy(superpixels)
    lab = _to_numpy(labels)
    _check_shapes(
        P.shape,
        np.issubdtype(P.dtype, np.floating),
        sp.shape,
        np.issubdtype(sp.dtype, np.integer),
        lab.shape,
        np.issubdtype(lab.dtype, np.integer),
    )
    P = P.astype(np.float32, copy=False)
    num_classes = P.shape[0]
    ids = np.unique(sp)
    ids = ids[ids != 0].astype(np.int64)
    n = len(ids)
    scores = np.zeros(n)
    rep_yx = np.zeros((n, 2), np.int64)
    dominant = np.zeros(n, np.int64)
    sizes = np.zeros(n, np.int64)
    expanded = np.zeros(n, np.int64)
    for i, sp_id in enumerate(ids):
        ys, xs = np.nonzero(sp == sp_id)  # row-major order
        vecs = P[:, ys, xs]  # (C, n_s) float32
        pred = vecs.argmax(axis=0)
        dom = int(np.bincount(pred, minlength=num_classes).argmax())
        dom_idx = np.flatnonzero(pred == dom)
        mean = (vecs[:, dom_idx].astype(np.float64).sum(axis=1) / len(dom_idx)).astype(np.float32)
        cos = _cos_to_vector(vecs[:, dom_idx], mean)
        r = int(dom_idx[np.flatnonzero(cos == cos.max())[0]])  # first of the maxima
        w = _cos_to_vector(vecs, vecs[:, r]).astype(np.float64)
        w[r] = 1.0
        in_e = w >= np.float32(tau) if tau > 0 else np.ones(len(w), bool)
        cur = lab[ys, xs].astype(np.int64)
        if ignore_index is not None:
            cur = np.where(cur == ignore_index, pred, cur)
        a = 1.0 - vecs[cur, np.arange(len(cur))].astype(np.float64)
        if method == "sim":
            scores[i] = float(np.sum(w[in_e] * a[in_e]))
        elif method == "cil_mean":
            scores[i] = float(a[in_e].mean())
        else:
            scores[i] = float(a[r])
        rep_yx[i] = (ys[r], xs[r])
        dominant[i] = dom
        sizes[i] = len(ys)
        expanded[i] = int(in_e.sum())
    return SuperpixelScores(
        ids=ids,
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes,
        expanded_sizes=expanded,
    )
