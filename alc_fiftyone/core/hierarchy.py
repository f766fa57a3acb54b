"""Regions at several sizes that nest: the arrays of a region hierarchy.

A hierarchy is a list of id maps of one image, coarsest first (level 0 = the label-aware
regions, level 1 = those cut finer, ...), each region of a level inside exactly one region of
the level above (:func:`alc_fiftyone.core.regions.nested_regions` makes such levels). One
ranking takes candidates from every level, so big regions are asked while they pay and their
pieces when they stop paying (docs/method.md, "Regions at several sizes"). Three rules keep
the levels from getting in each other's way:

- a region and one inside it (or around it) are never asked in the same round
  (:class:`ConflictFreeSelector`);
- an answer to a region leaves the regions inside it candidates (they are scored on the
  labels the answer wrote), and
- a region that holds answered pieces of a finer level is scored, and answered, on its
  unanswered pixels only (:func:`unanswered_map`): an answer never overwrites a finer answer.

Pure numpy; no FiftyOne import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ConflictFreeSelector",
    "check_nested",
    "parents_of",
    "unanswered_map",
]


def parents_of(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """(max fine id + 1,) int64: the coarse id holding each fine id (0 for ids not present).

    The maps must nest (:func:`check_nested`); for a fine id that straddles coarse regions the
    coarse id of its largest share is returned.
    """
    fine = np.asarray(fine).ravel().astype(np.int64)
    coarse = np.asarray(coarse).ravel().astype(np.int64)
    if fine.shape != coarse.shape:
        raise ValueError("the fine and coarse maps differ in size")
    nf = int(fine.max(initial=0)) + 1
    pairs, counts = np.unique(fine * (int(coarse.max(initial=0)) + 1) + coarse, return_counts=True)
    f, c = np.divmod(pairs, int(coarse.max(initial=0)) + 1)
    order = np.lexsort((-counts, f))  # per fine id, the largest share first
    out = np.zeros(nf, dtype=np.int64)
    first = np.ones(order.size, dtype=bool)
    first[1:] = f[order][1:] != f[order][:-1]
    out[f[order][first]] = c[order][first]
    out[0] = 0
    return out


def check_nested(fine: np.ndarray, coarse: np.ndarray) -> int:
    """The number of fine regions that straddle a coarse border (0 when the maps nest)."""
    fine = np.asarray(fine).ravel().astype(np.int64)
    coarse = np.asarray(coarse).ravel().astype(np.int64)
    if fine.shape != coarse.shape:
        raise ValueError("the fine and coarse maps differ in size")
    pairs = np.unique(fine * (int(coarse.max(initial=0)) + 1) + coarse)
    f = pairs // (int(coarse.max(initial=0)) + 1)
    return int(np.count_nonzero(np.bincount(f) > 1))


def unanswered_map(level_map: np.ndarray, answered_finer: np.ndarray | None) -> np.ndarray:
    """``level_map`` with the pixels of answered finer regions set to 0 (no region): what a
    region of this level is scored and answered on."""
    if answered_finer is None or not answered_finer.any():
        return level_map
    out = np.array(level_map, copy=True)
    out[answered_finer] = 0
    return out


class ConflictFreeSelector:
    """Greedy selection over the candidates of one image's levels in which no region is taken
    together with a region inside or around it.

    ``parents[l]`` maps the ids of level ``l + 1`` to their region of level ``l``. Offer
    candidates best first with :meth:`offer`; it takes a candidate unless an ancestor or a
    descendant of it was taken. Taking the best conflict-free candidates in score order per
    image and then the global top-B over images equals the greedy over all images at once
    (a candidate is only ever displaced by a better one of the same image).
    """

    def __init__(self, parents: Sequence[np.ndarray]):
        self.parents = [np.asarray(p, dtype=np.int64) for p in parents]
        self.taken: list[set[int]] = [set() for _ in range(len(self.parents) + 1)]
        self.below: list[set[int]] = [set() for _ in range(len(self.parents) + 1)]

    def ancestors(self, level: int, rid: int) -> list[tuple[int, int]]:
        """[(level, id)] of the regions holding region ``rid`` of ``level``, nearest first."""
        out = []
        for lv in range(level, 0, -1):
            p = self.parents[lv - 1]
            rid = int(p[rid]) if rid < p.size else 0
            out.append((lv - 1, rid))
        return out

    def conflicts(self, level: int, rid: int) -> bool:
        if rid in self.taken[level] or rid in self.below[level]:
            return True
        return any(a in self.taken[lv] for lv, a in self.ancestors(level, rid))

    def offer(self, level: int, rid: int) -> bool:
        """Take region ``rid`` of ``level`` unless it conflicts; returns whether it was taken."""
        if self.conflicts(level, rid):
            return False
        self.taken[level].add(int(rid))
        for lv, a in self.ancestors(level, rid):
            self.below[lv].add(a)
        return True
