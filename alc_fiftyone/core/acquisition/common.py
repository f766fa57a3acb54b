"""What every backend of the acquisition shares: the result type, the methods, class priors
and weights, input validation, and small float32 helpers whose operation order all backends
follow (so that they choose the same representative and expansion region)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = (
    "sim",
    "gain",
    "cil_pixel",
    "cil_mean",
    "entropy",
    "margin",
    "random",
    "classbal",
    "abc",
)

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
# validation


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device") and hasattr(x, "dim")


def _is_torch_device(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and type(x).__name__ == "device"


#: files present where a CUDA (or ROCm) driver is installed: without any of them torch is
#: not imported just to be told there is no GPU (importing it costs seconds)
_GPU_DEVICE_FILES = (
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/proc/driver/nvidia",
    "/dev/dxg",
    "/dev/kfd",
)


def _gpu_driver_present() -> bool:
    """False where no GPU can be used: a Linux machine without a GPU driver's device files,
    or macOS (torch has no CUDA build there); True elsewhere (torch is asked)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in _GPU_DEVICE_FILES)
    return True


def _cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device (torch is not imported on a
    machine without a GPU driver, see :func:`_gpu_driver_present`)."""
    if "torch" not in sys.modules and not _gpu_driver_present():
        return False
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


def classbal_scores(
    unc: np.ndarray,
    dominant: np.ndarray,
    num_classes: int,
    class_prior: Any = None,
    score_range: Any = None,
) -> np.ndarray:
    """ClassBal (Cai et al., CVPR 2021): the region uncertainty ``unc`` min-max normalised
    (over ``score_range``, default the range of ``unc``) times ``exp(-p_c)``, ``p_c`` the
    share of regions whose dominant predicted class is c (``class_prior``, default: from
    ``dominant``). The one implementation, for one image or a whole dataset at once."""
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
