"""The candidates of one image in a ranking: every region of every level of its hierarchy.

:func:`read_levels` reads the levels a sample has (the top superpixel map and the finer maps
made on it, :func:`alc_fiftyone.compute_superpixels` with ``levels``); :func:`score_image`
scores each level on its unanswered pixels and offers the image's candidates, best first, to
the ranking's global top-B heap, never a region together with one inside or around it
(:class:`alc_fiftyone.core.hierarchy.ConflictFreeSelector`). With one level this is the
ranking of one superpixel map, as before hierarchies existed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..core import acquisition as acq
from ..core.hierarchy import ConflictFreeSelector, parents_of, unanswered_map
from ..review.queries import level_exclusions
from ..store.files import read_segmentation


@dataclass(order=True)
class Candidate:
    key: tuple  # (score, -sample order, -level, -region id): larger is asked first
    sample_id: str = field(compare=False)
    payload: dict = field(compare=False)


@dataclass
class ImageLevels:
    """The levels of one sample's hierarchy: fields, id maps and mask paths, top first."""

    fields: list[str]
    maps: list[np.ndarray]
    paths: list[str | None]

    def __len__(self) -> int:
        return len(self.maps)


def read_levels(sample, level_fields: list[str]) -> ImageLevels:
    """The levels of ``sample``: the top map, then each finer level as long as the sample has
    it and it was made on the map above it as the sample holds it now (a level left from an
    earlier top map is not used)."""
    top = level_fields[0]
    maps = [read_segmentation(sample, top)]
    paths = [sample[top].mask_path]
    fields = [top]
    for name in level_fields[1:]:
        seg = sample[name] if sample.has_field(name) else None
        if seg is None or seg.get_field("parent_path") != paths[-1]:
            break
        level = read_segmentation(sample, name)
        if level.shape != maps[0].shape:
            break
        maps.append(level)
        paths.append(seg.mask_path)
        fields.append(name)
    return ImageLevels(fields, maps, paths)


@dataclass
class ImageScores:
    """What :func:`score_image` computed: the scores of each level (on its scoring map) and
    which of them may be asked."""

    levels: ImageLevels
    smaps: list[np.ndarray]
    results: list
    keep: list[np.ndarray]
    num_excluded: int


def score_image(
    levels: ImageLevels,
    labels,
    kept_dets: list,
    exclude_answered: bool,
    score_level,
    asked: int | None = None,
) -> ImageScores:
    """Score every level of one image on its unanswered pixels.

    ``score_level(level, scoring_map) -> SuperpixelScores`` scores one map (the acquisition,
    or a benchmark's scorer). A region is left out when a kept query excludes it
    (:func:`alc_fiftyone.review.queries.level_exclusions`), or when its unanswered pixels all
    lie in one region of the level below (that region stands for it: the same pixels are
    never two candidates). Only the first ``asked`` levels (default: all) give candidates;
    the answers on every level are respected.
    """
    n = len(levels)
    excluded, answered = level_exclusions(kept_dets, levels.maps, levels.paths, exclude_answered)
    smaps: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    finer = None
    for lv in range(n - 1, -1, -1):
        smaps[lv] = unanswered_map(levels.maps[lv], finer)
        if answered[lv] is not None:
            finer = answered[lv] if finer is None else (finer | answered[lv])
    results, keep = [], []
    num_excluded = 0
    asked = n if asked is None else min(int(asked), n)
    for lv in range(asked):
        res = score_level(lv, smaps[lv])
        k = np.ones(len(res), dtype=bool)
        if excluded[lv] and len(res):
            out = np.isin(res.ids, np.fromiter(excluded[lv], np.int64))
            num_excluded += int(out.sum())
            k &= ~out
        if lv + 1 < asked and len(res):
            k &= ~np.isin(res.ids, _single_child(smaps[lv], levels.maps[lv + 1]))
        results.append(res)
        keep.append(k)
    return ImageScores(levels, smaps, results, keep, num_excluded)


def _single_child(smap: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Ids of ``smap`` whose pixels all lie in one region of the level ``below``."""
    inside = smap > 0
    if not inside.any():
        return np.zeros(0, dtype=np.int64)
    top = int(below.max()) + 1
    pairs = np.unique(smap[inside].astype(np.int64) * top + below[inside].astype(np.int64))
    parent = pairs // top
    counts = np.bincount(parent)
    return np.flatnonzero(counts == 1)


#: a finer level's scores count this much less per level in the one ranking over all levels
#: (level ``l``: ``score * FINER_LEVEL_WEIGHT ** l``): the acquisition's estimate of the pixels
#: one answer fixes is less sure on the small regions of a finer level, and taking them while
#: the big regions still pay cost CamVid 1.6 points in round 1. Measured (sim, 50 images,
#: corrupt_labels seed 0, 10 rounds; BENCHMARKS.md, "Regions at several sizes"), data mIoU
#: after rounds 1 / 10: weight 1: CamVid 60.7 / 82.7, horses 54.0 / 85.3; 0.5: 62.1 / 82.9,
#: 55.3 / 86.7; 0.25: 62.2 / 82.9, 54.0 / 87.4 (the top level alone: 62.2 / 82.7, 54.1 /
#: 84.7). The queries keep their own, unweighted score.
FINER_LEVEL_WEIGHT = 0.25


def push_image(
    heap: list,
    budget: int,
    scored: ImageScores,
    order: int,
    sample_id: str,
    probs,
    labels,
    maker,
    level_weight: float = FINER_LEVEL_WEIGHT,
) -> None:
    """Offer an image's candidates of every level to the global top-``budget`` heap, best
    first (a finer level's scores times ``level_weight`` per level), skipping any region a
    better one inside or around it was taken for (a query's content is built only for
    regions that make it in). ``probs``: the (C, H, W) probabilities of each level."""
    levels = scored.levels
    rows = []
    for lv, (res, k) in enumerate(zip(scored.results, scored.keep)):
        idx = np.flatnonzero(k)
        if idx.size:
            rows.append((res.scores[idx], np.full(idx.size, lv), idx, res.ids[idx]))
    if not rows:
        return
    scores = np.concatenate([r[0] for r in rows])
    lvs = np.concatenate([r[1] for r in rows])
    if level_weight != 1.0 and lvs.any():
        scores = scores * np.power(float(level_weight), lvs)
    idxs = np.concatenate([r[2] for r in rows])
    ids = np.concatenate([r[3] for r in rows])
    # best first; ties to the coarser level, then the smaller id
    ordering = np.lexsort((ids, lvs, -scores))
    selector = None
    asked = len(scored.results)
    if asked > 1:
        selector = ConflictFreeSelector(
            [parents_of(levels.maps[lv + 1], levels.maps[lv]) for lv in range(asked - 1)]
        )
    windows: dict[int, list] = {}
    for j in ordering:
        lv, i, rid = int(lvs[j]), int(idxs[j]), int(ids[j])
        key = (float(scores[j]), -order, -lv, -rid)
        if len(heap) >= budget and key <= heap[0].key:
            break
        if selector is not None and not selector.offer(lv, rid):
            continue
        payload = region_payload(scored, windows, lv, i, probs, labels, maker)
        cand = Candidate(key, sample_id, payload)
        if len(heap) < budget:
            heapq.heappush(heap, cand)
        else:
            heapq.heapreplace(heap, cand)


def region_payload(
    scored: ImageScores, windows: dict, lv: int, i: int, probs, labels, maker
) -> dict:
    """A query's content for candidate ``i`` of level ``lv`` of one image (``windows``: the
    bounding boxes of each level's regions, filled on first use), with its level, field and
    mask path."""
    if lv not in windows:
        windows[lv] = ndimage.find_objects(scored.smaps[lv])
    res = scored.results[lv]
    rid = int(res.ids[i])
    payload = maker.payload(
        probs[lv],
        scored.smaps[lv],
        labels,
        windows[lv][rid - 1],
        rid,
        res.rep_yx[i],
        res.scores[i],
        res.sizes[i],
    )
    levels = scored.levels
    payload.update(level=lv, superpixel_field=levels.fields[lv], superpixel_path=levels.paths[lv])
    return payload


def acquisition_scorer(probs, labels, method, tau, ignore, device, seed, extra):
    """``score_level`` for :func:`score_image`: the acquisition ``method`` on one level's map,
    with that level's probabilities (``probs[level]``)."""

    def score(level, smap):
        return acq.score_superpixels(
            probs[level],
            smap,
            labels,
            method=method,
            tau=tau,
            ignore_index=ignore,
            device=device,
            seed=seed + 7919 * level,
            **extra,
        )

    return score


@dataclass
class FrameUnits:
    """The regions of one image that a ranking's random sample may draw (its *frame*): the
    candidates of the finest level asked, with their scores, pixels and the regions of the
    levels above that hold them (``ancestors[:, l]`` is the region of level ``l``)."""

    level: int
    ids: np.ndarray
    scores: np.ndarray
    sizes: np.ndarray
    ancestors: np.ndarray

    def outside(self, taken: set[tuple[int, int]]) -> np.ndarray:
        """(len(ids),) bool: the units neither taken themselves nor inside a taken region
        (``taken`` holds ``(level, id)`` of the ranked queries of the image). At the finest
        level asked nothing lies inside a unit, so this is the conflict-free rule of
        :class:`~alc_fiftyone.core.hierarchy.ConflictFreeSelector`."""
        ok = np.ones(self.ids.size, dtype=bool)
        if not taken:
            return ok
        for lv, rid in taken:
            if lv == self.level:
                ok &= self.ids != rid
            elif lv < self.level:
                ok &= self.ancestors[:, lv] != rid
        return ok


def frame_units(scored: ImageScores) -> FrameUnits:
    """The frame of a random sample in one image (:class:`FrameUnits`): the candidates of the
    finest level asked of ``scored``."""
    lv = len(scored.results) - 1
    res, keep = scored.results[lv], scored.keep[lv]
    idx = np.flatnonzero(keep)
    ids = res.ids[idx].astype(np.int64)
    anc = np.zeros((ids.size, lv), dtype=np.int64)
    cur = ids
    maps = scored.levels.maps
    for up in range(lv - 1, -1, -1):
        p = parents_of(maps[up + 1], maps[up])
        cur = np.where(cur < p.size, p[np.minimum(cur, p.size - 1)], 0)
        anc[:, up] = cur
    return FrameUnits(
        lv, ids, res.scores[idx].astype(np.float64), res.expanded_sizes[idx].astype(np.int64), anc
    )
