"""The CPU baseline model (``model="features"``): per-superpixel colour, texture, position
and context features and a scikit-learn classifier trained out of fold by image (k-fold),
probabilities broadcast to the superpixel's pixels."""

from __future__ import annotations

import numpy as np

from ..core import probabilities as cp
from ..errors import ALCError
from ..progress import track
from ..store.files import check_same_size, read_image, read_segmentation
from .base import FitContext, ProbabilityModel

#: Default cap on the rows (labelled superpixels or fine regions) the features model trains
#: on: gradient boosting's time grows with them while its accuracy has long levelled off (on
#: the fine regions of 100 CamVid frames, 62k rows of 48 features, a seeded sample of 20k
#: rows per fold was as accurate out of fold as all of them at a third of the time).
MAX_TRAIN_ROWS = 25_000
PREDICT_CHUNK_ROWS = 65_536


class FeatureModel(ProbabilityModel):
    """CPU baseline: superpixel features + a classifier, out of fold by image.

    ``max_train_rows`` (default :data:`MAX_TRAIN_ROWS`, ``None``: no cap) bounds the training
    set on large collections: above it, a seeded uniform sample of that many labelled rows is
    trained on (and calibrated on); every image is still predicted by the fold model that did
    not see it. ``describe()`` then records ``train_rows`` and ``train_rows_available``.
    """

    name = "features"

    def __init__(
        self,
        n_folds: int = 5,
        estimator: str = "lgbm",
        seed: int = 0,
        fold_by: str = "blocks",
        granularity: str = "superpixel",
        fine_factor: float = 2.0,
        fine_compactness: float = 10.0,
        calibrate: str | None = None,
        max_train_rows: int | None = MAX_TRAIN_ROWS,
    ):
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if fine_factor <= 0:
            raise ValueError(f"fine_factor must be > 0, got {fine_factor}")
        if calibrate not in (None, "temperature"):
            raise ValueError(f"calibrate must be None or 'temperature', got {calibrate!r}")
        if max_train_rows is not None and max_train_rows < 1:
            raise ValueError(f"max_train_rows must be >= 1 or None, got {max_train_rows}")
        self.max_train_rows = max_train_rows
        self.train_rows: tuple[int, int] | None = None  # (rows used, rows available), last fit
        self.calibrate = calibrate
        self.temperature = 1.0
        self.granularity = granularity
        self.fine_factor = float(fine_factor)
        self.fine_compactness = float(fine_compactness)
        self.fold_by = fold_by
        self.n_folds = n_folds
        self.estimator = estimator
        self.seed = seed
        self._index: dict[str, int] = {}
        self._ids: list[np.ndarray] = []
        self._features: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []  # out-of-fold (S, C) of each fitted image
        self._clf: cp.OutOfFoldClassifier | None = None
        self._num_classes = 0
        # (sample id, superpixel mask path) -> (regions map or None, ids, features)
        self._cache: dict[tuple[str, str], tuple[np.ndarray | None, np.ndarray, np.ndarray]] = {}
        self._regions: list[np.ndarray | None] = []

    @property
    def fine(self) -> bool:
        return self.granularity == "fine"

    def _compute_features(self, image: np.ndarray, sp: np.ndarray):
        """(regions or None, ids, features) of one image: on the query superpixels, or with
        ``granularity="fine"`` on their intersection with a finer SLIC (see
        :func:`fine_regions`), each fine region's features followed by its parent's."""
        if not self.fine:
            return (None, *cp.superpixel_features(image, sp))
        regions, parent = fine_regions(image, sp, self.fine_factor, self.fine_compactness)
        ids, feats = cp.superpixel_features(image, regions)
        pids, pfeats = cp.superpixel_features(image, sp)
        rows = np.searchsorted(pids, parent[ids])
        return regions, ids, np.concatenate([feats, pfeats[rows]], axis=1)

    def fit(self, ctx: FitContext) -> None:
        self._num_classes = ctx.num_classes
        self._index, self._ids, self._features, self._regions = {}, [], [], []
        groups = []
        samples = ctx.samples
        for sample in track(samples.iter_samples(), len(samples), ctx.progress, "features"):
            sp = read_segmentation(sample, ctx.superpixel_field)
            labels = ctx.read_labels(sample)
            check_same_size(sample, "the labels", labels.shape, "the superpixel map", sp.shape)
            key = (sample.id, sample[ctx.superpixel_field].mask_path)
            cached = self._cache.get(key)
            if cached is None:
                image = read_image(sample)
                check_same_size(sample, "the image", image.shape, "the superpixel map", sp.shape)
                # features (and fine regions) depend on the image and superpixels only: kept
                # across rounds, never written to the dataset
                cached = self._cache[key] = self._compute_features(image, sp)
            regions, ids, feats = cached
            rmap = sp if regions is None else regions
            targets, purity = cp.superpixel_targets(
                labels, rmap, ids, ctx.num_classes, ignore_index=ctx.ignore_index
            )
            sizes = np.bincount(rmap.ravel(), minlength=int(ids.max()) + 1 if len(ids) else 1)
            weight = np.sqrt(sizes[ids].astype(np.float64)) * purity if len(ids) else None
            self._index[sample.id] = len(self._ids)
            self._regions.append(regions)
            self._ids.append(ids)
            self._features.append(feats)
            groups.append((feats, targets, weight))
        groups = self._cap_rows(groups)
        self._clf = cp.OutOfFoldClassifier(
            ctx.num_classes,
            n_folds=self.n_folds,
            estimator=self.estimator,
            seed=self.seed,
            fold_by=self.fold_by,
        ).fit(groups, progress=ctx.progress)
        self._probs = self._predict_fitted()
        self.temperature = 1.0
        if self.calibrate == "temperature":
            self.temperature = cp.fit_temperature(
                self._probs, [g[1] for g in groups], [g[2] for g in groups]
            )

    def _cap_rows(self, groups: list) -> list:
        """At most ``max_train_rows`` training rows: above the cap, a seeded uniform sample of
        the labelled rows keeps its weight and the others get weight 0 (left out of training,
        still predicted). Folds stay by image, so predictions stay out of fold."""
        usable = [(t >= 0) & (w > 0) if w is not None else t >= 0 for _, t, w in groups]
        total = int(sum(int(u.sum()) for u in usable))
        cap = self.max_train_rows
        if cap is None or total <= cap:
            self.train_rows = (total, total)
            return groups
        rng = np.random.default_rng(self.seed)
        chosen = np.zeros(total, dtype=bool)
        chosen[rng.choice(total, size=cap, replace=False)] = True
        out, start = [], 0
        for (feats, targets, weight), use in zip(groups, usable):
            n = int(use.sum())
            keep = np.zeros(len(targets), dtype=bool)
            keep[np.flatnonzero(use)[chosen[start : start + n]]] = True
            start += n
            w = np.ones(len(targets)) if weight is None else weight
            out.append((feats, targets, np.where(keep, w, 0.0)))
        self.train_rows = (cap, total)
        return out

    def _predict_fitted(self) -> list[np.ndarray]:
        """Out-of-fold probabilities of every fitted image's regions, one classifier call per
        fold and chunk of rows instead of one per image (each call has a fixed cost of about
        a millisecond, which dominated scoring on small images). Rows are predicted
        independently, so the result equals the per-image calls."""
        clf = self._clf
        out: list[np.ndarray] = [np.zeros((0, self._num_classes))] * len(self._features)
        folds = np.asarray(clf.folds_)
        for fold in np.unique(folds):
            members = np.flatnonzero(folds == fold)
            chunk: list[int] = []
            rows = 0
            for j, i in enumerate(members):
                chunk.append(int(i))
                rows += len(self._features[i])
                if rows >= PREDICT_CHUNK_ROWS or j == len(members) - 1:
                    feats = np.concatenate([self._features[k] for k in chunk])
                    probs = clf.predict_proba(chunk[0], feats)
                    bounds = np.cumsum([len(self._features[k]) for k in chunk])[:-1]
                    for k, p in zip(chunk, np.split(probs, bounds)):
                        out[k] = p
                    chunk, rows = [], 0
        return out

    def predict(self, sample, superpixels, image=None):
        if self._clf is None:
            raise ALCError("FeatureModel.predict called before fit")
        i = self._index.get(sample.id)
        regions = None
        if i is not None:
            regions = self._regions[i]
            if regions is not None and regions.shape != superpixels.shape:
                i = None  # the superpixels changed since fit: recompute below
        if i is None:
            if image is None:
                image = read_image(sample)
            regions, ids, feats = self._compute_features(image, superpixels)
            sp_probs = self._clf.predict_proba_new(feats)
        else:
            ids, sp_probs = self._ids[i], self._probs[i]
        if self.temperature != 1.0:
            sp_probs = cp.apply_temperature(sp_probs, self.temperature)
        rmap = superpixels if regions is None else np.where(superpixels > 0, regions, 0)
        return cp.broadcast(sp_probs, ids, rmap, self._num_classes)

    def describe(self):
        return {
            "name": self.name,
            "estimator": self.estimator,
            "n_folds": self.n_folds,
            "fold_by": self.fold_by,
            "granularity": self.granularity,
            **(
                {"calibrate": self.calibrate, "temperature": round(self.temperature, 4)}
                if self.calibrate
                else {}
            ),
            **(
                {"fine_factor": self.fine_factor, "fine_compactness": self.fine_compactness}
                if self.fine
                else {}
            ),
            **(
                {"train_rows": self.train_rows[0], "train_rows_available": self.train_rows[1]}
                if self.train_rows and self.train_rows[0] < self.train_rows[1]
                else {}
            ),
        }


GRANULARITIES = ("superpixel", "fine")


def fine_regions(
    image: np.ndarray, superpixels: np.ndarray, factor: float = 2.0, compactness: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Regions finer than the query superpixels, nested inside them.

    SLIC (Achanta et al., TPAMI 2012) with ``factor`` times as many segments as the image has
    query superpixels, intersected with the query map, so that every fine region lies inside
    one query superpixel. Returns ``(regions, parent)``: an (H, W) int32 map (0 where the
    query map is 0, else 1..R) and an int64 (R + 1,) array giving each fine id its query
    superpixel id (``parent[0] = 0``).
    """
    from ..core.superpixels import slic

    sp = np.asarray(superpixels)
    n_query = int(np.count_nonzero(np.bincount(sp.ravel())[1:]))
    if n_query == 0:
        return np.zeros(sp.shape, dtype=np.int32), np.zeros(1, dtype=np.int64)
    fine = slic(image, n_segments=max(1, round(factor * n_query)), compactness=compactness)
    key = sp.astype(np.int64) * (int(fine.max()) + 1) + fine.astype(np.int64)
    key[sp == 0] = 0
    uniq, inv = np.unique(key.ravel(), return_inverse=True)
    offset = 0 if uniq[0] == 0 else 1
    regions = (inv.reshape(sp.shape) + offset).astype(np.int32)
    parent = np.zeros(len(uniq) + offset, dtype=np.int64)
    parent[offset:] = uniq // (int(fine.max()) + 1)
    return regions, parent
