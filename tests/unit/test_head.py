"""The geometry and training pieces of the per-pixel head (alc_fiftyone.core.head).

The upsampling must undo SAM's preprocessing exactly (resize the longest side to the frame,
pad bottom/right): a misplaced crop or a resize of the whole padded frame shifts boundaries by
many pixels on non-square images, which these tests would catch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alc_fiftyone.core import head as ch

torch.set_num_threads(1)

SIZES = [(48, 64), (64, 48), (47, 93), (93, 47), (31, 31), (5, 200)]  # (H, W)
FRAME, GRID = 1024, 64


def _ramp_logits(axis: int, boundary: float, input_size):
    """(2, g, g) cell logits whose class-1 minus class-0 difference is the cell centre's
    frame coordinate minus ``boundary`` (in frame pixels) along ``axis`` (0: y, 1: x)."""
    cell = FRAME / GRID
    centres = (torch.arange(GRID, dtype=torch.float64) + 0.5) * cell
    ramp = (centres - boundary).float()
    diff = ramp[:, None].expand(GRID, GRID) if axis == 0 else ramp[None].expand(GRID, GRID)
    return torch.stack([torch.zeros_like(diff), diff])


@pytest.mark.parametrize("size", SIZES)
def test_preprocess_shape_matches_segment_anything(size):
    from segment_anything.utils.transforms import ResizeLongestSide

    assert ch.preprocess_shape(*size, FRAME) == ResizeLongestSide.get_preprocess_shape(
        *size, FRAME
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("axis", [0, 1])
def test_split_boundary_lands_within_a_pixel(size, axis):
    """A left/right (top/bottom) split in the middle of the image, expressed on the grid,
    comes back at the middle of the original image."""
    H, W = size
    h, w = ch.preprocess_shape(H, W, FRAME)
    n_orig, n_frame = (H, h) if axis == 0 else (W, w)
    split = n_orig // 2  # pixels < split are class 0
    boundary = split * n_frame / n_orig  # the same line in frame coordinates
    out = ch.grid_to_image(_ramp_logits(axis, boundary, (h, w)), (h, w), (H, W), FRAME)
    assert out.shape == (2, H, W)
    cls = (out[1] > out[0]).numpy()
    line = cls.mean(axis=1 - axis) if axis == 0 else cls.mean(axis=0)
    # first row/column predicted as class 1
    first = int(np.argmax(line > 0.5))
    assert abs(first - split) <= 1, (first, split)


@pytest.mark.parametrize("size", SIZES)
def test_position_map_round_trip(size):
    """The frame coordinate of each cell centre, upsampled, gives each original pixel centre's
    frame coordinate (linear interpolation is exact on a linear map, away from the border)."""
    H, W = size
    h, w = ch.preprocess_shape(H, W, FRAME)
    cell = FRAME / GRID
    c = (torch.arange(GRID, dtype=torch.float32) + 0.5) * cell
    grid = torch.stack([c[:, None].expand(GRID, GRID), c[None].expand(GRID, GRID)])
    out = ch.grid_to_image(grid, (h, w), (H, W), FRAME).numpy()
    ys = (np.arange(H) + 0.5) * h / H
    xs = (np.arange(W) + 0.5) * w / W
    iy = (ys > cell) & (ys < h - cell)  # beyond half a cell of the edge: no clamping
    ix = (xs > cell) & (xs < w - cell)
    scale_y, scale_x = h / H, w / W  # frame pixels per original pixel
    if iy.any():
        err_y = np.abs(out[0][iy] - ys[iy][:, None]) / scale_y
        assert err_y.max() < 0.75, err_y.max()  # within a pixel of the original image
    if ix.any():
        err_x = np.abs(out[1][:, ix] - xs[ix][None]) / scale_x
        assert err_x.max() < 0.75, err_x.max()


def test_grid_to_image_matches_sam_postprocess():
    """Same result as segment_anything's Sam.postprocess_masks (the reference geometry)."""
    from alc_fiftyone.core.sam import tiny_random_sam

    sam = tiny_random_sam(img_size=256)
    g = 16
    logits = torch.randn(1, 3, g, g, generator=torch.Generator().manual_seed(0))
    for H, W in [(47, 93), (64, 48)]:
        h, w = ch.preprocess_shape(H, W, 256)
        ref = sam.postprocess_masks(logits, (h, w), (H, W))
        ours = ch.grid_to_image(logits, (h, w), (H, W), 256)
        assert torch.allclose(ref, ours, atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_pool_labels_puts_pixels_in_their_cells(size):
    H, W = size
    h, w = ch.preprocess_shape(H, W, FRAME)
    labels = np.zeros((H, W), np.int64)
    labels[:, W // 2 :] = 1
    labels[0, 0] = 7  # ignored
    counts = ch.pool_labels(labels, (h, w), FRAME, GRID, 2, ignore_index=7)
    assert counts.shape == (GRID * GRID, 2)
    assert counts.sum() == H * W - 1
    valid = ch.valid_cells((h, w), FRAME, GRID)
    assert counts[~valid].sum() == 0  # nothing in the padding
    # each pixel is counted in the cell under its centre
    cell = FRAME / GRID
    cx = ((np.arange(W) + 0.5) * w / W / cell).astype(int)
    cols = np.flatnonzero(counts.reshape(GRID, GRID, 2).sum(axis=(0, 2)) > 0)
    assert set(cols.tolist()) == set(cx.tolist())
    if len(cols) < w / cell - 1:
        return  # upscaled image (pixels larger than cells): some cells hold no pixel centre
    # round trip: class-1 fraction per cell as a probability map, upsampled: boundary within
    # a pixel of W // 2
    frac = counts[:, 1] / np.maximum(counts.sum(1), 1)
    p1 = torch.from_numpy(frac.reshape(GRID, GRID)).float()
    logit = torch.stack([0.5 - p1, p1 - 0.5])
    out = ch.grid_to_image(logit, (h, w), (H, W), FRAME)
    row = (out[1] > out[0]).float().mean(0).numpy()
    first = int(np.argmax(row > 0.5))
    assert abs(first - W // 2) <= 1


def test_fold_heads_are_independent_and_train():
    gen = torch.Generator().manual_seed(0)
    heads = ch.FoldHeads(3, 4, 2, hidden=8, generator=gen)
    x = torch.randn(30, 4, generator=gen)
    y = torch.zeros(30, 2)
    y[x[:, 0] > 0, 1] = 5
    y[x[:, 0] <= 0, 0] = 5
    mask = torch.ones(3, 30)
    mask[1] = 0  # head 1 sees nothing
    before = [p.detach().clone() for p in heads.parameters()]
    loss = ch.soft_cross_entropy(heads(x), y, mask)
    loss.backward()
    for p in heads.parameters():
        assert torch.all(p.grad[1] == 0)
        assert p.grad[0].abs().sum() > 0
    assert heads(x).shape == (3, 30, 2) and heads(x, head=2).shape == (30, 2)
    assert torch.allclose(heads(x)[2], heads(x, head=2), atol=1e-5)
    grid = heads.predict_grid(torch.randn(4, 5, 5, generator=gen), head=0)
    assert grid.shape == (2, 5, 5)
    assert all(torch.equal(a, b) for a, b in zip(before, heads.parameters()))
