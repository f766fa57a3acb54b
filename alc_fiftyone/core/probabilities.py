"""The CPU class-probability model, array level: superpixel features and an out-of-fold head.

Without a GPU, P(class | pixel) comes from a small classifier on hand-made features of each
superpixel (colour, texture, position, size and the colour of its surroundings), trained on
the current labels. The classifier must not have seen the image it predicts: a model that has
memorised the noisy labels agrees with them and flags nothing (docs/method.md, trap 8). So images
are split into folds and each image is predicted by the model trained on the other folds
(cross-fitting, as in k-fold cross-validation; scikit-learn's ``cross_val_predict`` with a
``GroupKFold`` over images does the same for one fit).

Feature references: CIELAB colour (``skimage.color.rgb2lab``), Sobel gradient magnitude
(``skimage.filters.sobel``), uniform local binary patterns (Ojala, Pietikainen and Maenpaa,
"Multiresolution gray-scale and rotation invariant texture classification with local binary
patterns", TPAMI 2002; ``skimage.feature.local_binary_pattern``), and region context
features in the spirit of Fulkerson, Vedaldi and Soatto, "Class segmentation and object
localization with superpixel neighborhoods", ICCV 2009. Classifiers are scikit-learn's
(Pedregosa et al., JMLR 2011).

The pixel-level map is :func:`broadcast` of the per-superpixel probabilities; pixels of one
superpixel share one probability vector.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from scipy import sparse

from .pool import thread_map

_LAB = ("L", "a", "b")
# Uniform LBP with P=8 has codes 0..9 (9 = non-uniform); grouped into coarse bins:
# dark spots/ends (0-2), edges (3-5), corners/bright (6-8), non-uniform (9).
_LBP_GROUPS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
_N_LBP = 4

FEATURE_NAMES: list[str] = (
    [f"{c}_mean" for c in _LAB]
    + [f"{c}_std" for c in _LAB]
    + ["grad_mean", "grad_std", "local_std_mean"]
    + [f"lbp_{i}" for i in range(_N_LBP)]
    + ["row", "col", "bbox_h", "bbox_w", "log_area"]
    + [f"ctx_{c}_mean" for c in _LAB]
    + [f"ctx_{c}_diff" for c in _LAB]
)
"""Names of the columns of :func:`superpixel_features`, in order."""

ESTIMATORS = ("lgbm", "hgb", "et", "logreg", "rf")

#: the bins per feature of the tree estimators (``"lgbm"``'s ``max_bin``; ``"hgb"`` sees
#: features quantised to at most this many values, see :func:`quantise_columns`)
TREE_BINS = 63

_FLOOR = 1e-4


def _index_map(superpixels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H, W) row index into ``ids`` for every pixel, -1 for 0 or ids not in ``ids``."""
    sp = np.asarray(superpixels)
    if sp.ndim != 2 or sp.dtype.kind not in "iu":
        raise ValueError(f"superpixels must be an (H, W) integer map, got {sp.shape} {sp.dtype}")
    if sp.dtype.kind == "i" and sp.size and sp.min() < 0:
        raise ValueError("superpixel ids must be >= 0 (0 = no superpixel)")
    ids = np.asarray(ids, dtype=np.int64)
    top = int(max(sp.max(initial=0), ids.max(initial=0)))
    if top > 4 * sp.size + 65536:
        # sparse, very large ids: a sorted search instead of a lookup table over the id range
        rows = np.flatnonzero(ids > 0)
        if rows.size == 0:
            return np.full(sp.shape, -1, dtype=np.int64)
        rows = rows[np.argsort(ids[rows], kind="stable")]
        values = ids[rows]
        flat = sp.astype(np.int64)
        pos = np.minimum(np.searchsorted(values, flat), values.size - 1)
        return np.where((values[pos] == flat) & (flat > 0), rows[pos], -1)
    lut = np.full(top + 1, -1, dtype=np.int64)
    lut[ids[ids > 0]] = np.flatnonzero(ids > 0)
    return lut[sp]


def _image_lab(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lab image (H, W, 3) float64 and gray image in [0, 1] from RGB or gray input."""
    from skimage.color import rgb2lab
    from skimage.util import img_as_float

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        gray = img_as_float(image)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 3:
        rgb = img_as_float(image)
    else:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grayscale image, got {image.shape}")
    if not np.isfinite(rgb).all():
        raise ValueError("the image holds NaN or infinite values")
    rgb = np.clip(rgb, 0.0, 1.0)
    lab = rgb2lab(rgb)
    gray = lab[..., 0] / 100.0
    return lab, gray


def superpixel_features(
    image: np.ndarray, superpixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-superpixel feature vectors (see :data:`FEATURE_NAMES`).

    Returns ``(ids, features)``: the superpixel ids present in ``superpixels`` (0 excluded),
    ascending int64 (S,), and float32 (S, D) features. All features are finite, also for
    constant or grayscale images and maps with a single superpixel. Colour: mean and std of
    CIELAB per superpixel. Texture: mean and std of the Sobel gradient magnitude of L/100,
    mean 3x3 local standard deviation of L/100, and a 4-bin histogram of uniform LBP codes.
    Geometry: centroid (row / H, col / W), bounding box height / H and width / W, log of the
    relative area. Context: the mean Lab colour of the adjacent superpixels weighted by
    shared boundary length (own colour if there is none), and own minus context colour.
    """
    from skimage.feature import local_binary_pattern
    from skimage.filters import sobel

    sp = np.asarray(superpixels)
    image = np.asarray(image)
    if sp.ndim != 2 or sp.dtype.kind not in "iu":
        raise ValueError(f"superpixels must be an (H, W) integer map, got {sp.shape} {sp.dtype}")
    if sp.dtype.kind == "i" and sp.size and sp.min() < 0:
        raise ValueError("superpixel ids must be >= 0 (0 = no superpixel)")
    if image.shape[:2] != sp.shape:
        raise ValueError(f"image {image.shape[:2]} and superpixels {sp.shape} differ in size")
    H, W = sp.shape
    ids = np.unique(sp)
    ids = ids[ids > 0].astype(np.int64)
    S = ids.size
    if S == 0:
        return ids, np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    idx = _index_map(sp, ids)
    flat = idx.ravel()
    inside = flat >= 0
    sidx = flat[inside]
    count = np.bincount(sidx, minlength=S).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(sidx, weights=values.ravel()[inside], minlength=S) / count

    def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = mean(values)
        m2 = mean(values * values)
        return m, np.sqrt(np.maximum(m2 - m * m, 0.0))

    lab, gray = _image_lab(image)
    cols: list[np.ndarray] = []
    lab_mean = np.empty((S, 3))
    lab_std = np.empty((S, 3))
    for c in range(3):
        lab_mean[:, c], lab_std[:, c] = mean_std(lab[..., c])
    cols += [lab_mean, lab_std]

    grad = sobel(gray)
    g_mean, g_std = mean_std(grad)
    from scipy.ndimage import uniform_filter

    local_mean = uniform_filter(gray, size=3, mode="reflect")
    local_sq = uniform_filter(gray * gray, size=3, mode="reflect")
    local_std = np.sqrt(np.maximum(local_sq - local_mean * local_mean, 0.0))
    cols.append(np.stack([g_mean, g_std, mean(local_std)], axis=1))

    gray8 = np.round(gray * 255.0).astype(np.uint8)
    lbp = local_binary_pattern(gray8, P=8, R=1, method="uniform").astype(np.int64)
    group = _LBP_GROUPS[np.clip(lbp.ravel()[inside], 0, 9)]
    hist = np.bincount(sidx * _N_LBP + group, minlength=S * _N_LBP).reshape(S, _N_LBP)
    cols.append(hist / count[:, None])

    rows, colsx = np.divmod(np.flatnonzero(inside), W)
    row_c = np.bincount(sidx, weights=rows, minlength=S) / count / H
    col_c = np.bincount(sidx, weights=colsx, minlength=S) / count / W
    rmin, rmax = _extent(sidx, rows, S)
    cmin, cmax = _extent(sidx, colsx, S)
    bbox_h = (rmax - rmin + 1) / H
    bbox_w = (cmax - cmin + 1) / W
    log_area = np.log(count / (H * W))
    cols.append(np.stack([row_c, col_c, bbox_h, bbox_w, log_area], axis=1))

    adj = _adjacency(idx, S)
    weight = np.asarray(adj.sum(axis=1)).ravel()
    ctx = adj @ lab_mean
    has = weight > 0
    ctx[has] /= weight[has, None]
    ctx[~has] = lab_mean[~has]
    cols += [ctx, lab_mean - ctx]

    features = np.concatenate(cols, axis=1).astype(np.float32)
    return ids, np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)


def _extent(sidx: np.ndarray, coord: np.ndarray, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``coord`` per superpixel index (vectorised, no Python loop)."""
    lo = np.full(S, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(S, -1, dtype=np.int64)
    np.minimum.at(lo, sidx, coord)
    np.maximum.at(hi, sidx, coord)
    return lo.astype(np.float64), hi.astype(np.float64)


def _adjacency(idx: np.ndarray, S: int) -> sparse.csr_matrix:
    """(S, S) shared-boundary lengths (4-connected pixel pairs) between superpixel indices."""
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    keep = (a != b) & (a >= 0) & (b >= 0)
    a, b = a[keep], b[keep]
    data = np.ones(2 * a.size)
    return sparse.coo_matrix(
        (data, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(S, S)
    ).tocsr()


def superpixel_targets(
    labels: np.ndarray,
    superpixels: np.ndarray,
    ids: np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Majority current label of each superpixel in ``ids`` and its purity.

    Returns ``(targets, purity)``: int64 (S,) majority label over the superpixel's non-ignore
    pixels (-1 where all its pixels are ignore or it has no pixel; ties go to the smaller
    class) and float64 (S,) share of those non-ignore pixels that carry it (0 where -1).
    """
    labels = np.asarray(labels)
    sp = np.asarray(superpixels)
    if labels.shape != sp.shape:
        raise ValueError(f"labels {labels.shape} and superpixels {sp.shape} differ in size")
    ids = np.asarray(ids, dtype=np.int64)
    S = ids.size
    idx = _index_map(sp, ids).ravel()
    lab = labels.ravel().astype(np.int64)
    use = idx >= 0
    if ignore_index is not None:
        use &= lab != ignore_index
    bad = use & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        raise ValueError(
            f"labels have values outside 0..{num_classes - 1} that are not the ignore value "
            f"{ignore_index}: {np.unique(lab[bad])[:10].tolist()}"
        )
    counts = np.bincount(idx[use] * num_classes + lab[use], minlength=S * num_classes).reshape(
        S, num_classes
    )
    total = counts.sum(axis=1)
    targets = counts.argmax(axis=1).astype(np.int64)
    best = counts[np.arange(S), targets]
    purity = np.divide(best, total, out=np.zeros(S), where=total > 0)
    targets[total == 0] = -1
    return targets, purity


def broadcast(
    sp_probs: np.ndarray, ids: np.ndarray, superpixels: np.ndarray, num_classes: int
) -> np.ndarray:
    """(S, C) superpixel probabilities -> (C, H, W) float32 pixel map.

    Pixels with superpixel 0, or an id not in ``ids``, get the uniform 1/C.
    """
    sp_probs = np.asarray(sp_probs, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if sp_probs.shape != (ids.size, num_classes):
        raise ValueError(
            f"sp_probs must have shape ({ids.size}, {num_classes}), got {sp_probs.shape}"
        )
    idx = _index_map(superpixels, ids)
    table = np.empty((num_classes, ids.size + 1), dtype=np.float32)
    table[:, :-1] = sp_probs.T
    table[:, -1] = 1.0 / num_classes
    # index -1 (no superpixel) picks the last, uniform column; np.take along the columns
    # returns a C-contiguous (C, H, W) array (``table[:, idx]`` does not, and the
    # acquisition would copy it again), in a tenth of the time
    return np.take(table, idx, axis=1)


def _make_estimator(estimator: Any, seed: int) -> Any:
    from sklearn.base import clone

    if not isinstance(estimator, str):
        return clone(estimator)
    if estimator == "lgbm":
        from lightgbm import LGBMClassifier

        # the settings of "hgb" below (100 rounds of 15 leaves, L2 1.0), histograms of
        # TREE_BINS bins and half the features per tree: by measurement (BENCHMARKS.md,
        # "Round speed") as accurate out of fold as "hgb" on CamVid, 10-30x faster to fit
        return LGBMClassifier(
            n_estimators=100,
            learning_rate=0.1,
            num_leaves=15,
            reg_lambda=1.0,
            min_child_samples=20,
            min_child_weight=1e-3,
            max_bin=TREE_BINS,
            colsample_bytree=0.5,
            n_jobs=1,
            random_state=seed,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
    if estimator == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
    if estimator == "et":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(
            n_estimators=50,
            min_samples_leaf=3,
            max_features="sqrt",
            n_jobs=1,
            random_state=seed,
        )
    if estimator == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if estimator == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def _finish(probs: np.ndarray) -> np.ndarray:
    """Floor at 1e-4 and renormalise rows so every probability is > 0 and rows sum to 1."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)
    probs = np.maximum(probs, 0.0)
    sums = probs.sum(axis=1, keepdims=True)
    probs = np.divide(probs, sums, out=np.full_like(probs, 1.0 / probs.shape[1]), where=sums > 0)
    probs = probs + _FLOOR
    return probs / probs.sum(axis=1, keepdims=True)


class ColumnQuantiser:
    """Maps every feature column of more than ``max_values`` distinct values to at most that
    many: each value becomes the lower edge of its bin, the edges being the unweighted
    quantiles of the column in :meth:`fit`; other columns pass unchanged.

    HistGradientBoosting bins each feature before it grows trees; with sample weights and
    more distinct values than bins it computes every bin edge by a separate weighted
    percentile (scikit-learn's ``_weighted_percentile``: 30,000 calls and half of a fit's
    time on 5 folds of 24 features). Quantised columns take its cheap path (the midpoints of
    the distinct values). The edges depend on the features only, never on the labels, so
    fitting them once on all images before the folds leaks nothing between folds; the rows
    predicted later are quantised with the same edges.
    """

    def __init__(self, max_values: int = 255) -> None:
        self.max_values = int(max_values)
        self.edges_: list[np.ndarray | None] = []

    def fit(self, features: np.ndarray) -> ColumnQuantiser:
        x = np.asarray(features, dtype=np.float32)
        levels = np.linspace(0.0, 1.0, self.max_values + 1)[1:-1]
        self.edges_ = []
        for j in range(x.shape[1] if x.ndim == 2 else 0):
            col = x[:, j]
            if np.unique(col).size <= self.max_values:
                self.edges_.append(None)
                continue
            edges = np.unique(np.quantile(col, levels).astype(np.float32))
            self.edges_.append(np.concatenate([[col.min()], edges]).astype(np.float32))
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or not any(e is not None for e in self.edges_):
            return x
        out = x.copy()
        for j, reps in enumerate(self.edges_):
            if reps is not None:
                idx = np.searchsorted(reps[1:], x[:, j], side="right")
                out[:, j] = reps[idx]
        return out


class _Constant:
    """A fallback model predicting the same distribution for every row."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(features), 1))


class _Fitted:
    """A fitted scikit-learn classifier whose columns are mapped to all classes."""

    def __init__(self, model: Any, num_classes: int) -> None:
        self.model = model
        self.num_classes = num_classes
        self.classes = np.asarray(model.classes_, dtype=np.int64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = np.zeros((len(features), self.num_classes))
        if len(features):
            out[:, self.classes] = self.model.predict_proba(features)
        return out


class OutOfFoldClassifier:
    """Per-superpixel classifier trained out of fold by image (k-fold cross-fitting).

    With ``fold_by="blocks"`` images are split into ``min(n_folds, n_images)`` contiguous blocks
    in the order given (consecutive video frames stay together). With ``"random"``, images
    are assigned to ``min(n_folds, n_images)`` folds by a permutation seeded with
    ``seed`` (image ``perm[i]`` goes to fold ``i % k``); fold ``f``'s model is trained on the
    rows of all images outside fold ``f`` and is the only one that predicts images of fold
    ``f``, so no image is ever predicted by a model that saw its labels. With a single fold
    (one image, or ``n_folds=1``) there is nothing to hold out: the one model is trained and
    evaluated on the same images (in-sample, ``in_sample`` is True) and will echo their labels.

    ``estimator``: ``"lgbm"`` (default: LightGBM's gradient boosting, Ke et al., NeurIPS 2017,
    with the settings of ``"hgb"``, histograms of :data:`TREE_BINS` bins and half of the
    features per tree, one thread, deterministic; as accurate out of fold as ``"hgb"`` and
    10-30x faster to fit, BENCHMARKS.md "Round speed"), ``"hgb"``
    (HistGradientBoostingClassifier: 100 iterations, 15 leaves, L2 regularisation 1.0, no
    early stopping, seeded; without the L2 term rare classes got extreme leaf values and
    out-of-fold accuracy on CamVid fell from 0.97 to 0.61; its features are quantised once
    by :class:`ColumnQuantiser` so that its binning with sample weights stays cheap), ``"et"``
    (ExtraTreesClassifier, Geurts, Ernst and Wehenkel, Machine Learning 2006: 50 trees,
    ``max_features="sqrt"``, at least 3 rows a leaf, seeded; on the ~10x more, smaller
    regions of a hierarchy's finest level it fitted noisy labels less than boosting and 5x
    faster: docs/method.md, "Regions at several sizes"),
    ``"logreg"`` (StandardScaler + LogisticRegression), ``"rf"`` (RandomForestClassifier, 100
    trees, ``n_jobs=1``), or any scikit-learn classifier instance, cloned per fold. Sample
    weights are rescaled to mean 1 within each fold's training rows, so the regularisation
    does not depend on their unit. ``n_threads`` caps the OpenMP/BLAS threads during fit and
    predict (``threadpoolctl``); the default 1 keeps results reproducible and avoids the
    slowdown of oversubscribed cores (HistGradientBoosting took 10x longer with all threads
    on a busy 2-core machine); ``None`` leaves the libraries' defaults. ``fold_threads``: the
    folds fitted side by side, each in its own thread (None: one per CPU,
    :func:`alc_fiftyone.core.pool.default_workers`; 1: one after the other); the models do
    not depend on it. ``estimator_params`` replace settings of a named estimator (e.g.
    ``{"n_estimators": 50, "learning_rate": 0.2}`` for ``"lgbm"``). A fold whose training rows number fewer than ``min_samples`` or hold a single
    class gets a constant model: the weighted class frequencies of its rows (uniform when it
    has none). Probabilities always have ``num_classes`` columns; classes absent from a fold's
    training rows get 0 before a floor of 1e-4 and renormalisation, so all are > 0 and rows
    sum to 1. Calibration is left to the caller.
    """

    def __init__(
        self,
        num_classes: int,
        n_folds: int = 5,
        estimator: Any = "lgbm",
        seed: int = 0,
        min_samples: int = 10,
        n_threads: int | None = 1,
        fold_by: str = "random",
        fold_threads: int | None = None,
        estimator_params: dict | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {n_folds}")
        if isinstance(estimator, str) and estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        self.num_classes = num_classes
        self.n_folds = n_folds
        self.estimator = estimator
        self.seed = seed
        self.min_samples = min_samples
        self.n_threads = n_threads
        self.fold_threads = fold_threads
        self.estimator_params = dict(estimator_params or {})
        if fold_by not in ("random", "blocks"):
            raise ValueError("fold_by must be 'random' or 'blocks'")
        self.fold_by = fold_by
        self.folds_: np.ndarray | None = None
        self.models_: list[Any] = []
        self.quantiser_: ColumnQuantiser | None = None
        self.n_features_: int | None = None

    @property
    def in_sample(self) -> bool:
        """True when predictions come from a model trained on the same images (one fold)."""
        return len(self.models_) == 1

    def fit(
        self,
        groups: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
        progress: Any = None,
    ) -> OutOfFoldClassifier:
        """Train one model per fold; ``groups`` has one ``(features, targets, weight)`` per image.

        ``targets`` of -1 are skipped; ``weight`` (e.g. size x purity) may be None (all 1).
        ``progress(done, total, desc)`` is called as each fold's model is trained.
        """
        feats, targs, weights = [], [], []
        dim: int | None = None
        for i, group in enumerate(groups):
            if len(group) != 3:
                raise ValueError(f"image {i}: expected (features, targets, weight)")
            f = np.asarray(group[0], dtype=np.float32)
            t = np.asarray(group[1], dtype=np.int64)
            w = (
                np.ones(len(t), dtype=np.float64)
                if group[2] is None
                else np.asarray(group[2], dtype=np.float64)
            )
            if f.ndim != 2 or t.shape != (f.shape[0],) or w.shape != t.shape:
                raise ValueError(
                    f"image {i}: features {f.shape}, targets {t.shape} and weight {w.shape} "
                    "do not describe the same superpixels"
                )
            if dim is None:
                dim = f.shape[1]
            elif f.shape[1] != dim and f.shape[0]:
                raise ValueError(f"image {i}: {f.shape[1]} features, expected {dim}")
            if ((t < -1) | (t >= self.num_classes)).any():
                raise ValueError(f"image {i}: targets must be -1 or in 0..{self.num_classes - 1}")
            if (w < 0).any() or not np.isfinite(w).all():
                raise ValueError(f"image {i}: weights must be finite and >= 0")
            keep = (t >= 0) & (w > 0)
            feats.append(f[keep])
            targs.append(t[keep])
            weights.append(w[keep])
        self.n_features_ = dim
        self.quantiser_ = None
        if self.estimator == "hgb" and feats:
            # bins from the features alone, once for all folds (see ColumnQuantiser)
            self.quantiser_ = ColumnQuantiser().fit(np.concatenate(feats))
            feats = [self.quantiser_.transform(f) for f in feats]
        n_images = len(groups)
        k = min(self.n_folds, n_images)
        if self.fold_by == "blocks":
            # contiguous blocks in the given order: neighbouring images (video frames, bursts)
            # share a fold, so no model is trained on a near-duplicate of what it predicts
            folds = (np.arange(n_images) * max(k, 1)) // max(n_images, 1)
        else:
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(n_images)
            folds = np.empty(n_images, dtype=np.int64)
            folds[perm] = np.arange(n_images) % max(k, 1)
        self.folds_ = folds
        self.models_ = []
        if progress is not None:
            progress(0, k, "fitting the model (folds)")

        def one(fold: int) -> Any:
            train = [i for i in range(n_images) if k == 1 or folds[i] != fold]
            return self._fit_one(feats, targs, weights, train, fold)

        # the folds are independent: fitted side by side in threads (LightGBM and the
        # scikit-learn trees release the GIL while they train), each model on one thread, so
        # the models are the same as one after the other
        with self._threads():
            for fold, model in enumerate(thread_map(one, range(k), self.fold_threads, ahead=1)):
                self.models_.append(model)
                if progress is not None:
                    progress(fold + 1, k, "fitting the model (folds)")
        return self

    def _threads(self) -> Any:
        if self.n_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.n_threads)

    def _fit_one(
        self,
        feats: list[np.ndarray],
        targs: list[np.ndarray],
        weights: list[np.ndarray],
        train: list[int],
        fold: int,
    ) -> Any:
        C = self.num_classes
        if not train:
            return _Constant(np.full(C, 1.0 / C))
        x = np.concatenate([feats[i] for i in train])
        y = np.concatenate([targs[i] for i in train])
        w = np.concatenate([weights[i] for i in train])
        if y.size == 0:
            return _Constant(np.full(C, 1.0 / C))
        prior = np.bincount(y, weights=w, minlength=C)
        prior = prior / prior.sum()
        if y.size < self.min_samples or np.unique(y).size < 2:
            return _Constant(prior)
        model = _make_estimator(self.estimator, self.seed + fold)
        if self.estimator_params and isinstance(self.estimator, str):
            model.set_params(**self.estimator_params)
        model.fit(x, y, **_weight_kwargs(model, w / w.mean()))
        return _Fitted(model, C)

    def _check(self, features: np.ndarray) -> np.ndarray:
        if self.folds_ is None:
            raise RuntimeError("OutOfFoldClassifier is not fitted; call fit() first")
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2 or (
            self.n_features_ is not None and f.shape[0] and f.shape[1] != self.n_features_
        ):
            raise ValueError(f"features must be (S, {self.n_features_}), got {f.shape}")
        return f if self.quantiser_ is None else self.quantiser_.transform(f)

    def predict_proba(self, image_index: int, features: np.ndarray) -> np.ndarray:
        """(S, C) probabilities for image ``image_index`` of ``fit`` from its held-out model."""
        f = self._check(features)
        n_images = len(self.folds_)
        if not 0 <= image_index < n_images:
            raise IndexError(f"image_index {image_index} out of range for {n_images} images")
        if f.shape[0] == 0:
            return np.zeros((0, self.num_classes))
        model = self.models_[0] if self.in_sample else self.models_[self.folds_[image_index]]
        with self._threads():
            return _finish(model.predict(f))

    def predict_proba_new(self, features: np.ndarray) -> np.ndarray:
        """(S, C) probabilities for an image not in ``fit``: the mean of the fold models."""
        f = self._check(features)
        if f.shape[0] == 0:
            return np.zeros((0, self.num_classes))
        if not self.models_:
            return _finish(np.ones((f.shape[0], self.num_classes)))
        with self._threads():
            return _finish(np.mean([m.predict(f) for m in self.models_], axis=0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of ``probs`` re-tempered: softmax(log p / T), floored like every prediction."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-12)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return _finish(p / p.sum(axis=1, keepdims=True))


def fit_temperature(
    probs: list[np.ndarray],
    targets: list[np.ndarray],
    weights: list[np.ndarray | None] | None = None,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017)
    of out-of-fold probabilities: the T minimising the weighted negative log-likelihood of
    ``targets`` (-1 skipped) under softmax(log p / T). Returns 1.0 when there is nothing to
    fit."""
    from scipy.optimize import minimize_scalar

    weights = weights or [None] * len(probs)
    rows, ts, ws = [], [], []
    for p, t, w in zip(probs, targets, weights):
        t = np.asarray(t, dtype=np.int64)
        keep = t >= 0
        if not keep.any():
            continue
        rows.append(np.log(np.maximum(np.asarray(p, dtype=np.float64)[keep], 1e-12)))
        ts.append(t[keep])
        ws.append(np.ones(keep.sum()) if w is None else np.asarray(w, dtype=np.float64)[keep])
    if not rows:
        return 1.0
    logp, t, w = np.concatenate(rows), np.concatenate(ts), np.concatenate(ws)
    if w.sum() <= 0:
        return 1.0
    w = w / w.sum()
    n = np.arange(len(t))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(-(w * (z[n, t] - lse)).sum())

    res = minimize_scalar(nll, bounds=np.log(bounds), method="bounded")
    return float(np.exp(res.x)) if res.success else 1.0


def _weight_kwargs(model: Any, w: np.ndarray) -> dict[str, np.ndarray]:
    """``sample_weight`` keyword for a classifier or a pipeline ending in one."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return {f"{model.steps[-1][0]}__sample_weight": w}
    return {"sample_weight": w}
