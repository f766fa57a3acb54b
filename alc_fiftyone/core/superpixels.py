"""Superpixel id maps from SLIC or Felzenszwalb, and helpers on id maps.

Every function returns a ``uint16`` (H, W) id map in which superpixels carry the dense ids
``1..N`` and ``0`` means "no superpixel" (docs/method.md, trap 6: ids must not wrap in uint8, and 0
is reserved). ``N`` never exceeds :data:`MAX_SUPERPIXELS`; :func:`cap_superpixels` merges the
smallest regions into their neighbours when a segmentation produces more.

The segmentations themselves come from scikit-image:

- SLIC: Achanta et al., "SLIC Superpixels Compared to State-of-the-art Superpixel Methods",
  TPAMI 2012, with the masked variant of Irving, "maskSLIC", arXiv:1606.09518
  (``skimage.segmentation.slic``).
- Felzenszwalb and Huttenlocher, "Efficient Graph-Based Image Segmentation", IJCV 2004
  (``skimage.segmentation.felzenszwalb``).

Both are deterministic for a given input (SLIC seeds on a regular grid, or with a fixed seed
on a mask), so the same image always gives the same id map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

MAX_SUPERPIXELS = 65535
"""Largest number of superpixels in one id map (ids 1..65535 fit ``uint16``, 0 is reserved)."""

METHODS = ("slic", "felzenszwalb")


def check_image(image: Any) -> np.ndarray:
    """Return ``image`` as an array of shape (H, W) or (H, W, 3); raise on anything else."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        return image
    raise ValueError(
        f"expected an (H, W, 3) RGB or (H, W) grayscale image, got shape {image.shape}; "
        "convert RGBA or other channel layouts to RGB first"
    )


def slic(
    image: np.ndarray,
    n_segments: int = 300,
    compactness: float = 10.0,
    sigma: float = 1.0,
    mask: np.ndarray | None = None,
    start_label: int = 1,
) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) as a ``uint16`` id map.

    Parameters
    ----------
    image
        (H, W, 3) RGB (uint8, or float in [0, 1]) or (H, W) grayscale. A grayscale image is
        replicated to three channels so that SLIC works in CIELAB for both, and
        ``compactness`` means the same thing for gray and colour images.
    n_segments
        Approximate number of superpixels (within ``mask`` when one is given).
    compactness
        Balance of colour against spatial proximity (higher = more regular).
    sigma
        Gaussian pre-smoothing width in pixels.
    mask
        Optional (H, W) bool array: superpixels are computed only inside it (maskSLIC);
        pixels outside get id 0. Useful to fill the gaps between SAM masks.
    start_label
        First id to use (>= 1). Ids are ``start_label .. start_label + N - 1``, so a gap fill
        can continue the numbering of an existing map; ``N`` is capped so that the largest id
        stays <= :data:`MAX_SUPERPIXELS`.

    Returns
    -------
    (H, W) ``uint16`` id map, connected superpixels (``enforce_connectivity=True``).
    """
    from skimage.segmentation import slic as _sk_slic

    image = check_image(image)
    if start_label < 1 or start_label > MAX_SUPERPIXELS:
        raise ValueError(f"start_label must be in 1..{MAX_SUPERPIXELS}, got {start_label}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"mask shape {mask.shape} does not match image shape {image.shape[:2]}"
            )
        if not mask.any():
            return np.zeros(image.shape[:2], dtype=np.uint16)
    labels = _sk_slic(
        image,
        n_segments=int(n_segments),
        compactness=float(compactness),
        sigma=float(sigma),
        enforce_connectivity=True,
        start_label=1,
        mask=mask,
        channel_axis=-1,
    )
    if mask is not None:
        labels = np.where(mask, labels, 0)
    max_n = MAX_SUPERPIXELS - (start_label - 1)
    return cap_superpixels(labels, max_n=max_n, start=start_label)


def felzenszwalb(
    image: np.ndarray, scale: float = 200.0, sigma: float = 0.8, min_size: int = 50
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation (IJCV 2004) as a ``uint16`` id map.

    Region sizes vary with local contrast, which is what makes the look-ahead acquisition
    pay off (measured on road scenes, BENCHMARKS.md). ``scale`` is the observation level
    (higher = fewer, larger regions), ``min_size`` the minimum region size in pixels.
    Grayscale images are segmented as one channel. Every pixel is covered.
    """
    from skimage.segmentation import felzenszwalb as _sk_felzenszwalb

    image = check_image(image)
    channel_axis = None if image.ndim == 2 else -1
    labels = _sk_felzenszwalb(
        image,
        scale=float(scale),
        sigma=float(sigma),
        min_size=int(min_size),
        channel_axis=channel_axis,
    )
    return cap_superpixels(labels.astype(np.int64) + 1)


def superpixels(image: np.ndarray, method: str = "slic", **params: Any) -> np.ndarray:
    """Dispatch to :func:`slic` or :func:`felzenszwalb` by name; ``params`` go to the method."""
    if method == "slic":
        return slic(image, **params)
    if method == "felzenszwalb":
        return felzenszwalb(image, **params)
    raise ValueError(f"unknown superpixel method {method!r}; choose one of {', '.join(METHODS)}")


def dense_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the non-zero values of ``ids`` to dense int64 ``1..N`` (0 stays 0)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected an (H, W) id map, got shape {ids.shape}")
    if ids.dtype.kind not in "iub":
        raise ValueError(f"expected an integer id map, got dtype {ids.dtype}")
    if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
        raise ValueError("superpixel ids must be >= 0 (0 = no superpixel)")
    top = int(ids.max()) if ids.size else 0
    if ids.size and top <= 4 * ids.size + 1024:
        # small ids (the usual case): a lookup table, much faster than sorting every pixel
        present = np.bincount(ids.ravel().astype(np.int64), minlength=top + 1) > 0
        values = np.flatnonzero(present)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[values] = np.arange(values.size, dtype=np.int64)
        inverse = lut[ids]
    else:
        values, inverse = np.unique(ids.ravel(), return_inverse=True)
        inverse = inverse.reshape(ids.shape).astype(np.int64)
    if values.size and values[0] == 0:
        return inverse, int(values.size - 1)
    return inverse + 1, int(values.size)


def relabel_sequential(ids: np.ndarray, start: int = 1) -> np.ndarray:
    """Renumber the non-zero ids of ``ids`` to dense ``start..start+N-1`` (``uint16``).

    The order of ids is kept (a smaller old id gets a smaller new id) and 0 stays 0.
    Raises ``ValueError`` when the result would not fit ``uint16``; use
    :func:`cap_superpixels` to merge regions first.
    """
    if start < 1:
        raise ValueError(f"start must be >= 1 (0 is reserved), got {start}")
    dense, n = dense_ids(ids)
    if n and start + n - 1 > MAX_SUPERPIXELS:
        raise ValueError(
            f"{n} superpixels starting at {start} exceed the uint16 id range "
            f"(max {MAX_SUPERPIXELS}); merge them with cap_superpixels first"
        )
    if start != 1:
        dense = np.where(dense > 0, dense + (start - 1), 0)
    return dense.astype(np.uint16)


def adjacency(labels: np.ndarray, n: int) -> sparse.csr_matrix:
    """Symmetric (n+1, n+1) count of 4-connected pixel pairs between different non-zero ids."""
    pairs_a = [labels[:, :-1].ravel(), labels[:-1, :].ravel()]
    pairs_b = [labels[:, 1:].ravel(), labels[1:, :].ravel()]
    a = np.concatenate(pairs_a)
    b = np.concatenate(pairs_b)
    keep = (a != b) & (a > 0) & (b > 0)
    a, b = a[keep], b[keep]
    rows = np.concatenate([a, b])
    cols = np.concatenate([b, a])
    data = np.ones(rows.size, dtype=np.int64)
    return sparse.coo_matrix((data, (rows, cols)), shape=(n + 1, n + 1)).tocsr()


def most_adjacent(adj: sparse.csr_matrix, sizes: np.ndarray) -> np.ndarray:
    """For each id, the neighbour sharing the longest boundary (-1 when it has none).

    Ties go to the larger neighbour, then to the smaller id, so the choice is deterministic.
    """
    n1 = adj.shape[0]
    coo = adj.tocoo()
    best = np.full(n1, -1, dtype=np.int64)
    if coo.nnz == 0:
        return best
    # sort by row, then count desc, then neighbour size desc, then neighbour id asc
    order = np.lexsort((coo.col, -sizes[coo.col], -coo.data, coo.row))
    rows = coo.row[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    best[rows[first]] = coo.col[order][first]
    return best


def cap_superpixels(ids: np.ndarray, max_n: int = MAX_SUPERPIXELS, start: int = 1) -> np.ndarray:
    """Merge the smallest superpixels into neighbours until at most ``max_n`` remain.

    Each round takes the smallest regions (as many as there are ids too many, smallest first,
    ties by id) and merges each into the neighbour with which it shares the longest
    4-connected boundary; chains of merges collapse into one region. Rounds repeat until the
    count is <= ``max_n``, so merged regions stay connected. Only if no region of the round
    touches another (regions separated by 0 pixels) are the smallest isolated regions merged
    together regardless of adjacency, as a last resort. 0 pixels are never merged.

    Returns the ``uint16`` id map renumbered densely from ``start`` (also when nothing had to
    be merged), so it doubles as a checked :func:`relabel_sequential`.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    if start < 1 or start + max_n - 1 > MAX_SUPERPIXELS:
        raise ValueError(
            f"ids start..start+max_n-1 = {start}..{start + max_n - 1} must lie in "
            f"1..{MAX_SUPERPIXELS}"
        )
    labels, n = dense_ids(ids)
    while n > max_n:
        excess = n - max_n
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        adj = adjacency(labels, n)
        best = most_adjacent(adj, sizes)
        candidates = np.arange(1, n + 1)
        candidates = candidates[best[1:] > 0]
        if candidates.size:
            order = np.lexsort((candidates, sizes[candidates]))
            merging = candidates[order[:excess]]
            targets = best[merging]
        else:
            # No region touches another: merge the smallest isolated ones into one.
            order = np.lexsort((np.arange(1, n + 1), sizes[1:]))
            group = order[: excess + 1] + 1
            merging, targets = group[1:], np.full(excess, group[0])
        graph = sparse.coo_matrix(
            (np.ones(merging.size), (merging, targets)), shape=(n + 1, n + 1)
        )
        _, component = connected_components(graph, directed=False)
        # id 0 has no edge, so it never joins a region; renumber the regions 1..n
        uniq, inverse = np.unique(component[1:], return_inverse=True)
        lut = np.zeros(n + 1, dtype=np.int64)
        lut[1:] = inverse + 1
        labels = lut[labels]
        n = int(uniq.size)
    out = labels.astype(np.int64)
    if start != 1:
        out = np.where(out > 0, out + (start - 1), 0)
    return out.astype(np.uint16)


# --- superpixels from masks (SAM automatic masks, pseudo-label instances) --------------------


def paint_masks(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool masks -> (H, W) int64 map of 1 + the index of the visible mask.

    Masks are painted largest first, so a smaller mask wins where masks overlap (the paper's
    rule for pseudo labels and their superpixels); between equal areas the later index wins.
    Pixels no mask covers are 0.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"expected (K, H, W) masks, got shape {masks.shape}")
    out = np.zeros(masks.shape[1:], dtype=np.int64)
    areas = masks.reshape(len(masks), -1).sum(1)
    for k in np.argsort(-areas, kind="stable"):
        out[masks[k]] = k + 1
    return out


def merge_small_regions(ids: np.ndarray, min_area: int) -> np.ndarray:
    """Merge every region smaller than ``min_area`` pixels into the neighbour with which it
    shares the longest boundary, repeatedly, until no small region touches another one.

    0 pixels are never merged (a small region surrounded only by 0 stays). Returns the id map
    renumbered densely from 1 (``uint16`` via :func:`cap_superpixels`).
    """
    labels, n = dense_ids(ids)
    while min_area > 1 and n > 1:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        best = most_adjacent(adjacency(labels, n), sizes)
        small = np.flatnonzero((sizes < min_area) & (best >= 0))
        small = small[small > 0]
        if small.size == 0:
            break
        graph = sparse.coo_matrix(
            (np.ones(small.size), (small, best[small])), shape=(n + 1, n + 1)
        )
        _, component = connected_components(graph, directed=False)
        uniq, inverse = np.unique(component[1:], return_inverse=True)
        lut = np.zeros(n + 1, dtype=np.int64)
        lut[1:] = inverse + 1
        labels = lut[labels]
        n = int(uniq.size)
    return cap_superpixels(labels)


def superpixels_from_regions(
    regions: np.ndarray,
    image: np.ndarray | None = None,
    fill: bool = True,
    min_area: int = 100,
    fill_segment_area: int = 1024,
    compactness: float = 10.0,
) -> np.ndarray:
    """Superpixels from a painted region map (0 = uncovered), as a ``uint16`` id map.

    Each connected piece of a region becomes its own superpixel. With ``fill``, the uncovered
    pixels are split by SLIC restricted to them (maskSLIC, about one superpixel per
    ``fill_segment_area`` pixels; needs ``image``) and any pixel still uncovered gets the id
    of its connected component, so every pixel has a superpixel. Pieces under ``min_area``
    pixels are then merged into their neighbour (:func:`merge_small_regions`).
    """
    from skimage.measure import label as _cc_label

    regions = np.asarray(regions)
    if regions.ndim != 2:
        raise ValueError(f"expected an (H, W) region map, got shape {regions.shape}")
    labels = _cc_label(regions.astype(np.int64), background=0, connectivity=1).astype(np.int64)
    if fill:
        gap = labels == 0
        if gap.any():
            n = int(labels.max())
            if image is not None:
                image = check_image(image)
                if image.shape[:2] != regions.shape:
                    raise ValueError(
                        f"image shape {image.shape[:2]} does not match regions {regions.shape}"
                    )
                k = max(1, round(int(gap.sum()) / max(1, int(fill_segment_area))))
                # SLIC on the bounding box of the gaps only (the rest is masked out anyway)
                rows, cols = np.flatnonzero(gap.any(1)), np.flatnonzero(gap.any(0))
                box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                filled = np.zeros(labels.shape, dtype=np.int64)
                filled[box] = slic(
                    image[box], n_segments=k, compactness=compactness, mask=gap[box]
                )
                labels = np.where(filled > 0, filled + n, labels)
                gap = labels == 0
            if gap.any():
                rest = _cc_label(gap, background=0, connectivity=1).astype(np.int64)
                labels = np.where(gap, rest + int(labels.max()), labels)
    return merge_small_regions(labels, int(min_area))


def instance_superpixels(
    instances: np.ndarray,
    image: np.ndarray | None = None,
    fill: bool = False,
    min_area: int = 0,
    **fill_params: Any,
) -> np.ndarray:
    """Superpixels from pseudo-label instances: a painted instance map (0 = no mask) or
    (K, H, W) bool masks (painted largest first).

    ``fill=False`` is the paper's choice: uncovered pixels keep id 0 and are never queried.
    ``fill=True`` splits them with SLIC (see :func:`superpixels_from_regions`).
    """
    instances = np.asarray(instances)
    if instances.ndim == 3:
        instances = paint_masks(instances)
    return superpixels_from_regions(
        instances, image=image, fill=fill, min_area=min_area, **fill_params
    )
