"""Region designs at equal clicks: the correction loop at array level (no MongoDB, no FiftyOne).

For CamVid val (11 classes, ignore 11 -> 255) and Weizmann horses (gray masks >= 128 -> 1)
from ../shared/data, the first ``--limit`` images (sorted by name) get noisy labels from
``alc_fiftyone.core.noise.corrupt`` (rate 0.3; each image's seed is the library's
``sample_seed(noise_seed, file name)``, so the labels equal what ``alc.corrupt_labels`` writes),
or, with ``--labels weak``, the predictions of a weak segmenter (the features model trained on
the ground truth of images 0..limit/2-1, predicting images limit/2..limit-1, which are then the
ones corrected). Then, for every region design x acquisition method, ``--rounds`` rounds of:

1. fit the class-probability model out of fold (5 contiguous blocks of images) on the current
   labels: ``core.probabilities.superpixel_features`` of each region, target the region's
   majority current label, weight sqrt(size) x purity, ``OutOfFoldClassifier`` (hgb,
   ``fold_by="blocks"``), probabilities broadcast to the pixels; this is what the library's
   default ``features`` model does (``alc_fiftyone.probabilities.FeatureModel``);
2. score every region with ``core.acquisition.score_superpixels`` (``random``, ``cil_mean``,
   ``sim``), or with the ``oracle`` ceiling (the pixels the majority oracle's answer would
   change: a bound that reads the ground truth, never a method);
3. take the global top-K regions not answered before, K a fixed number of clicks per round,
   the same for every design: 2% of the SLIC (n_segments=200, compactness=10) region count of
   the dataset;
4. answer each with ``core.correction.oracle_answer(rule="majority")`` and write the answer
   over the whole region (tau = 0);
5. data mIoU of the labels (``core.metrics.ConfusionMatrix``, ignore excluded on both sides).

Regions are computed once from the initial labels (``--recompute`` recomputes label-aware
regions from the revised labels every round, cut by the answered regions so that answered
pixels are never asked again).

    .venv/bin/python benchmarks/regions_experiment.py --datasets camvid \
        --designs slic,felzenszwalb,la_fz,la_slic --methods random,cil_mean,sim,oracle
    # a design with parameters, and extra label features for the model (item 4 of issue 13)
    .venv/bin/python benchmarks/regions_experiment.py \
        --designs "la_fz:scale_rel=0.008,min_area=256" --methods sim --features base+ctx

This is the fast, exploratory counterpart of ``label_quality.py`` (which runs the same loop
through ``alc.simulate`` on real FiftyOne datasets): it was used to choose the label-aware
defaults (``min_area``, the Felzenszwalb scale per pixel) and to test label-context features;
its results are in docs/method.md ("Regions"). It reads a few private helpers of
``alc_fiftyone.core.probabilities`` (``_image_lab``, ``_index_map``) to build the same
features as the library without FiftyOne.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
CACHE = Path("/tmp/alc-regions-cache")

from alc_fiftyone.core import probabilities as cp
from alc_fiftyone.core.acquisition import score_superpixels
from alc_fiftyone.core.correction import oracle_answer
from alc_fiftyone.core.metrics import ConfusionMatrix
from alc_fiftyone.core.noise import corrupt
from alc_fiftyone.core.regions import label_aware_regions, label_components
from alc_fiftyone.core.superpixels import felzenszwalb, slic

IGNORE = 255
DATASETS = {
    "camvid": {"folder": "camvid-val", "num_classes": 11},
    "horse": {"folder": "weizmann-horse", "num_classes": 2},
}
BASES = {
    "slic": lambda img: slic(img, n_segments=200, compactness=10),
    "felzenszwalb": lambda img: felzenszwalb(img, scale=400, sigma=0.8, min_size=100),
}


def sample_seed(seed: int, name: str) -> int:
    """The library's ``alc_fiftyone.noise.sample_seed`` (same formula; kept here so that this
    script never imports FiftyOne): the run's seed and the image's file name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


@dataclass
class Image_:
    name: str
    image: np.ndarray
    gt: np.ndarray


def load(key: str, limit: int) -> list[Image_]:
    from PIL import Image

    root = DATA / DATASETS[key]["folder"]
    out = []
    for p in sorted((root / "images").iterdir())[:limit]:
        masks = sorted((root / "masks").glob(p.stem + ".*"))
        with Image.open(p) as im:
            img = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        with Image.open(masks[0]) as m:
            mask = np.asarray(m.convert("L"))
        if key == "camvid":
            gt = mask.astype(np.uint8).copy()
            gt[gt == 11] = IGNORE
        else:
            gt = (mask >= 128).astype(np.uint8)
        out.append(Image_(p.name, img, gt))
    return out


def base_maps(key: str, data: list[Image_], kind: str, params: dict | None = None) -> list:
    """Base superpixels of every image, cached on disk (they depend on the image only)."""
    params = params or {}
    tag = "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    path = CACHE / f"{key}_{len(data)}_{kind}{('_' + tag) if tag else ''}.npz"
    if path.exists():
        z = np.load(path)
        if all(d.name in z.files for d in data):
            return [z[d.name] for d in data]
        crc = zlib.crc32(",".join(d.name for d in data).encode())
        path = path.with_name(f"{path.stem}_{crc:08x}.npz")
        if path.exists():
            z = np.load(path)
            return [z[d.name] for d in data]
    CACHE.mkdir(parents=True, exist_ok=True)
    if params:
        fn = {"slic": slic, "felzenszwalb": felzenszwalb}[kind]
        maps = []
        for d in data:
            p = dict(params)
            if "scale_rel" in p:  # Felzenszwalb scale per pixel of the image (area-relative)
                p["scale"] = p.pop("scale_rel") * d.image.shape[0] * d.image.shape[1]
            maps.append(fn(d.image, **p))
    else:
        maps = [BASES[kind](d.image) for d in data]
    np.savez_compressed(path, **{d.name: m for d, m in zip(data, maps)})
    return maps


# --- the model ------------------------------------------------------------------------------

FEATURE_SETS = ("base", "ctx", "share", "contrast", "sameborder", "classdist")


def border_contrast(image: np.ndarray, regions: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(S, 2): mean Lab colour distance across each region's border (pixel pairs of two
    regions), and the share of its border pixels pairs whose Sobel gradient is high."""
    lab, gray = cp._image_lab(image)
    idx = cp._index_map(regions, ids)
    S = ids.size
    feats = np.zeros((S, 2))
    tot = np.zeros(S)
    from skimage.filters import sobel

    grad = sobel(gray)
    hi = grad > np.percentile(grad, 75)
    for sl_a, sl_b in (
        (np.s_[:, :-1], np.s_[:, 1:]),
        (np.s_[:-1, :], np.s_[1:, :]),
    ):
        a, b = idx[sl_a].ravel(), idx[sl_b].ravel()
        keep = a != b
        d = np.sqrt(((lab[sl_a] - lab[sl_b]) ** 2).sum(-1)).ravel()[keep]
        h = (hi[sl_a] | hi[sl_b]).ravel()[keep].astype(float)
        for side in (a[keep], b[keep]):
            feats[:, 0] += np.bincount(side, weights=d, minlength=S)
            feats[:, 1] += np.bincount(side, weights=h, minlength=S)
            tot += np.bincount(side, minlength=S)
    return feats / np.maximum(tot, 1)[:, None]


def label_features(
    regions: np.ndarray, labels: np.ndarray, ids: np.ndarray, C: int, which: set[str]
) -> np.ndarray:
    """Per-region features of the current labels (recomputed every round)."""
    from alc_fiftyone.core.superpixels import adjacency, dense_ids

    dense, n = dense_ids(regions)
    lab = labels.ravel().astype(np.int64)
    use = lab != IGNORE
    counts = np.bincount(dense.ravel()[use] * C + lab[use], minlength=(n + 1) * C).reshape(
        n + 1, C
    )
    major = np.where(counts.sum(1) > 0, counts.argmax(1), -1)
    sizes = np.bincount(dense.ravel(), minlength=n + 1).astype(float)
    adj = adjacency(dense, n).tocoo()
    r, c, w = adj.row, adj.col, adj.data.astype(float)
    cols = []
    if "ctx" in which:
        ok = major[c] >= 0
        ctx = np.zeros((n + 1, C))
        np.add.at(ctx, (r[ok], major[c[ok]]), w[ok])
        tot = ctx.sum(1, keepdims=True)
        cols.append(np.divide(ctx, tot, out=np.zeros_like(ctx), where=tot > 0))
    if "sameborder" in which:
        same = np.bincount(r, weights=w * (major[r] == major[c]), minlength=n + 1)
        tot = np.bincount(r, weights=w, minlength=n + 1)
        cols.append((same / np.maximum(tot, 1))[:, None])
    if "share" in which:
        comp, k = label_components(labels, ignore_index=IGNORE)
        csize = np.bincount(comp.ravel(), minlength=k + 1).astype(float)
        # the label component of each region: that of its first pixel (exact for regions that
        # absorbed no fragment of another label, the majority otherwise)
        first = np.full(n + 1, -1, dtype=np.int64)
        flat = dense.ravel()
        first[flat[::-1]] = np.arange(flat.size)[::-1]
        rc = comp.ravel()[first[1:]]
        share = np.zeros(n + 1)
        share[1:] = sizes[1:] / csize[rc]
        cols.append(np.stack([share, np.log(csize[np.r_[0, rc]] / regions.size + 1e-9)], 1))
    if not cols:
        return np.zeros((ids.size, 0), np.float32)
    out = np.concatenate(cols, axis=1)
    present = np.unique(regions).astype(np.int64)
    present = present[present > 0]
    rows = np.searchsorted(present, ids) + 1
    return out[rows].astype(np.float32)


class Model:
    """The features model of the library (FeatureModel, granularity "superpixel"), array level,
    with optional extra feature groups."""

    def __init__(self, data, C, features=("base",), n_folds=5, seed=0, calibrate=False):
        self.data, self.C, self.which = data, C, set(features)
        self.calibrate = calibrate
        self.n_folds, self.seed = n_folds, seed
        self._static: dict[int, tuple] = {}  # id(regions) -> (ids, feats)

    def static(self, i, regions):
        key = (i, id(regions))
        hit = self._static.get(key)
        if hit is None or hit[0] is not regions:
            ids, feats = cp.superpixel_features(self.data[i].image, regions)
            if "contrast" in self.which:
                feats = np.concatenate(
                    [feats, border_contrast(self.data[i].image, regions, ids).astype(np.float32)],
                    1,
                )
            hit = self._static[key] = (regions, ids, feats)
        return hit[1], hit[2]

    def fit_predict(self, regions: list, labels: list) -> list[np.ndarray]:
        groups, per = [], []
        for i, (sp, lab) in enumerate(zip(regions, labels)):
            ids, feats = self.static(i, sp)
            extra = label_features(sp, lab, ids, self.C, self.which)
            f = np.concatenate([feats, extra], 1) if extra.shape[1] else feats
            targets, purity = cp.superpixel_targets(lab, sp, ids, self.C, ignore_index=IGNORE)
            sizes = np.bincount(sp.ravel(), minlength=int(ids.max()) + 1)
            weight = np.sqrt(sizes[ids].astype(np.float64)) * purity
            groups.append((f, targets, weight))
            per.append((ids, f))
        if "classdist" in self.which:
            groups, per = self._classdist(groups, per, labels)
        clf = cp.OutOfFoldClassifier(
            self.C, n_folds=self.n_folds, estimator="hgb", seed=self.seed, fold_by="blocks"
        ).fit(groups)
        out = []
        for i, (ids, f) in enumerate(per):
            p = clf.predict_proba(i, f)
            out.append((ids, p))
        if self.calibrate:
            T = cp.fit_temperature(
                [p for _, p in out], [g[1] for g in groups], [g[2] for g in groups]
            )
            out = [(ids, cp.apply_temperature(p, T)) for ids, p in out]
            self.temperature = T
        return out

    def _classdist(self, groups, per, labels):
        """Distance of each region's Lab mean to the mean of every class (other folds' regions
        currently labelled that class), C columns: similarity to regions elsewhere."""
        n = len(groups)
        k = min(self.n_folds, n)
        folds = (np.arange(n) * k) // n
        sums = np.zeros((k, self.C, 3))
        cnt = np.zeros((k, self.C))
        for i, (f, t, w) in enumerate(groups):
            ok = t >= 0
            np.add.at(sums[folds[i]], t[ok], f[ok, :3] * w[ok, None])
            np.add.at(cnt[folds[i]], t[ok], w[ok])
        new_groups, new_per = [], []
        for i, ((f, t, w), (ids, _)) in enumerate(zip(groups, per)):
            s = sums.sum(0) - sums[folds[i]]
            c = cnt.sum(0) - cnt[folds[i]]
            mean = s / np.maximum(c, 1e-9)[:, None]
            d = np.sqrt(((f[:, None, :3] - mean[None]) ** 2).sum(-1)).astype(np.float32)
            f2 = np.concatenate([f, d], 1)
            new_groups.append((f2, t, w))
            new_per.append((ids, f2))
        return new_groups, new_per


# --- the loop -------------------------------------------------------------------------------

MODEL_METHODS = ("sim", "cil_mean", "abc")


def abc_weights(regions, labels, answered, C):
    """A2LC's class weights W_c from the pixels currently labelled c in regions not answered
    yet, over the whole dataset (``core.acquisition.abc_class_weights``)."""
    from alc_fiftyone.core.acquisition import abc_class_weights

    counts = np.zeros(C, np.int64)
    for sp, lab, done in zip(regions, labels, answered):
        keep = lab != IGNORE
        if done:
            keep &= ~np.isin(sp, np.fromiter(done, np.int64))
        counts += np.bincount(lab[keep].astype(np.int64), minlength=C)[:C]
    return abc_class_weights(counts)


def oracle_scores(sp, labels, gt, C, net=False):
    """Pixels the majority oracle's answer would change, per region id (ids ascending).

    ``net=True``: the pixels it would make right minus those it would make wrong instead
    (``oracle_net``, a second bound; neither is a bound on mIoU, which weighs classes)."""
    ids = np.unique(sp).astype(np.int64)
    ids = ids[ids > 0]
    idx = cp._index_map(sp, ids).ravel()
    g = gt.ravel().astype(np.int64)
    lab = labels.ravel().astype(np.int64)
    S = ids.size
    size = np.bincount(idx, minlength=S)
    ok = np.bincount(idx, weights=((lab == g) & (g != IGNORE)), minlength=S)
    valid = g != IGNORE
    gcount = np.bincount(idx[valid] * C + g[valid], minlength=S * C).reshape(S, C)
    maj = gcount.argmax(1)
    has = gcount.sum(1) > 0
    same = np.bincount(idx, weights=(lab == maj[idx]), minlength=S)
    gain = size - same
    if net:
        fixed = np.bincount(idx, weights=(g == maj[idx]) & (lab != g), minlength=S)
        broken = np.bincount(idx, weights=(lab == g) & valid & (g != maj[idx]), minlength=S)
        gain = fixed - broken
    score = np.where((2 * ok <= size) & has, gain, 0.0)
    return ids, score


def miou(labels, data, C) -> float:
    cm = ConfusionMatrix(C, IGNORE)
    for lab, d in zip(labels, data):
        cm.update(lab, d.gt)
    return cm.miou()


def cut_by_answered(labels, base, answered_mask_ids, image, min_area, ignore):
    """Label-aware regions of the revised labels, cut by the answered regions (their ids)."""
    key = base.astype(np.int64) * 65536 + answered_mask_ids.astype(np.int64)
    from alc_fiftyone.core.superpixels import dense_ids

    dense, _ = dense_ids(key.astype(np.int64) if key.max() < 2**62 else key)
    return label_aware_regions(
        labels, dense.astype(np.int64), image=image, min_area=min_area, ignore=ignore
    )


@dataclass
class Design:
    name: str
    base: str | None  # None: the base map itself is the region map
    min_area: int = 64
    ignore: str = "own"
    min_area_frac: float = 0.0  # > 0: min_area = this share of each image's pixels
    base_params: dict = field(default_factory=dict)
    colour: bool = True


def make_regions(design: Design, key, data, labels) -> tuple[list, float]:
    kind = design.base or design.name
    bases = base_maps(key, data, kind, design.base_params)
    if design.base is None:
        return bases, 0.0
    t0 = time.perf_counter()
    out = [
        label_aware_regions(
            lab,
            b,
            image=d.image if design.colour else None,
            min_area=(
                round(design.min_area_frac * lab.size) if design.min_area_frac else design.min_area
            ),
            ignore=design.ignore,
        )
        for lab, b, d in zip(labels, bases, data)
    ]
    return out, (time.perf_counter() - t0) / len(data)


def run_loop(
    data,
    C,
    regions,
    labels0,
    method,
    K,
    rounds,
    model: Model | None,
    seed=0,
    recompute: Design | None = None,
    key=None,
    first_probs=None,
    log=None,
):
    labels = [lab.copy() for lab in labels0]
    answered = [set() for _ in data]
    answered_map = [np.zeros(lab.shape, np.int32) for lab in labels]
    regions = list(regions)
    mious = [miou(labels, data, C)]
    changed_total = []
    effective_total = []
    fits = []
    bases = base_maps(key, data, recompute.base, recompute.base_params) if recompute else None
    for r in range(1, rounds + 1):
        if recompute is not None and r > 1:
            regions = []
            for i, d in enumerate(data):
                regions.append(
                    cut_by_answered(
                        labels[i],
                        bases[i],
                        answered_map[i],
                        d.image,
                        recompute.min_area,
                        recompute.ignore,
                    )
                )
            # regions inside answered areas are answered
            answered = []
            for i in range(len(data)):
                a = np.unique(regions[i][answered_map[i] > 0]).astype(np.int64)
                answered.append(set(a.tolist()))
        t0 = time.perf_counter()
        probs = None
        if method in MODEL_METHODS:
            if r == 1 and first_probs is not None:
                probs = first_probs
            else:
                probs = model.fit_predict(regions, labels)
        fits.append(time.perf_counter() - t0)
        cand = []
        weights = abc_weights(regions, labels, answered, C) if method == "abc" else None
        for i, d in enumerate(data):
            sp = regions[i]
            if method in ("oracle", "oracle_net"):
                ids, sc = oracle_scores(sp, labels[i], d.gt, C, net=method == "oracle_net")
            else:
                if probs is None:
                    pm = np.full((C,) + sp.shape, 1.0 / C, np.float32)
                else:
                    pid, p = probs[i]
                    pm = cp.broadcast(p, pid, sp, C)
                res = score_superpixels(
                    pm,
                    sp,
                    labels[i],
                    method=method,
                    ignore_index=IGNORE,
                    seed=(seed * 7919 + r) * 100_003 + i,
                    class_weights=weights,
                )
                ids, sc = res.ids, res.scores
            keep = np.array([v not in answered[i] for v in ids.tolist()], bool)
            cand.append((np.full(keep.sum(), i), ids[keep], sc[keep]))
        ii = np.concatenate([c[0] for c in cand])
        jj = np.concatenate([c[1] for c in cand])
        ss = np.concatenate([c[2] for c in cand])
        order = np.lexsort((jj, ii, -ss))[:K]
        changed = effective = 0
        for i in np.unique(ii[order]):
            sel = jj[order][ii[order] == i]
            sp = regions[i]
            new = labels[i].copy()
            for v in sel.tolist():
                region = sp == v
                ans = oracle_answer(
                    data[i].gt, labels[i], region, rule="majority", ignore_index=IGNORE
                )
                answered[i].add(v)
                answered_map[i][region] = answered_map[i].max() + 1
                if ans is not None:
                    n_changed = int((new[region] != ans).sum())
                    changed += n_changed
                    effective += n_changed > 0
                    new[region] = ans
            labels[i] = new
        mious.append(miou(labels, data, C))
        changed_total.append(changed)
        effective_total.append(effective)
        if log:
            log(f"    round {r}: mIoU {100 * mious[-1]:.2f} changed {changed} fit {fits[-1]:.1f}s")
    cm = ConfusionMatrix(C, IGNORE)
    for lab, d in zip(labels, data):
        cm.update(lab, d.gt)
    return mious, changed_total, fits, effective_total, cm.iou().tolist()


def weak_labels(data, C, seg_params=None):
    """The features model trained on the ground truth of the first half, predicting the second
    half, on SLIC regions (n_segments=400, compactness=20 by default: a map different from both
    bases, so that label-aware regions are not the segmenter's own regions)."""
    seg_params = seg_params or {"n_segments": 400, "compactness": 20}
    half = len(data) // 2
    rows_f, rows_t, rows_w = [], [], []
    maps = [slic(d.image, **seg_params) for d in data]
    feats = [cp.superpixel_features(d.image, m) for d, m in zip(data, maps)]
    for i in range(half):
        ids, f = feats[i]
        t, pur = cp.superpixel_targets(data[i].gt, maps[i], ids, C, ignore_index=IGNORE)
        sizes = np.bincount(maps[i].ravel())[ids]
        rows_f.append(f)
        rows_t.append(t)
        rows_w.append(np.sqrt(sizes) * pur)
    clf = cp.OutOfFoldClassifier(C, n_folds=1, estimator="hgb", seed=0).fit(
        [(np.concatenate(rows_f), np.concatenate(rows_t), np.concatenate(rows_w))]
    )
    out = []
    for i in range(half, len(data)):
        ids, f = feats[i]
        p = clf.predict_proba(0, f)
        lab = np.zeros(maps[i].max() + 1, np.uint8)
        lab[ids] = p.argmax(1)
        out.append(lab[maps[i]])
    return out


def model_diagnostics(data, C, regions, labels, model):
    """Out-of-fold quality on the initial labels: pixel accuracy of the argmax against the
    ground truth, and how well CIL = 1 - P(current label) finds wrong pixels (ROC AUC over
    pixels, gt ignore excluded)."""
    from sklearn.metrics import roc_auc_score

    probs = model.fit_predict(regions, labels)
    acc_n = acc_d = 0
    ys, ss = [], []
    rng = np.random.default_rng(0)
    for i, d in enumerate(data):
        ids, p = probs[i]
        pm = cp.broadcast(p, ids, regions[i], C)
        am = pm.argmax(0)
        valid = d.gt != IGNORE
        acc_n += int((am == d.gt)[valid].sum())
        acc_d += int(valid.sum())
        lab = labels[i].astype(np.int64)
        labc = np.where(lab == IGNORE, am, lab)
        a = 1 - np.take_along_axis(pm, labc[None], 0)[0]
        pick = valid & (rng.random(valid.shape) < 0.05)
        ys.append((labels[i] != d.gt)[pick])
        ss.append(a[pick])
    y, s = np.concatenate(ys), np.concatenate(ss)
    return {"oof_acc": acc_n / acc_d, "cil_auc": float(roc_auc_score(y, s))}, probs


DESIGNS = {
    "slic": Design("slic", None),
    "felzenszwalb": Design("felzenszwalb", None),
    "la_fz": Design("la_fz", "felzenszwalb"),
    "la_slic": Design("la_slic", "slic"),
}


def parse_design(spec: str) -> Design:
    """``la_fz`` or ``la_fz:min_area=32,ignore=merge,scale=200`` etc."""
    name, _, rest = spec.partition(":")
    d = DESIGNS[name]
    d = Design(
        d.name, d.base, d.min_area, d.ignore, d.min_area_frac, dict(d.base_params), d.colour
    )
    if rest:
        for kv in rest.split(","):
            k, v = kv.split("=")
            if k == "min_area":
                d.min_area = int(v)
            elif k == "min_area_frac":
                d.min_area_frac = float(v)
            elif k == "ignore":
                d.ignore = v
            elif k == "colour":
                d.colour = v not in ("0", "false", "no")
            else:
                d.base_params[k] = float(v) if "." in v else int(v)
        if d.base_params:
            defaults = (
                {"n_segments": 200, "compactness": 10}
                if (d.base or d.name) == "slic"
                else {"scale": 400, "sigma": 0.8, "min_size": 100}
            )
            d.base_params = {**defaults, **d.base_params}
            if "scale_rel" in d.base_params:
                d.base_params.pop("scale")
        d.name = spec
    return d


def split_designs(text: str) -> list[str]:
    """``"slic,la_fz:min_area=32,ignore=merge"`` -> ``["slic", "la_fz:min_area=32,ignore=merge"]``
    (a comma starts a new design only before a design name)."""
    out: list[str] = []
    for tok in text.split(","):
        if out and tok.split(":")[0] not in DESIGNS:
            out[-1] += "," + tok
        else:
            out.append(tok)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="camvid,horse")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--noise-rate", type=float, default=0.3)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", choices=("noise", "weak"), default="noise")
    ap.add_argument("--designs", default="slic,felzenszwalb,la_fz,la_slic")
    ap.add_argument("--methods", default="random,cil_mean,sim,oracle")
    ap.add_argument("--features", default="base", help="+-joined: base+ctx+share+contrast...")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="temperature-scale the out-of-fold probabilities (FeatureModel "
        "calibrate='temperature')",
    )
    ap.add_argument("--diagnose", action="store_true", help="only the model diagnostics")
    ap.add_argument("--clicks", type=int, default=0, help="override K (clicks per round)")
    ap.add_argument("--out", default=str(REPO / "artifacts" / "regions.jsonl"))
    args = ap.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    features = tuple(args.features.split("+"))
    for key in args.datasets.split(","):
        C = DATASETS[key]["num_classes"]
        data = load(key, args.limit)
        if args.labels == "noise":
            labels0 = [
                corrupt(
                    d.gt,
                    C,
                    rate=args.noise_rate,
                    seed=sample_seed(args.noise_seed, d.name),
                    ignore_index=IGNORE,
                )
                for d in data
            ]
        else:
            labels0 = weak_labels(data, C)
            data = data[len(data) // 2 :]
        slic_maps = base_maps(key, data, "slic")
        n_slic = sum(int(m.max()) for m in slic_maps)
        K = args.clicks or round(0.02 * n_slic)
        m0 = miou(labels0, data, C)
        print(
            f"## {key} ({len(data)} images, labels {args.labels}, start mIoU {100 * m0:.2f}): "
            f"{n_slic} SLIC regions -> K = {K} clicks per round",
            flush=True,
        )
        for spec in split_designs(args.designs):
            design = parse_design(spec)
            regions, t_reg = make_regions(design, key, data, labels0)
            sizes = np.concatenate([np.bincount(r.ravel())[1:] for r in regions])
            print(
                f"### {design.name}: {sizes.size / len(data):.0f} regions/image, median size "
                f"{np.median(sizes):.0f}, <64 px {np.mean(sizes < 64):.2f}, "
                f"label-aware time {1000 * t_reg:.1f} ms/image",
                flush=True,
            )
            model = Model(data, C, features, seed=args.seed, calibrate=args.calibrate)
            first = None
            if args.diagnose or any(m in MODEL_METHODS for m in args.methods.split(",")):
                t0 = time.perf_counter()
                diag, first = model_diagnostics(data, C, regions, labels0, model)
                print(
                    f"    model ({args.features}): oof acc {100 * diag['oof_acc']:.1f}, "
                    f"CIL AUC {diag['cil_auc']:.3f} ({time.perf_counter() - t0:.1f}s)",
                    flush=True,
                )
            else:
                diag = {}
            if args.diagnose:
                with open(args.out, "a") as fh:
                    fh.write(
                        json.dumps(
                            {
                                "dataset": key,
                                "design": design.name,
                                "features": args.features,
                                "labels": args.labels,
                                **diag,
                            }
                        )
                        + "\n"
                    )
                continue
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                mious, changed, fits, effective, iou = run_loop(
                    data,
                    C,
                    regions,
                    labels0,
                    method,
                    K,
                    args.rounds,
                    model,
                    seed=args.seed,
                    recompute=design if (args.recompute and design.base) else None,
                    key=key,
                    first_probs=first,
                )
                dt = time.perf_counter() - t0
                row = " | ".join(f"{100 * v:.2f}" for v in mious)
                print(
                    f"| {key} | {design.name} | {method} | {row} | {dt / args.rounds:.1f} s/round |",
                    flush=True,
                )
                with open(args.out, "a") as fh:
                    fh.write(
                        json.dumps(
                            {
                                "dataset": key,
                                "design": design.name,
                                "method": method,
                                "features": args.features,
                                "labels": args.labels,
                                "K": K,
                                "recompute": args.recompute,
                                "noise_seed": args.noise_seed,
                                "miou": mious,
                                "changed": changed,
                                "fit_s": fits,
                                "effective_clicks": effective,
                                "class_iou": iou,
                                "calibrate": args.calibrate,
                                "s_per_round": dt / args.rounds,
                                "regions_per_image": sizes.size / len(data),
                                "la_ms": 1000 * t_reg,
                                **diag,
                            }
                        )
                        + "\n"
                    )


if __name__ == "__main__":
    main()
