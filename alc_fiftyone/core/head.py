"""Pure-torch pieces of a per-pixel classification head on frozen grid features.

The features are a backbone's output on a square "frame": the image resized so its longest
side is ``frame`` pixels and padded at the bottom and right, as Segment Anything does
(Kirillov et al., ICCV 2023; ``segment_anything.utils.transforms.ResizeLongestSide`` and
``Sam.preprocess`` / ``Sam.postprocess_masks``). A (D, g, g) feature grid covers the whole
frame, each cell ``frame / g`` frame pixels wide; only the top-left ``input_size = (h, w)``
part of the frame holds the image.

- :func:`preprocess_shape`: the resized (h, w) of an (H, W) image (ResizeLongestSide's rule).
- :func:`grid_to_image`: cell logits -> (C, H, W) logits at the original image: upsample the
  grid to the padded frame, crop the valid region, resize to (H, W) (the geometry of
  ``Sam.postprocess_masks``, both bilinear with ``align_corners=False``, done as separable
  matrix products).
- :func:`pool_labels`: an (H, W) label map -> per-cell class pixel counts, each original
  pixel counted in the cell under its centre's position in the frame (the inverse geometry).
- :class:`FoldHeads`: k independent heads (linear, or a 2-layer MLP = two 1x1 convs) evaluated
  together, one per fold of a k-fold split by image.
- :func:`soft_cross_entropy`: the loss of each head on its own training rows.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F


def preprocess_shape(height: int, width: int, frame: int) -> tuple[int, int]:
    """(h, w) of an image resized so that its longest side is ``frame`` (rounded as
    ``ResizeLongestSide.get_preprocess_shape`` does: ``int(x * scale + 0.5)``)."""
    scale = frame / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def axis_matrix(grid: int, frame: int, valid: int, out: int, device=None):
    """(grid, out) weights of one axis of :func:`grid_to_image`: linear interpolation of
    ``grid`` cells to ``frame`` pixels, the first ``valid`` kept, linearly resized to ``out``
    (``align_corners=False``, as ``F.interpolate``'s bilinear mode does along each axis)."""
    eye = torch.eye(grid, device=device)[None]  # (1, grid channels, grid positions)
    x = F.interpolate(eye, size=frame, mode="linear", align_corners=False)[..., :valid]
    return F.interpolate(x, size=out, mode="linear", align_corners=False)[0]


def grid_to_image(logits, input_size, original_size, frame: int):
    """(C, g, g) or (N, C, g, g) cell logits -> (C, H, W) / (N, C, H, W) at the image.

    Upsample the grid bilinearly to the ``frame`` x ``frame`` padded input, keep the
    ``input_size`` = (h, w) region where the resized image lies (top-left: padding is at the
    bottom and right), resize that bilinearly to ``original_size`` = (H, W): the geometry of
    ``Sam.postprocess_masks``. Bilinear interpolation is separable, so the three steps are
    done as one (H, g) and one (g, W) matrix product per map (equal to the three
    ``F.interpolate`` calls up to float rounding; 30x faster and without the (C, 1024, 1024)
    intermediate).
    """
    h, w = (int(v) for v in input_size)
    H, W = (int(v) for v in original_size)
    gh, gw = logits.shape[-2:]
    my = axis_matrix(gh, frame, h, H, logits.device)  # (gh, H)
    mx = axis_matrix(gw, frame, w, W, logits.device)  # (gw, W)
    return my.T @ logits.float() @ mx


def pixel_cells(original_size, input_size, frame: int, grid: int) -> np.ndarray:
    """(H, W) int64: the flat index (row * grid + col) of the grid cell holding each original
    pixel's centre once the image is resized to ``input_size`` inside the frame."""
    H, W = (int(v) for v in original_size)
    h, w = (int(v) for v in input_size)
    cell = frame / grid
    ys = ((np.arange(H) + 0.5) * (h / H) / cell).astype(np.int64).clip(0, grid - 1)
    xs = ((np.arange(W) + 0.5) * (w / W) / cell).astype(np.int64).clip(0, grid - 1)
    return ys[:, None] * grid + xs[None, :]


def pool_labels(
    labels: np.ndarray,
    input_size,
    frame: int,
    grid: int,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """(grid * grid, C) float32 class pixel counts per cell of an (H, W) label map; pixels
    equal to ``ignore_index`` (or outside 0..C-1) are not counted."""
    labels = np.asarray(labels)
    cells = pixel_cells(labels.shape, input_size, frame, grid)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    key = cells[valid] * num_classes + labels[valid].astype(np.int64)
    counts = np.bincount(key, minlength=grid * grid * num_classes)
    return counts.reshape(grid * grid, num_classes).astype(np.float32)


def valid_cells(input_size, frame: int, grid: int) -> np.ndarray:
    """(grid * grid,) bool: the cells that overlap the resized image (not only padding)."""
    h, w = (int(v) for v in input_size)
    cell = frame / grid
    rows = np.arange(grid) * cell < h
    cols = np.arange(grid) * cell < w
    return (rows[:, None] & cols[None, :]).ravel()


class FoldHeads(torch.nn.Module):
    """``n_heads`` independent heads on ``in_dim`` features, evaluated at once.

    ``hidden=0``: a linear head (a 1x1 convolution); ``hidden>0``: a 2-layer MLP (two 1x1
    convolutions with a ReLU). Inputs are standardised with fixed per-channel ``mean`` /
    ``std`` (buffers) first. Head ``f``'s parameters are the ``f``-th slice of each
    parameter tensor, so its gradient comes from its own loss only.
    """

    def __init__(
        self, n_heads: int, in_dim: int, num_classes: int, hidden: int = 0, generator=None
    ):
        super().__init__()
        self.n_heads, self.in_dim, self.num_classes, self.hidden = (
            n_heads,
            in_dim,
            num_classes,
            hidden,
        )
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        dims = [in_dim, hidden, num_classes] if hidden else [in_dim, num_classes]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for d_in, d_out in itertools.pairwise(dims):
            bound = 1.0 / np.sqrt(d_in)  # PyTorch's default Linear/Conv init range
            w = torch.empty(n_heads, d_in, d_out).uniform_(-bound, bound, generator=generator)
            b = torch.empty(n_heads, 1, d_out).uniform_(-bound, bound, generator=generator)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    def _first_layer(self):
        """The first layer's weights and biases with the standardisation folded in:
        ((x - mean) / std) @ w + b = x @ (w / std) + (b - (mean / std) @ w)."""
        w, b = self.weights[0], self.biases[0]
        w_eff = w / self.std[None, :, None]
        b_eff = b - torch.matmul((self.mean / self.std)[None, None, :], w)
        return w_eff, b_eff

    def forward(self, x, head: int | None = None):
        """x (N, D) -> logits (n_heads, N, C), or (N, C) of one ``head``."""
        x = x.float()
        w0, b0 = self._first_layer()
        if head is not None:
            x = torch.addmm(b0[head], x, w0[head])
            if len(self.weights) > 1:
                x = torch.addmm(self.biases[1][head], torch.relu(x), self.weights[1][head])
            return x
        # all heads: the first layer as one (N, D) x (D, k * d1) product (a batched product
        # over a broadcast input is an order of magnitude slower on a CPU)
        k = self.n_heads
        d1 = w0.shape[2]
        x = x @ w0.permute(1, 0, 2).reshape(self.in_dim, k * d1)
        x = x.reshape(-1, k, d1).transpose(0, 1).contiguous() + b0  # (k, N, d1)
        if len(self.weights) > 1:
            x = torch.baddbmm(self.biases[1], torch.relu(x), self.weights[1])
        return x

    def predict_grid(self, features, head: int | None):
        """(D, g, g) features -> (C, g, g) logits of ``head`` (None: mean of all heads'
        log-probabilities, for an image no head was fitted for)."""
        D, gh, gw = features.shape
        x = features.reshape(D, gh * gw).T
        if head is None:
            out = torch.log_softmax(self.forward(x), dim=-1).mean(dim=0)
        else:
            out = self.forward(x, head)
        return out.T.reshape(self.num_classes, gh, gw)


def soft_cross_entropy(logits, counts, mask):
    """Sum over heads of each head's mean pixel cross-entropy on its training rows.

    ``logits`` (k, N, C); ``counts`` (N, C) class pixel counts of each row (a cell); ``mask``
    (k, N) 1 where head k trains on the row. With a prediction constant inside a cell this is
    exactly the pixel-level cross-entropy of the cell's pixels.
    """
    logp = torch.log_softmax(logits, dim=-1)
    per_row = -(counts[None] * logp).sum(dim=-1)  # (k, N)
    pixels = (counts.sum(dim=-1)[None] * mask).sum(dim=-1).clamp(min=1.0)  # (k,)
    return ((per_row * mask).sum(dim=-1) / pixels).sum()
