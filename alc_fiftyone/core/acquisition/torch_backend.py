"""torch backend (CPU or CUDA): the primitives of the vectorised algorithm by scatter and
gather on the superpixel index, no sorting."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    _INT64_MIN,
    _LOW32,
    _LUT_MAX_ID,
    _bad_label_error,
    _check_prob_values,
    _check_shapes,
    _Image,
    _is_tensor,
)


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
