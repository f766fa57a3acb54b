"""The entry points of the acquisition: :func:`score_superpixels` (backend selection and
dispatch) and :func:`expansion_mask` (the expansion region E(s) of one superpixel)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .common import (
    METHODS,
    SuperpixelScores,
    _cuda_available,
    _is_tensor,
    _is_torch_device,
    _to_numpy,
)
from .numba_backend import _score_numba, numba_available
from .reference import cos_to_vector
from .vectorized import _score


def runs_on_host(device: Any) -> bool:
    """Whether ``device`` (as :func:`score_superpixels` takes it) resolves to a CPU backend
    (numba or numpy) for numpy inputs."""
    return isinstance(_resolve_backend(device, ()), str)


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
    if isinstance(backend, str) and backend == "numba" and method == "gain":
        backend = "numpy"  # the fused numba passes do not compute per-class sums
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
        from .numpy_backend import _prepare_numpy

        image = _prepare_numpy(probs, superpixels, labels, ignore_index)
        from .numpy_backend import _NumpyOps

        ops: Any = _NumpyOps()
    else:
        from .torch_backend import _prepare_torch, _TorchOps

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


def expansion_mask(
    probs: Any, superpixels: Any, sp_id: int, rep_yx: Any, tau: float, window=None
) -> np.ndarray:
    """E(s) of superpixel ``sp_id`` as an (H, W) bool mask (Kim et al., ICML 2024).

    ``E(s) = {x in s : cos(P(.|x), P(.|rep(s))) >= tau}``; ``tau <= 0`` gives all of s. The
    cosine is computed in float32 exactly as :func:`score_superpixels` does, so the mask agrees
    with its ``expanded_sizes``. ``rep_yx`` (image coordinates) must lie inside s; it always
    belongs to E(s). ``window`` (a pair of slices holding all of s, e.g. from
    ``scipy.ndimage.find_objects``) computes and returns the mask of that window only.
    """
    if window is not None:
        ys, xs = window
        sub = _to_numpy(superpixels)[ys, xs]
        p = None if probs is None or float(tau) <= 0 else _to_numpy(probs)[:, ys, xs]
        ry, rx = (int(v) for v in np.asarray(rep_yx).reshape(2))
        return expansion_mask(p, sub, sp_id, (ry - ys.start, rx - xs.start), tau)
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
    w = cos_to_vector(Ps, rep_vec)
    w[(ys == ry) & (xs == rx)] = 1.0
    out = np.zeros_like(mask)
    out[ys, xs] = w >= np.float32(tau)
    return out
