"""The CPU baseline model (``model="features"``): per-superpixel colour, texture, position
and context features and a gradient-boosted classifier trained out of fold by image (k-fold),
probabilities broadcast to the superpixel's pixels.

The features of a region map depend on the image and the map alone, so they are computed
once per (image, region map) and kept: in this process (for every model instance, so that the
next ranking of the same regions reads them), and on disk beside the map's mask file (a
sidecar, :mod:`alc_fiftyone.store.sidecars`), so that another process or a worker reads them
too. A model that combines two maps (``granularity="fine"``: each fine region's features and
its parent's) reuses the parent map's features. Images whose features are missing are
computed in worker processes (:mod:`alc_fiftyone.core.pool`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

from ..core import probabilities as cp
from ..core.pool import run_tasks, thread_map
from ..errors import ALCError
from ..store.files import check_same_size, read_image, read_png_array, read_segmentation
from ..store.sidecars import read_sidecar, write_sidecar
from .base import FitContext, ProbabilityModel

#: Default cap on the rows (labelled superpixels or fine regions) the features model trains
#: on: gradient boosting's time grows with them while its accuracy has long levelled off (on
#: the fine regions of 100 CamVid frames, 62k rows of 48 features, a seeded sample of 20k
#: rows per fold was as accurate out of fold as all of them at a third of the time).
MAX_TRAIN_ROWS = 25_000
PREDICT_CHUNK_ROWS = 65_536
#: the classifier of the features model (``estimator=``)
DEFAULT_ESTIMATOR = "lgbm"
#: the row cap of a finer level's model (:meth:`FeatureModel.for_level`), whose regions are
#: ~10x more (100 CamVid frames: ~38,000); the setting measured in BENCHMARKS.md
LEVEL_TRAIN_ROWS = 100_000
#: the settings of the default classifier on a finer level, whose ~10x more rows make each
#: fold's model the round's largest fit: half the boosting rounds at twice the learning rate
#: (a fold's fit takes less than half the time; 3 folds instead of 5 cost up to 2.5 mIoU in
#: the first rounds on weak horse labels, so the folds stay the top model's: docs/method.md)
LEVEL_ESTIMATOR_PARAMS = {"n_estimators": 50, "learning_rate": 0.2}
#: the version of what :func:`region_features` computes: bumped whenever the features or the
#: fine regions change, so that sidecars of an older version are computed again
FEATURE_VERSION = 1
#: the features kept in this process (all model instances), least recently used dropped
MEMORY_CACHE_BYTES = 512 * 2**20


class FeatureModel(ProbabilityModel):
    """CPU baseline: superpixel features + a classifier, out of fold by image.

    ``max_train_rows`` (default :data:`MAX_TRAIN_ROWS`, ``None``: no cap) bounds the training
    set on large collections: above it, a seeded uniform sample of that many labelled rows is
    trained on (and calibrated on); every image is still predicted by the fold model that did
    not see it. ``describe()`` then records ``train_rows`` and ``train_rows_available``.

    ``workers``: the processes computing the features of images that have none kept yet
    (None: one per CPU, :func:`alc_fiftyone.core.pool.default_workers`; 1: in this process).
    """

    name = "features"
    thread_safe = True  # predict reads what fit left, and computes the rest from arrays

    def __init__(
        self,
        n_folds: int = 5,
        estimator: str = DEFAULT_ESTIMATOR,
        seed: int = 0,
        fold_by: str = "blocks",
        granularity: str = "superpixel",
        fine_factor: float = 2.0,
        fine_compactness: float = 10.0,
        calibrate: str | None = None,
        max_train_rows: int | None = MAX_TRAIN_ROWS,
        workers: int | None = None,
        estimator_params: dict | None = None,
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
        self.workers = workers
        self._field: str | None = None
        self.train_rows: tuple[int, int] | None = None  # (rows used, rows available), last fit
        self.calibrate = calibrate
        self.temperature = 1.0
        self.granularity = granularity
        self.fine_factor = float(fine_factor)
        self.fine_compactness = float(fine_compactness)
        self.fold_by = fold_by
        self.n_folds = n_folds
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {})
        self.seed = seed
        self._index: dict[str, int] = {}
        self._ids: list[np.ndarray] = []
        self._features: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []  # out-of-fold (S, C) of each fitted image
        self._clf: cp.OutOfFoldClassifier | None = None
        self._num_classes = 0
        # (sample id, superpixel mask path) -> (regions map or None, ids, features): the
        # maps stored inline (no mask file), which the process-wide cache cannot key
        self._cache: dict[tuple[str, str], tuple[np.ndarray | None, np.ndarray, np.ndarray]] = {}
        self._regions: list[np.ndarray | None] = []

    @property
    def fine(self) -> bool:
        return self.granularity == "fine"

    @property
    def _fine_params(self) -> tuple[float, float] | None:
        return (self.fine_factor, self.fine_compactness) if self.fine else None

    def _compute_features(self, image: np.ndarray, sp: np.ndarray):
        """(regions or None, ids, features) of one image: on the query superpixels, or with
        ``granularity="fine"`` on their intersection with a finer SLIC (see
        :func:`fine_regions`), each fine region's features followed by its parent's."""
        return _unpack(_features_of_arrays(image, sp, self._fine_params))

    def _kept_features(self, samples, field: str, progress) -> dict:
        """(regions or None, ids, features) by sample id of every sample whose regions are a
        mask file: kept ones read, the others computed in worker processes. The failures
        (a SampleError naming the sample) are raised after every other image is done and
        kept, the first sample's first."""
        sids, paths, masks = samples.values(["id", "filepath", f"{field}.mask_path"])
        todo = [(s, f, m) for s, f, m in zip(sids, paths, masks) if m]
        out: dict = {}
        need = []
        for sid, path, mask in todo:
            got = _kept(mask, path, self._fine_params)
            if got is None:
                need.append((sid, path, mask))
            else:
                out[sid] = _unpack(got)
        done, total = len(out), len(todo)
        if progress is not None:
            progress(done, total, "features")
        order = {sid: i for i, sid in enumerate(sids)}
        errors = []
        tasks = [(sid, path, mask, self._fine_params) for sid, path, mask in need]
        for i, ok, value in run_tasks(region_features, tasks, self.workers):
            sid, path, mask = need[i]
            if ok:
                _remember(mask, path, self._fine_params, value)
                out[sid] = _unpack(value)
            else:
                errors.append((order[sid], value))
            done += 1
            if progress is not None:
                progress(done, total, "features")
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return out

    def fit(self, ctx: FitContext) -> None:
        self._num_classes = ctx.num_classes
        self._field = ctx.superpixel_field
        self._index, self._ids, self._features, self._regions = {}, [], [], []
        groups = []
        samples = ctx.samples
        kept = self._kept_features(samples, ctx.superpixel_field, ctx.progress)

        def read(sample):
            sp = read_segmentation(sample, ctx.superpixel_field)
            labels = ctx.read_labels(sample)
            check_same_size(sample, "the labels", labels.shape, "the superpixel map", sp.shape)
            return sample, sp, labels

        # the label files decoded a few samples ahead in threads (PNG decoding releases the GIL)
        for sample, sp, labels in thread_map(read, samples.iter_samples(), self.workers):
            cached = kept.get(sample.id)
            if cached is None:  # a map stored inline: computed here, kept by this model
                key = (sample.id, sample[ctx.superpixel_field].mask_path)
                cached = self._cache.get(key)
            if cached is None:
                image = read_image(sample)
                check_same_size(sample, "the image", image.shape, "the superpixel map", sp.shape)
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
            estimator_params=self.estimator_params,
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
            got = None
            seg = sample[self._field] if self._field and sample.has_field(self._field) else None
            mask = getattr(seg, "mask_path", None)
            if mask:
                got = _kept(mask, sample.filepath, self._fine_params)
            if got is not None and "regions" in got and got["regions"].shape != superpixels.shape:
                got = None
            if got is None:
                if image is None:
                    image = read_image(sample)
                got = _features_of_arrays(image, superpixels, self._fine_params)
            regions, ids, feats = _unpack(got)
            sp_probs = self._clf.predict_proba_new(feats)
        else:
            ids, sp_probs = self._ids[i], self._probs[i]
        if self.temperature != 1.0:
            sp_probs = cp.apply_temperature(sp_probs, self.temperature)
        rmap = superpixels if regions is None else np.where(superpixels > 0, regions, 0)
        return cp.broadcast(sp_probs, ids, rmap, self._num_classes)

    def for_level(self, field: str) -> FeatureModel:
        """The model of a finer level ``field`` of a region hierarchy
        (:class:`alc_fiftyone.models.levels.LevelModels`): the same features and folds on that
        level's regions, with the same classifier (LightGBM by default: through the library it
        beat extra trees on the finer level on both datasets and both kinds of labels,
        BENCHMARKS.md "Regions at several sizes") and :data:`LEVEL_TRAIN_ROWS` as the row
        cap unless this model's is lower. Kept on this model, so that its features are
        computed once across rounds."""
        subs = self.__dict__.setdefault("_levels", {})
        if field not in subs:
            cap = self.max_train_rows
            params = self.estimator_params
            if not params and self.estimator == DEFAULT_ESTIMATOR:
                params = LEVEL_ESTIMATOR_PARAMS
            subs[field] = FeatureModel(
                n_folds=self.n_folds,
                estimator=self.estimator,
                seed=self.seed,
                fold_by=self.fold_by,
                calibrate=self.calibrate,
                max_train_rows=LEVEL_TRAIN_ROWS if cap == MAX_TRAIN_ROWS else cap,
                estimator_params=params,
                workers=self.workers,
            )
        return subs[field]

    def describe(self):
        return {
            "name": self.name,
            "estimator": self.estimator,
            **({"estimator_params": dict(self.estimator_params)} if self.estimator_params else {}),
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


# --- the features of a region map, computed once and kept -----------------------------------


def _kind(fine: tuple[float, float] | None) -> str:
    """The sidecar kind of the features of a map (or of its fine regions)."""
    if fine is None:
        return f"features-v{FEATURE_VERSION}"
    factor, compactness = (f"{x:g}".replace(".", "p").replace("-", "m") for x in fine)
    return f"fine-f{factor}-c{compactness}-v{FEATURE_VERSION}"


def _unpack(arrays: dict) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    regions = arrays.get("regions")
    return (
        (None if regions is None else regions.astype(np.int32)),
        arrays["ids"],
        arrays["features"],
    )


def _features_of_arrays(image, sp, fine, parent_arrays: dict | None = None) -> dict:
    """The arrays kept for one map: ``ids`` and ``features``, and with ``fine`` the fine
    ``regions`` (see :func:`fine_regions`) and each fine region's features followed by its
    parent's (``parent_arrays``: the map's own features when already known)."""
    if fine is None:
        ids, feats = cp.superpixel_features(image, sp)
        return {"ids": ids, "features": feats}
    regions, parent = fine_regions(image, sp, *fine)
    ids, feats = cp.superpixel_features(image, regions)
    own = parent_arrays or _features_of_arrays(image, sp, None)
    rows = np.searchsorted(own["ids"], parent[ids])
    small = regions.dtype if regions.max(initial=0) > 65535 else np.uint16
    return {
        "regions": regions.astype(small),
        "ids": ids,
        "features": np.concatenate([feats, own["features"][rows]], axis=1),
        "parent_features": own["features"],
        "parent_ids": own["ids"],
    }


_memory: OrderedDict = OrderedDict()  # (mask path, kind) -> (stamp, arrays, bytes)
_memory_bytes = 0
_memory_lock = threading.Lock()


def _stamp(mask: str, image: str) -> tuple:
    try:
        a, b = os.stat(mask), os.stat(image)
    except OSError:
        return ()
    return (a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns, image)


def _remember(mask: str, image: str, fine, arrays: dict) -> None:
    """Keep ``arrays`` (the features of ``mask`` on ``image``) in this process."""
    global _memory_bytes
    size = sum(a.nbytes for a in arrays.values())
    key = (mask, _kind(fine))
    with _memory_lock:
        old = _memory.pop(key, None)
        if old is not None:
            _memory_bytes -= old[2]
        _memory[key] = (_stamp(mask, image), arrays, size)
        _memory_bytes += size
        while _memory_bytes > MEMORY_CACHE_BYTES and len(_memory) > 1:
            _, (_, _, dropped) = _memory.popitem(last=False)
            _memory_bytes -= dropped
    if fine is not None and "parent_ids" in arrays:
        _remember(
            mask, image, None, {"ids": arrays["parent_ids"], "features": arrays["parent_features"]}
        )


def _kept(mask: str, image: str, fine) -> dict | None:
    """The features of ``mask`` on ``image`` kept in this process or beside the mask (then
    kept in this process too), or None."""
    key = (mask, _kind(fine))
    with _memory_lock:
        hit = _memory.get(key)
        if hit is not None and hit[0] == _stamp(mask, image) and hit[0]:
            _memory.move_to_end(key)
            return hit[1]
    arrays = read_sidecar(mask, _kind(fine), (image,))
    if arrays is not None:
        _remember(mask, image, fine, arrays)
    return arrays


def clear_feature_cache() -> None:
    """Forget the features kept in this process (the sidecars on disk stay)."""
    global _memory_bytes
    with _memory_lock:
        _memory.clear()
        _memory_bytes = 0


def region_features(sample_id: str, image_path: str, mask_path: str, fine=None) -> dict:
    """The features of the regions in the mask file ``mask_path`` on the image
    ``image_path`` (with ``fine = (factor, compactness)``: of its fine regions, see
    :func:`fine_regions`), read from the sidecar beside the mask when it is there, else
    computed and written there. A pure function of the files: it runs in a worker process
    (:func:`alc_fiftyone.core.pool.run_tasks`). A SampleError names ``sample_id`` when a file
    cannot be read or the sizes differ."""
    kind = _kind(fine)
    arrays = read_sidecar(mask_path, kind, (image_path,))
    if arrays is not None:
        return arrays
    image = read_image(image_path, sample_id)
    sp = read_png_array(mask_path, sample_id)
    ref = SimpleNamespace(id=sample_id, filepath=image_path)
    check_same_size(ref, "the image", image.shape, "the superpixel map", sp.shape)
    parent = None
    if fine is not None:
        parent = read_sidecar(mask_path, _kind(None), (image_path,))
    arrays = _features_of_arrays(image, sp, fine, parent)
    if fine is not None and parent is None:
        write_sidecar(
            mask_path,
            _kind(None),
            {"ids": arrays["parent_ids"], "features": arrays["parent_features"]},
            (image_path,),
        )
    write_sidecar(mask_path, kind, arrays, (image_path,))
    return arrays


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
