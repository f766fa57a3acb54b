"""Label-aware regions: superpixels that follow the labels under review.

What one correction query can fix is the size of its region times the chance that the region
is wrong as a whole (METHOD.md, "Regions decide what one answer can fix"). Superpixels that
ignore the labels (SLIC, Felzenszwalb) cut a swapped or missed object into many pieces, each
needing its own click, and pieces that straddle two labels cannot be fixed by any answer.
:func:`label_aware_regions` intersects an image segmentation (the *base* regions) with the
4-connected components of each class of the current labels, so every region carries one
current label and one answer can relabel all of it; fragments under ``min_area`` are then
merged so that clicks are not spent on slivers.

This is the paper's own idea made full-coverage: Kim et al. ("Active Label Correction for
Semantic Segmentation with Foundation Models", ICML 2024) query the pseudo-label instance
masks themselves, so a query's region is a whole labelled object; here the label components
play that part for any label map, and the base regions split them where the image says two
things meet under one label (a missed object that the surrounding label swallowed). Connected
components are scikit-image's (``skimage.measure.label``, union-find after Wu, Otoo and
Suzuki, "Optimizing two-pass connected-component labeling algorithms", PAA 2009); merging small
regions into their most similar neighbour follows the region-merging step of Felzenszwalb and
Huttenlocher (IJCV 2004, ``min_size``) with the similarity of mean colour in CIELAB used by
region-adjacency-graph merging (e.g. ``skimage.graph.merge_hierarchical``).

Everything is vectorised over pixels (no Python loop over pixels or regions): one connected
component labelling, one adjacency matrix of the region graph, and merge rounds that update
the region graph with sparse products instead of re-reading the pixels. Pure numpy / scipy /
scikit-image; no FiftyOne import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .superpixels import MAX_SUPERPIXELS, adjacency, cap_superpixels, check_image, dense_ids

__all__ = [
    "DEFAULT_MIN_AREA",
    "FELZENSZWALB_MIN_SIZE",
    "FELZENSZWALB_SCALE_PER_PIXEL",
    "IGNORE_MODES",
    "label_aware_regions",
    "label_components",
    "nested_regions",
    "region_label_context",
]

IGNORE_MODES = ("own", "merge")
"""How :func:`label_aware_regions` treats pixels whose current label is the ignore value."""

DEFAULT_MIN_AREA = 256
"""Default ``min_area`` of :func:`label_aware_regions` (pixels), chosen by measurement on
CamVid and Weizmann horses at equal clicks (docs/method.md, "Regions"): 256 beat 64 and 512
and a share of the image (0.4 %) on both datasets."""

FELZENSZWALB_SCALE_PER_PIXEL = 0.008
"""Default Felzenszwalb ``scale`` of label-aware base regions, per pixel of the image
(``scale = 0.008 * height * width``: 1,382 on a 480x360 CamVid frame, about 400 on a
260x195 horse image), chosen by measurement against a fixed 400 and 0.004 / 0.016 per pixel
(docs/method.md, "Regions")."""

FELZENSZWALB_MIN_SIZE = 100
"""Default Felzenszwalb ``min_size`` of label-aware base regions (pixels; the measured
setting, with ``sigma=0.8``)."""


def _check_labels(labels: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (H, W) class map, got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be an integer class map, got dtype {labels.dtype}")
    if shape is not None and labels.shape != tuple(shape):
        raise ValueError(f"labels {labels.shape} and base regions {tuple(shape)} differ in size")
    if labels.size == 0:
        raise ValueError("labels are empty")
    return labels


def _dense_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map label values to dense int64 indices 0..L-1; also return the values (ascending)."""
    values, inverse = np.unique(labels.ravel(), return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64), values


def _components(key: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of equal values of the int64 ``key`` map: ids 1..N."""
    from skimage.measure import label as _cc_label

    # background=-1: no key is negative, so every pixel belongs to a component
    comp = _cc_label(key, background=-1, connectivity=1)
    return comp.astype(np.int64), int(comp.max())


def _lab_of_means(rgb_sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """CIELAB of each region's mean RGB (rows of sums / sizes, RGB in [0, 1]); gray -> L only."""
    from skimage.color import rgb2lab

    means = rgb_sums / np.maximum(sizes, 1)[:, None]
    if means.shape[1] == 1:  # grayscale: lightness only
        return 100.0 * means
    return rgb2lab(np.clip(means, 0.0, 1.0)[:, None, :])[:, 0, :]


def _image_float(image: Any, shape: tuple[int, int]) -> np.ndarray:
    """(H*W, K) float64 pixel values in [0, 1] (K = 3 for RGB, 1 for gray)."""
    image = check_image(image)
    if image.shape[:2] != tuple(shape):
        raise ValueError(f"image {image.shape[:2]} and labels {tuple(shape)} differ in size")
    arr = image.astype(np.float64)
    if image.dtype.kind in "ui":
        arr /= float(np.iinfo(image.dtype).max) if image.dtype != np.uint8 else 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr.reshape(-1, arr.shape[-1])


def _check_sizes(min_area, max_regions) -> int:
    """``min_area`` as an int, after checking it and ``max_regions``."""
    if not 1 <= int(max_regions) <= MAX_SUPERPIXELS:
        raise ValueError(f"max_regions must be in 1..{MAX_SUPERPIXELS}, got {max_regions}")
    if int(min_area) < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    return int(min_area)


def _colour_sums(image, shape, flat: np.ndarray, n: int) -> np.ndarray | None:
    """(n+1, K) sums of the pixel values of each component of ``flat`` (None: no image)."""
    if image is None:
        return None
    pix = _image_float(image, shape)
    return np.stack(
        [np.bincount(flat, weights=pix[:, k], minlength=n + 1) for k in range(pix.shape[1])],
        axis=1,
    )


class _Graph:
    """The region graph during merging: per-region size, label, colour sums and base region,
    the (n+1, n+1) shared-border counts, and the map from the initial components to regions."""

    def __init__(self, comp, n, comp_label, comp_base, colour_sums, ignore_label):
        self.n = n
        self.ignore_label = ignore_label  # dense label index of the ignore value, or -2
        self.sizes = np.bincount(comp.ravel(), minlength=n + 1).astype(np.int64)
        self.label = comp_label  # (n+1,) dense label index, -1 for id 0
        self.base = comp_base  # (n+1,) dense base index (of the largest member)
        self.sums = colour_sums  # (n+1, K) or None
        self.adj = adjacency(comp, n).tocsr()
        self.lut = np.arange(n + 1, dtype=np.int64)  # initial component -> current region

    def merge(self, sources: np.ndarray, targets: np.ndarray) -> None:
        """Join every ``sources[i]`` with ``targets[i]`` (chains collapse into one region).

        The merged region keeps the label and base region of its largest member (ties: the
        smaller id), so a fragment absorbed by a big region never changes that region's label.
        """
        n = self.n
        graph = sparse.coo_matrix(
            (np.ones(sources.size), (sources, targets)), shape=(n + 1, n + 1)
        )
        _, group = connected_components(graph, directed=False)
        # renumber the groups densely in order of their smallest member; id 0 stays 0
        first = np.full(group.max() + 1, n + 1, dtype=np.int64)
        np.minimum.at(first, group, np.arange(n + 1))
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        new = rank[group]  # new[0] == 0 since id 0 has no edge and is the smallest
        m = int(new.max())
        # the largest member of every group decides its label and base
        members = np.arange(1, n + 1)
        pick = np.lexsort((members, -self.sizes[1:]))  # largest first, ties by id
        leader = np.full(m + 1, -1, dtype=np.int64)
        g = new[1:][pick]
        # first occurrence of each group in the size order = its largest member
        _, idx = np.unique(g, return_index=True)
        leader[g[idx]] = members[pick][idx]
        label = np.full(m + 1, -1, dtype=np.int64)
        base = np.full(m + 1, -1, dtype=np.int64)
        label[1:] = self.label[leader[1:]]
        base[1:] = self.base[leader[1:]]
        sizes = np.bincount(new, weights=self.sizes, minlength=m + 1).astype(np.int64)
        sums = None
        if self.sums is not None:
            sums = np.zeros((m + 1, self.sums.shape[1]))
            np.add.at(sums, new, self.sums)
        # border counts between groups: M^T A M, diagonal (now internal borders) dropped
        assign = sparse.csr_matrix((np.ones(n + 1), (np.arange(n + 1), new)), shape=(n + 1, m + 1))
        adj = (assign.T @ self.adj @ assign).tocsr()
        adj.setdiag(0)
        adj.eliminate_zeros()
        self.n, self.sizes, self.label, self.base, self.sums, self.adj = (
            m,
            sizes,
            label,
            base,
            sums,
            adj,
        )
        self.lut = new[self.lut]

    def colour(self) -> np.ndarray | None:
        if self.sums is None:
            return None
        return _lab_of_means(self.sums, self.sizes)


def _best_targets(g: _Graph, rows_mask: np.ndarray, prefer: str) -> tuple[np.ndarray, np.ndarray]:
    """For every region with ``rows_mask`` True, its merge target among its neighbours.

    ``prefer``: ``"same_label"`` keeps only neighbours with the region's label;
    ``"same_base"`` only labelled (not ignore) neighbours in the same base region; ``"any"``
    every neighbour. Among the candidates: the most similar mean colour (CIELAB distance)
    when colours are known, then the longest shared border, then the larger neighbour, then
    the smaller id. Returns ``(sources, targets)`` (regions without a candidate are left out).
    """
    coo = g.adj.tocoo()
    r, c, border = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    keep = rows_mask[r] & (r > 0) & (c > 0)
    if prefer == "same_label":
        keep &= g.label[r] == g.label[c]
    elif prefer == "same_base":
        keep &= (g.base[r] == g.base[c]) & (g.label[c] != g.ignore_label)
    r, c, border = r[keep], c[keep], border[keep]
    if r.size == 0:
        return r, c
    lab = g.colour()
    if lab is not None:
        dist = np.round(np.sqrt(((lab[r] - lab[c]) ** 2).sum(axis=1)), 6)
    else:
        dist = np.zeros(r.size)
    order = np.lexsort((c, -g.sizes[c], -border, dist, r))
    r, c = r[order], c[order]
    first = np.ones(r.size, dtype=bool)
    first[1:] = r[1:] != r[:-1]
    return r[first], c[first]


def label_aware_regions(
    labels: Any,
    base: Any,
    *,
    image: Any = None,
    min_area: int = DEFAULT_MIN_AREA,
    ignore_index: int | None = 255,
    ignore: str = "own",
    max_regions: int = MAX_SUPERPIXELS,
) -> np.ndarray:
    """Regions that follow the current labels, cut by base regions, as a ``uint16`` id map.

    1. *Cut*: every 4-connected set of pixels that share one current label value **and** one
       base region becomes a region (the connected components of the pair (base id, label)).
       So each region lies inside one 4-connected component of one class of ``labels`` and
       inside one region of ``base``, and one answer can relabel all of it. Base id 0 (no
       superpixel) is treated as one more base region, so every pixel gets a region.
    2. *Ignore pixels* (``labels == ignore_index``), by ``ignore``:

       - ``"own"`` (default): the ignore value is treated like a class. Unlabelled areas form
         their own regions (cut by base regions), so one answer labels an unlabelled patch as
         a whole, e.g. an object that a pseudo-labeller missed and left uncovered (the
         Cityscapes convention of the paper), and an answer never spreads a neighbour's class
         over unlabelled pixels it was not asked about. Small ignore fragments (thin
         unlabelled borders) merge by the ``min_area`` rule below, preferably into an
         adjacent ignore region.
       - ``"merge"``: each ignore piece (step 1) joins the labelled region of the *same base
         region* with which it shares the longest border (most similar colour when
         ``image`` is given), so an answer about that region also labels the unlabelled
         pixels that the image groups with it; ignore pieces without a labelled neighbour in
         their base region stay regions of their own. Fits labels whose ignore value marks
         uncertain borders (VOC's 255 band) rather than uncovered objects.
    3. *Fragments*: a region under ``min_area`` pixels merges into an adjacent region with the
       same current label (they are then parts of one label component split by a base
       border) when there is one, else into the most similar adjacent region of any label.
       Similarity: the CIELAB distance of mean colours when ``image`` is given, else the
       longest shared border (then the larger neighbour, then the smaller id). Rounds repeat
       until no region under ``min_area`` has a neighbour; merging is simultaneous within a
       round and chains collapse, so the result does not depend on any visiting order. A
       region that absorbed a fragment keeps the label and base region of its largest part.
       A fragment that is a whole label component under ``min_area`` (a spurious blob, or a
       genuinely small object) joins a region of another label: one answer then decides both.
    4. *Cap*: at most ``max_regions`` ids (``cap_superpixels``: smallest into the neighbour
       with the longest border), ids renumbered densely ``1..N``, 0 unused.

    Parameters
    ----------
    labels
        (H, W) integer current labels (the revised labels where answers exist).
    base
        (H, W) integer base region ids (e.g. :func:`~alc_fiftyone.core.superpixels.felzenszwalb`
        or :func:`~alc_fiftyone.core.superpixels.slic`); need not be dense.
    image
        Optional (H, W, 3) RGB or (H, W) gray image of the same size: used only to choose
        merge targets by colour.
    min_area
        Fragments under this many pixels are merged (0 or 1: no merging).
    ignore_index
        Label value meaning "unlabelled" (None: every value is a class).
    ignore
        ``"own"`` or ``"merge"`` (see step 2).
    max_regions
        Cap on the number of regions (<= 65535, the ``uint16`` range with 0 reserved).

    Returns
    -------
    (H, W) ``uint16`` id map with ids ``1..N``; deterministic for given inputs.
    """
    base = np.asarray(base)
    if base.ndim != 2 or base.dtype.kind not in "iub":
        raise ValueError(f"base must be an (H, W) integer id map, got {base.shape} {base.dtype}")
    labels = _check_labels(labels, base.shape)
    if ignore not in IGNORE_MODES:
        raise ValueError(f"ignore must be one of {IGNORE_MODES}, got {ignore!r}")
    min_area = _check_sizes(min_area, max_regions)
    base_dense, _ = dense_ids(base)  # 0 stays 0: "no superpixel" is one more base value
    lab_idx, values = _dense_labels(labels)
    n_lab = int(values.size)
    ignore_label = -2
    if ignore_index is not None:
        hit = np.flatnonzero(values == ignore_index)
        if hit.size:
            ignore_label = int(hit[0])
    comp, n = _components(base_dense * n_lab + lab_idx)

    # per-component label and base (constant within a component: read at any pixel)
    flat = comp.ravel()
    comp_label = np.full(n + 1, -1, dtype=np.int64)
    comp_label[flat] = lab_idx.ravel()
    comp_base = np.full(n + 1, -1, dtype=np.int64)
    comp_base[flat] = base_dense.ravel()
    sums = _colour_sums(image, labels.shape, flat, n)
    g = _Graph(comp, n, comp_label, comp_base, sums, ignore_label)

    if ignore == "merge" and ignore_label >= 0:
        is_ign = g.label == ignore_label
        src, dst = _best_targets(g, is_ign, "same_base")
        if src.size:
            g.merge(src, dst)

    while min_area > 1 and g.n > 1:
        small = g.sizes < min_area
        small[0] = False
        if not small.any():
            break
        src, dst = _best_targets(g, small, "same_label")
        rest = small.copy()
        rest[src] = False
        src2, dst2 = _best_targets(g, rest, "any")
        src, dst = np.concatenate([src, src2]), np.concatenate([dst, dst2])
        if src.size == 0:
            break  # no small region touches another (e.g. a single region)
        g.merge(src, dst)

    out = g.lut[comp]
    return cap_superpixels(out, max_n=int(max_regions))


def nested_regions(
    parent: Any,
    base: Any,
    *,
    image: Any = None,
    min_area: int = 0,
    max_regions: int = MAX_SUPERPIXELS,
) -> np.ndarray:
    """Regions finer than ``parent`` that nest in it: each lies inside exactly one parent region.

    The 4-connected components of the pair (parent id, base id) are the pieces; a piece under
    ``min_area`` pixels merges into an adjacent piece of the *same parent* (the most similar
    mean colour when ``image`` is given, else the longest shared border; rounds as in
    :func:`label_aware_regions`), never across a parent border, so the nesting holds
    whatever the sizes. A parent region smaller than ``min_area`` stays one piece. When more
    than ``max_regions`` pieces remain, ``min_area`` is doubled until they fit.

    Parameters
    ----------
    parent
        (H, W) integer region ids of the level above (0 is a region like any other).
    base
        (H, W) integer image regions that cut the parents (e.g. a finer SLIC).
    image
        Optional (H, W, 3) RGB or (H, W) gray image: merge targets by colour.
    min_area
        Pieces under this many pixels merge into a sibling (0 or 1: no merging).
    max_regions
        Cap on the number of pieces (<= 65535).

    Returns
    -------
    (H, W) ``uint16`` id map with ids ``1..N``, deterministic, every piece inside one parent
    region.
    """
    parent = np.asarray(parent)
    base = np.asarray(base)
    if parent.ndim != 2 or parent.dtype.kind not in "iub":
        raise ValueError(f"parent must be an (H, W) integer id map, got {parent.shape}")
    if base.shape != parent.shape or base.dtype.kind not in "iub":
        raise ValueError(f"base {base.shape} must be an integer map of the parent's size")
    min_area = _check_sizes(min_area, max_regions)
    parent_dense, n_parent = dense_ids(parent.astype(np.int64) + 1)  # 0 is a parent too
    base_dense, _ = dense_ids(base.astype(np.int64) + 1)
    comp, n = _components(base_dense * (n_parent + 1) + parent_dense)
    flat = comp.ravel()
    comp_parent = np.full(n + 1, -1, dtype=np.int64)
    comp_parent[flat] = parent_dense.ravel()
    comp_base = np.zeros(n + 1, dtype=np.int64)
    sums = _colour_sums(image, parent.shape, flat, n)
    # the parent plays the part of the label: merges stay among siblings ("same_label")
    g = _Graph(comp, n, comp_parent, comp_base, sums, -2)
    area = min_area
    while True:
        while area > 1 and g.n > 1:
            small = g.sizes < area
            small[0] = False
            if not small.any():
                break
            src, dst = _best_targets(g, small, "same_label")
            if src.size == 0:
                break  # every small piece is the only piece of its parent
            g.merge(src, dst)
        if g.n <= int(max_regions):
            break
        area = max(2 * area, 2)
    out = g.lut[comp]
    return out.astype(np.uint16)


# --- per-region context of the current labels (model features on label-aware regions) -------


def label_components(labels: Any, ignore_index: int | None = 255) -> tuple[np.ndarray, int]:
    """4-connected components of each class of ``labels`` (ignore pixels are their own
    components too): an int64 (H, W) map of ids 1..K and K."""
    labels = _check_labels(labels)
    lab_idx, _ = _dense_labels(labels)
    return _components(lab_idx)


def region_label_context(
    regions: Any,
    labels: Any,
    num_classes: int,
    ids: Any = None,
    ignore_index: int | None = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Context of each region's current label among its neighbours, for a class model.

    For every region id in ``ids`` (default: the ids present, ascending): the border-weighted
    distribution of the *neighbouring* regions' majority current labels (``num_classes``
    columns; ignore neighbours left out, all zero when a region has no labelled neighbour).
    Returns ``(ids, context)`` with ``context`` float32 (S, num_classes). A region's own label
    is never an input, so a model trained on these columns cannot echo it.
    """
    regions = np.asarray(regions)
    labels = _check_labels(labels, regions.shape)
    dense, n = dense_ids(regions)
    lab = labels.ravel().astype(np.int64)
    use = (lab >= 0) & (lab < num_classes)
    if ignore_index is not None:
        use &= lab != ignore_index
    counts = np.bincount(
        dense.ravel()[use] * num_classes + lab[use], minlength=(n + 1) * num_classes
    ).reshape(n + 1, num_classes)
    major = np.where(counts.sum(1) > 0, counts.argmax(1), -1)
    adj = adjacency(dense, n).tocoo()
    r, c, w = adj.row, adj.col, adj.data.astype(np.float64)
    ok = major[c] >= 0
    ctx = np.zeros((n + 1, num_classes))
    np.add.at(ctx, (r[ok], major[c[ok]]), w[ok])
    tot = ctx.sum(1, keepdims=True)
    ctx = np.divide(ctx, tot, out=np.zeros_like(ctx), where=tot > 0)
    present = np.unique(regions[regions > 0]).astype(np.int64)
    if ids is None:
        ids = present
    ids = np.asarray(ids, dtype=np.int64)
    # dense index of each requested id (dense keeps the order of ids)
    rows = np.searchsorted(present, ids) + 1
    return ids, ctx[rows].astype(np.float32)
