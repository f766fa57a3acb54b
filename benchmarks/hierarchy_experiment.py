"""Regions at several sizes: the correction loop at array level over a region hierarchy.

The exploratory counterpart of ``label_quality.py`` for issue 22 (as ``regions_experiment.py``
was for the label-aware regions): no MongoDB, the library's core functions. Level 0 is the
label-aware default (Felzenszwalb base, scale 0.008 per pixel, min_area 256); finer levels
cut it with a finer image segmentation (``alc_fiftyone.core.regions.nested_regions``), so
every region of a level lies inside one region of the level above. Designs:

- ``coarse``: level 0 only (today's default);
- ``fine``: the finest level only;
- ``hier``: every level a candidate, one ranking (``core.hierarchy``): a region and one
  inside it never in the same round, the pieces of an answered region stay candidates, and a
  region holding answered pieces is scored and answered on its unanswered pixels.

Each design x method runs ``--rounds`` rounds at the same clicks per round (2% of the SLIC
regions of the dataset, as label_quality.py), the majority oracle answering. ``--model``
chooses where the probability model predicts: ``level`` (the regions of the design's finest
level; features of each region followed by those of its level-0 region) or ``coarse``.

    .venv/bin/python benchmarks/hierarchy_experiment.py --datasets camvid --rounds 10 \\
        --designs coarse,fine,hier --methods sim,oracle
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from regions_experiment import (
    IGNORE,
    base_maps,
    load,
    miou,
    sample_seed,
    weak_labels,
)

from alc_fiftyone.core import probabilities as cp
from alc_fiftyone.core.acquisition import score_superpixels
from alc_fiftyone.core.correction import oracle_answer, oracle_gains
from alc_fiftyone.core.hierarchy import (
    ConflictFreeSelector,
    check_nested,
    parents_of,
    unanswered_map,
)
from alc_fiftyone.core.noise import corrupt
from alc_fiftyone.core.regions import label_aware_regions, nested_regions
from alc_fiftyone.core.superpixels import felzenszwalb, slic

DATASETS = {"camvid": 11, "horse": 2}


def coarse_regions(data, labels):
    out = []
    for d, lab in zip(data, labels):
        H, W = lab.shape
        base = felzenszwalb(d.image, scale=0.008 * H * W, sigma=0.8, min_size=100)
        out.append(label_aware_regions(lab, base, image=d.image, min_area=256))
    return out


def fine_level(data, parents, area: float, min_area: int, kind: str = "slic", comp=10.0):
    """A level that nests in ``parents``: each parent cut by SLIC of one segment per ``area``
    pixels (or Felzenszwalb with scale ``area``), pieces under ``min_area`` merged into a
    sibling."""
    out = []
    for d, par in zip(data, parents):
        H, W = par.shape
        if kind == "slic":
            base = slic(d.image, n_segments=max(1, round(H * W / area)), compactness=comp)
        else:
            base = felzenszwalb(d.image, scale=area, sigma=0.8, min_size=max(min_area, 20))
        out.append(nested_regions(par, base, image=d.image, min_area=min_area))
    return out


class LevelModel:
    """The features model on one region map per image; with ``parent_maps`` each region's
    features are followed by its parent's (the library's ``granularity="fine"`` layout)."""

    def __init__(self, data, C, seed=0, max_rows=None, estimator="hgb"):
        self.data, self.C, self.seed, self.max_rows = data, C, seed, max_rows
        self.estimator = estimator
        self._cache = {}

    def features(self, i, regions, parents):
        key = (i, id(regions), id(parents) if parents is not None else None)
        hit = self._cache.get(key)
        if hit is None:
            ids, f = cp.superpixel_features(self.data[i].image, regions)
            if parents is not None:
                pids, pf = cp.superpixel_features(self.data[i].image, parents)
                par = parents_of(regions, parents)
                f = np.concatenate([f, pf[np.searchsorted(pids, par[ids])]], 1)
            hit = self._cache[key] = (regions, parents, ids, f)
        return hit[2], hit[3]

    trust = 0.0  # extra weight of rows inside answered regions
    leaf = 3
    calibrate = False

    def fit_predict(self, regions, labels, parents=None, answered=None):
        groups, per = [], []
        for i, (sp, lab) in enumerate(zip(regions, labels)):
            ids, f = self.features(i, sp, parents[i] if parents is not None else None)
            t, pur = cp.superpixel_targets(lab, sp, ids, self.C, ignore_index=IGNORE)
            sizes = np.bincount(sp.ravel(), minlength=int(ids.max()) + 1)
            w = np.sqrt(sizes[ids].astype(np.float64)) * pur
            if self.trust and answered is not None:
                done = np.bincount(sp.ravel(), weights=answered[i].ravel(), minlength=sizes.size)
                w = w * (1.0 + self.trust * done[ids] / np.maximum(sizes[ids], 1))
            groups.append((f, t, w))
            per.append((ids, f))
        if self.max_rows:
            total = sum(len(g[1]) for g in groups)
            if total > self.max_rows:
                rng = np.random.default_rng(self.seed)
                keep = rng.random(total) < self.max_rows / total
                out, s = [], 0
                for f, t, w in groups:
                    k = keep[s : s + len(t)]
                    s += len(t)
                    out.append((f, t, np.where(k, w, 0.0)))
                groups = out
        # quantise every column to <= 255 values (unweighted quantiles) so that the
        # gradient boosting's binning takes its cheap path (trees do not mind monotone maps)
        allf = np.concatenate([g[0] for g in groups])
        edges = [
            np.unique(np.quantile(allf[:, j], np.linspace(0, 1, 256)[1:-1]))
            for j in range(allf.shape[1])
        ]

        def q(f):
            return np.stack([np.searchsorted(e, f[:, j]) for j, e in enumerate(edges)], 1).astype(
                np.float32
            )

        groups = [(q(f), t, w) for f, t, w in groups]
        per = [(ids, q(f)) for ids, f in per]
        est = self.estimator
        if est == "et":
            from sklearn.ensemble import ExtraTreesClassifier

            est = ExtraTreesClassifier(
                n_estimators=50,
                min_samples_leaf=self.leaf,
                max_features="sqrt",
                n_jobs=1,
                random_state=self.seed,
            )
        clf = cp.OutOfFoldClassifier(
            self.C, n_folds=5, estimator=est, seed=self.seed, fold_by="blocks"
        ).fit(groups)
        out = [(ids, clf.predict_proba(i, f)) for i, (ids, f) in enumerate(per)]
        if self.calibrate:
            T = cp.fit_temperature(
                [p for _, p in out], [g[1] for g in groups], [g[2] for g in groups]
            )
            out = [(ids, cp.apply_temperature(p, T)) for ids, p in out]
            self.T = T
        return out


def gain_scores(pm, sp, labels, C):
    """Expected pixels made right by writing the region's expected answer: for region R,
    c* = argmax_c sum_x P(c|x), score = sum_x P(c*|x) - sum_x P(y'(x)|x) (y' = label, or the
    argmax where the label is ignore)."""
    ids = np.flatnonzero(np.bincount(sp.ravel().astype(np.int64)))
    ids = ids[ids > 0]
    idx = cp._index_map(sp, ids).ravel()
    keep = idx >= 0
    idx = idx[keep]
    P = pm.reshape(C, -1)[:, keep]
    lab = labels.ravel()[keep].astype(np.int64)
    lab = np.where((lab == IGNORE) | (lab >= C), P.argmax(0), lab)
    S = ids.size
    sums = np.stack([np.bincount(idx, weights=P[c], minlength=S) for c in range(C)])
    cstar = sums.argmax(0)
    p_lab = P[lab, np.arange(lab.size)]
    after = sums[cstar, np.arange(S)]
    before = np.bincount(idx, weights=p_lab, minlength=S)
    return ids, np.maximum(after - before, 0.0)


def run(
    data,
    C,
    levels,
    labels0,
    method,
    K,
    rounds,
    model,
    model_maps,
    model_parents,
    seed=0,
    log=None,
    level_models=None,
):
    """The loop over a hierarchy ``levels`` (list of per-image maps, coarsest first); the
    model predicts on ``model_maps`` (with ``model_parents``' features appended, or None)."""
    L = len(levels)
    n = len(data)
    labels = [lab.copy() for lab in labels0]
    answered = [[set() for _ in range(L)] for _ in range(n)]
    answered_px = [[np.zeros(labels[i].shape, bool) for _ in range(L)] for i in range(n)]
    parents = [
        [parents_of(levels[lv + 1][i], levels[lv][i]) for lv in range(L - 1)] for i in range(n)
    ]
    # a region that is its parent's only piece is the same region: the parent stands for it
    only_child = []
    for i in range(n):
        oc = []
        for lv in range(L - 1):
            p = parents[i][lv]
            ids = np.flatnonzero(np.bincount(levels[lv + 1][i].ravel()))
            ids = ids[ids > 0]
            cnt = np.bincount(p[ids], minlength=int(levels[lv][i].max()) + 1)
            oc.append({int(c) for c in ids if cnt[p[c]] == 1})
        only_child.append(oc)
    mious = [miou(labels, data, C)]
    picked_levels = []
    for r in range(1, rounds + 1):
        probs = None
        t0 = time.perf_counter()
        level_probs = None
        if method not in ("oracle", "random") and level_models is not None:
            # one model per level, each predicting on its own level's regions
            level_probs = [m.fit_predict(levels[lv], labels) for lv, m in enumerate(level_models)]
        elif method not in ("oracle", "random"):
            done = [np.logical_or.reduce(answered_px[i]) for i in range(n)]
            probs = model.fit_predict(model_maps, labels, model_parents, done)
        t_fit = time.perf_counter() - t0
        cands = []  # (score, -i, level, id)
        per_image = []
        for i, d in enumerate(data):
            finer = None
            maps = [None] * L
            for lv in range(L - 1, -1, -1):
                maps[lv] = unanswered_map(levels[lv][i], finer)
                finer = answered_px[i][lv] if finer is None else (finer | answered_px[i][lv])
            pm = None
            if probs is not None:
                pid, p = probs[i]
                pm = cp.broadcast(p, pid, model_maps[i], C)
            rows = []
            for lv in range(L):
                sp = maps[lv]
                if level_probs is not None:
                    pid, p = level_probs[lv][i]
                    pm = cp.broadcast(p, pid, levels[lv][i], C)
                if method == "oracle":
                    ids = np.flatnonzero(np.bincount(sp.ravel().astype(np.int64)))
                    ids = ids[ids > 0]
                    sc = oracle_gains(d.gt, labels[i], sp, ids, "majority", None, IGNORE)
                elif method == "gain":
                    ids, sc = gain_scores(pm, sp, labels[i], C)
                elif method.startswith("gainsim"):  # gain + lambda * sim, e.g. gainsim0.1
                    lam = float(method[7:] or 0.1)
                    ids, sc = gain_scores(pm, sp, labels[i], C)
                    res = score_superpixels(pm, sp, labels[i], method="sim", ignore_index=IGNORE)
                    sc = sc + lam * res.scores
                else:
                    q = pm if pm is not None else np.full((C,) + sp.shape, 1.0 / C, np.float32)
                    res = score_superpixels(
                        q,
                        sp,
                        labels[i],
                        method=method,
                        ignore_index=IGNORE,
                        seed=(seed * 7919 + r) * 100_003 + i * 10 + lv,
                    )
                    ids, sc = res.ids, res.scores
                skip = answered[i][lv] | (only_child[i][lv - 1] if lv > 0 else set())
                for v, s in zip(ids.tolist(), sc.tolist()):
                    if v not in skip:
                        rows.append((s, lv, v))
            rows.sort(key=lambda t: (-t[0], t[1], t[2]))
            sel = ConflictFreeSelector(parents[i])
            for s, lv, v in rows:
                if sel.offer(lv, v):
                    cands.append((s, -i, lv, v))
            per_image.append(maps)
        cands.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
        chosen = cands[:K]
        count = np.zeros(L, int)
        eff = 0
        for s, mi, lv, v in chosen:
            i = -mi
            region = per_image[i][lv] == v
            ans = oracle_answer(
                data[i].gt, labels[i], region, rule="majority", ignore_index=IGNORE
            )
            answered[i][lv].add(v)
            answered_px[i][lv] |= region
            count[lv] += 1
            if ans is not None:
                eff += int((labels[i][region] != ans).any())
                labels[i][region] = ans
        mious.append(miou(labels, data, C))
        picked_levels.append(count.tolist())
        if log:
            log(
                f"    r{r}: {100 * mious[-1]:.2f} levels {count.tolist()} effective {eff} fit "
                f"{t_fit:.1f}s T {[round(getattr(m, 'T', 1.0), 2) for m in level_models or []]}"
            )
    return mious, picked_levels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="camvid,horse")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--labels", choices=("noise", "weak"), default="noise")
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--designs", default="coarse,fine,hier")
    ap.add_argument("--methods", default="sim,oracle")
    ap.add_argument("--fine", default="slic:330:32", help="kind:area:min_area[,kind:area:...]")
    ap.add_argument("--model", default="finest", choices=("coarse", "finest"))
    ap.add_argument("--max-rows", type=int, default=0)
    ap.add_argument("--estimator", default="hgb")
    ap.add_argument("--trust", type=float, default=0.0)
    ap.add_argument("--parent-features", type=int, default=1)
    ap.add_argument("--leaf", type=int, default=3)
    ap.add_argument("--per-level", default="", help="estimators per level, e.g. hgb,et")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", default=str(REPO / "artifacts" / "hierarchy.jsonl"))
    args = ap.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for key in args.datasets.split(","):
        C = DATASETS[key]
        data = load(key, args.limit)
        if args.labels == "noise":
            labels0 = [
                corrupt(
                    d.gt,
                    C,
                    rate=0.3,
                    seed=sample_seed(args.noise_seed, d.name),
                    ignore_index=IGNORE,
                )
                for d in data
            ]
        else:
            labels0 = weak_labels(data, C)
            data = data[len(data) // 2 :]
        n_slic = sum(int(m.max()) for m in base_maps(key, data, "slic"))
        K = round(0.02 * n_slic)
        t0 = time.perf_counter()
        lv0 = coarse_regions(data, labels0)
        t_c = (time.perf_counter() - t0) / len(data)
        levels = [lv0]
        t_f = []
        for spec in args.fine.split(","):
            kind, area, ma = spec.split(":")
            t0 = time.perf_counter()
            levels.append(fine_level(data, levels[-1], float(area), int(ma), kind))
            t_f.append((time.perf_counter() - t0) / len(data))
            bad = sum(check_nested(f, c) for f, c in zip(levels[-1], levels[-2]))
            assert bad == 0, bad
        per = [np.mean([int(m.max()) for m in lv]) for lv in levels]
        print(
            f"## {key} {args.labels} seed {args.noise_seed}: {len(data)} images, K={K}, start "
            f"{100 * miou(labels0, data, C):.2f}, regions/level {[round(p) for p in per]}, "
            f"s/image coarse {t_c:.3f} fine {[round(t, 3) for t in t_f]}",
            flush=True,
        )
        model = LevelModel(
            data, C, seed=args.seed, max_rows=args.max_rows or None, estimator=args.estimator
        )
        model.trust = args.trust
        model.leaf = args.leaf
        for design in args.designs.split(","):
            if design == "coarse":
                lv = [levels[0]]
            elif design == "fine":
                lv = [levels[-1]]
            elif design == "hier":
                lv = levels
            elif design.startswith("hier"):  # hier01, hier02: a subset of levels
                lv = [levels[int(c)] for c in design[4:]]
            else:
                raise SystemExit(f"unknown design {design}")
            for method in args.methods.split(","):
                mm = levels[0] if args.model == "coarse" else lv[-1]
                mp = None if (mm is levels[0] or not args.parent_features) else levels[0]
                lms = None
                if args.per_level:  # one model per level, on that level's own regions
                    lms = []
                    for est in args.per_level.split(",")[: len(lv)]:
                        m = LevelModel(data, C, seed=args.seed, estimator=est)
                        m.leaf, m.calibrate = args.leaf, args.calibrate
                        lms.append(m)
                t0 = time.perf_counter()
                mious, picked = run(
                    data,
                    C,
                    lv,
                    labels0,
                    method,
                    K,
                    args.rounds,
                    model,
                    mm,
                    mp,
                    seed=args.seed,
                    log=lambda s: print(s, file=sys.stderr, flush=True),
                    level_models=lms,
                )
                dt = (time.perf_counter() - t0) / args.rounds
                cells = " | ".join(f"{100 * m:.2f}" for m in mious)
                print(f"| {key} | {design} | {method} | {cells} | {dt:.1f} s/round |", flush=True)
                with open(args.out, "a") as fh:
                    fh.write(
                        json.dumps(
                            {
                                "dataset": key,
                                "labels": args.labels,
                                "noise_seed": args.noise_seed,
                                "design": design,
                                "fine": args.fine,
                                "model": args.model,
                                "trust": args.trust,
                                "parent_features": args.parent_features,
                                "leaf": args.leaf,
                                "per_level": args.per_level,
                                "calibrate": args.calibrate,
                                "estimator": args.estimator,
                                "method": method,
                                "K": K,
                                "miou": mious,
                                "levels_picked": picked,
                                "regions_per_level": per,
                                "s_per_round": dt,
                            }
                        )
                        + "\n"
                    )


if __name__ == "__main__":
    main()
