"""Confident automatic propagation of a round's answers to unqueried superpixels (opt-in).

The automatic correction of A2LC (Jeon, Cho, Woo, Kim, "Active and Automated Label Correction
for Semantic Segmentation", arXiv 2506.11599): a small classifier maps each superpixel's mean
class-probability vector to a class; it is trained on the superpixels a person (or the oracle)
answered this round, and relabels superpixels nobody was asked about when it is very confident,
never into the rarer half of the classes. an early prototype on road scenes saw this
collapse with a weak classifier, so here it is guarded and reversible:

- only superpixels with no query at all in ``queries_field`` (answered or pending) change;
- only to a class among the more frequent half (by current pixel counts over the collection);
- only when the predicted probability is ``>= threshold`` (0.99);
- every change is recorded in ``dataset.info["alc"]["propagations"]`` (per sample: the revised
  mask before and after, and the superpixel ids), and :func:`undo_propagation` takes a round's
  changes back; automatic changes are never counted as clicks.

Writes are conditional on the revised mask being the one read (like
:func:`~alc_fiftyone.answers.apply_answers`): if a reviewer answered on a sample meanwhile, that
sample is read again and redone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fiftyone as fo
import numpy as np

from ..core.correction import majority_class
from ..errors import ALCError
from ..models.base import FitContext
from ..models.registry import get_model
from ..progress import ProgressCallback, track
from ..review.answers import ensure_revised_field, mask_path_of
from ..review.queries import ANSWERED
from ..store import db
from ..store.fields import (
    QUERIES_FIELD,
    REVISED_FIELD,
    SUPERPIXELS_FIELD,
    class_table,
    read_current_labels,
)
from ..store.files import read_image, read_png_array, read_segmentation, write_mask
from ..store.info import alc_info, update_alc_info
from ..store.roles import check_ranking_fields

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


MAX_ATTEMPTS = 20


def superpixel_means(probs: np.ndarray, superpixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (S, C) mean probability vector) of each superpixel id > 0 in ``superpixels``."""
    sp = np.asarray(superpixels).ravel().astype(np.int64)
    C = probs.shape[0]
    n = int(sp.max(initial=0)) + 1
    counts = np.bincount(sp, minlength=n).astype(np.float64)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    flat = probs.reshape(C, -1)
    sums = np.stack([np.bincount(sp, weights=flat[c], minlength=n) for c in range(C)], axis=1)
    return ids, sums[ids] / counts[ids, None]


def _make_classifier(classifier, seed: int):
    if not isinstance(classifier, str):
        from sklearn.base import clone

        return clone(classifier)
    if classifier == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=seed)
    if classifier == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, C=10.0)
    raise ValueError(f"unknown classifier {classifier!r}; use 'mlp', 'logreg' or an estimator")


def frequent_classes(samples, read_labels, num_classes: int, ignore) -> list[int]:
    """The more frequent half of the classes (``ceil(C / 2)``, ties to the smaller value) by
    current pixel counts over ``samples``; absent classes are never in it."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for sample in samples.iter_samples():
        lab = read_labels(sample).ravel().astype(np.int64)
        if ignore is not None:
            lab = lab[lab != ignore]
        counts += np.bincount(lab[(lab >= 0) & (lab < num_classes)], minlength=num_classes)
    order = sorted(range(num_classes), key=lambda c: (-counts[c], c))
    return [c for c in order[: (num_classes + 1) // 2] if counts[c] > 0]


def propagate_answers(
    samples: SampleCollection,
    label_field: str,
    round: int | None = None,
    model: Any = "features",
    threshold: float = 0.99,
    classifier: Any = "mlp",
    superpixel_field: str = SUPERPIXELS_FIELD,
    queries_field: str = QUERIES_FIELD,
    revised_field: str = REVISED_FIELD,
    model_kwargs: dict | None = None,
    seed: int = 0,
    fitted: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Relabel confidently predicted, never-queried superpixels from a round's answers.

    ``round`` is the round of ``queries_field`` whose answers train the classifier (default:
    the last one). ``model`` gives each superpixel's mean probability vector: it is fitted on
    the current labels first unless ``fitted`` is True (then ``model`` must be a fitted
    :class:`~alc_fiftyone.probabilities.ProbabilityModel`, e.g. the one the round was ranked
    with). A confirmed (no-op) answer trains with the region's majority current label.

    Returns a summary: ``round``, ``trained_on`` (answers), ``superpixels`` and ``pixels``
    changed, ``samples`` touched and ``allowed_classes``. Take it back with
    :func:`undo_propagation`.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    label_field
        The labels under review (an ``fo.Segmentation`` field).
    round
        The ranking round (default: the last one).
    model
        P(class | pixel): ``"features"``, ``"sam_head"``, ``"backbone:<resnet>"``,
        ``"field:<name>"``, a callable ``fn(sample, image) -> (C, H, W)`` or a
        :class:`~alc_fiftyone.models.base.ProbabilityModel`.
    threshold
        Relabel only where the classifier's probability is at least this.
    classifier
        ``"mlp"``, ``"logreg"`` or a scikit-learn classifier.
    superpixel_field
        The superpixel id maps.
    queries_field
        The ``fo.Detections`` field holding the queries.
    revised_field
        The field of the corrected labels.
    model_kwargs
        Keyword arguments of the model.
    seed
        Seed of everything random in the step.
    fitted
        Whether ``model`` is already fitted on the current labels.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        ``round``, ``trained_on``, ``superpixels``, ``pixels``, ``samples``, ``allowed_classes``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    check_ranking_fields(samples, label_field, superpixel_field, queries_field, revised_field)
    dataset = db.dataset_of(samples)
    names, ignore, num_classes = class_table(dataset, label_field)
    if not samples.has_field(queries_field):
        raise ALCError(f"no queries in field {queries_field!r}: rank and answer a round first")
    rounds = [int(r) for r in samples.values(f"{queries_field}.detections.round", unwind=True)]
    if not rounds:
        raise ALCError(f"no queries in field {queries_field!r}")
    if round is None:
        round = max(rounds)

    def read_labels(sample):
        return read_current_labels(sample, label_field, revised_field)

    prob_model = model if fitted else get_model(model, **(model_kwargs or {}))
    if not fitted:
        prob_model.fit(
            FitContext(samples, read_labels, superpixel_field, num_classes, ignore, progress)
        )

    # one pass: mean probability vectors of answered (training) and never-queried superpixels
    x_train, y_train = [], []
    cand: list[tuple[str, np.ndarray, np.ndarray]] = []  # (sample id, ids, means)
    for sample in track(samples.iter_samples(), len(samples), progress, "propagation"):
        sp = read_segmentation(sample, superpixel_field)
        image = read_image(sample) if prob_model.needs_image else None
        probs = prob_model.predict(sample, sp, image)
        ids, means = superpixel_means(probs, sp)
        dets = sample[queries_field].detections if sample[queries_field] else []
        queried = {int(d.get_field("superpixel_id")) for d in dets}
        labels = None
        row = {int(s): i for i, s in enumerate(ids)}
        for d in dets:
            if int(d.get_field("round")) != round or d.get_field("status") not in ANSWERED:
                continue
            i = row.get(int(d.get_field("superpixel_id")))
            if i is None:
                continue
            value = d.get_field("answer_value") if d.has_field("answer_value") else None
            if value is None:
                if labels is None:
                    labels = read_labels(sample)
                value = majority_class(labels[sp == ids[i]], num_classes, ignore)
            if value is None or not 0 <= int(value) < num_classes:
                continue  # an ignore answer teaches no class
            x_train.append(means[i])
            y_train.append(int(value))
        keep = np.array([int(s) not in queried for s in ids], dtype=bool)
        if keep.any():
            cand.append((sample.id, ids[keep], means[keep]))

    allowed = frequent_classes(samples, read_labels, num_classes, ignore)
    summary = {
        "round": round,
        "trained_on": len(y_train),
        "threshold": threshold,
        "allowed_classes": [names.get(c, str(c)) for c in allowed],
        "superpixels": 0,
        "pixels": 0,
        "samples": 0,
    }
    if len(set(y_train)) < 2 or not cand:
        return summary  # nothing to learn a decision from, or nothing to relabel
    clf = _make_classifier(classifier, seed)
    clf.fit(np.asarray(x_train, dtype=np.float64), np.asarray(y_train))
    classes = np.asarray(clf.classes_)
    allowed_set = set(allowed)

    record_samples = {}
    for sample_id, ids, means in cand:
        p = clf.predict_proba(means)
        best = p.argmax(axis=1)
        conf = p[np.arange(len(p)), best]
        pred = classes[best]
        ok = (conf >= threshold) & np.isin(pred, list(allowed_set))
        if not ok.any():
            continue
        todo = {int(s): int(c) for s, c in zip(ids[ok], pred[ok])}
        done = _write_sample(
            dataset, sample_id, todo, label_field, revised_field, names, superpixel_field
        )
        if done is None:
            continue
        record_samples[sample_id] = done
        summary["superpixels"] += len(done["superpixels"])
        summary["pixels"] += done["pixels"]
    summary["samples"] = len(record_samples)
    if record_samples:
        info = alc_info(dataset)
        props = [
            p
            for p in info.get("propagations", [])
            if not (p.get("queries_field") == queries_field and p.get("round") == round)
        ]
        props.append(
            {
                **{k: v for k, v in summary.items() if k != "allowed_classes"},
                "allowed_classes": allowed,
                "queries_field": queries_field,
                "revised_field": revised_field,
                "label_field": label_field,
                "superpixel_field": superpixel_field,
                "at": datetime.now(timezone.utc).isoformat(),
                "changes": record_samples,
            }
        )
        update_alc_info(dataset, propagations=props)
    return summary


def _conditional_set(dataset, sample_id, revised_field, expected, new_path) -> bool:
    cond = (
        {f"{revised_field}.mask_path": {"$in": [None]}}
        if expected is None
        else {f"{revised_field}.mask_path": expected}
    )
    value = None if new_path is None else fo.Segmentation(mask_path=new_path).to_mongo()
    res = db.update_sample(dataset, sample_id, cond, {"$set": {revised_field: value}})
    return res.matched_count == 1


def _write_sample(dataset, sample_id, todo, label_field, revised_field, names, sp_field):
    """Write the relabelled superpixels of one sample; returns its record or None."""
    for _ in range(MAX_ATTEMPTS):
        sample = dataset[sample_id]
        sample.reload()
        sp = read_segmentation(sample, sp_field)
        labels = read_current_labels(sample, label_field, revised_field)
        before = mask_path_of(sample, revised_field)
        lut = np.full(int(sp.max(initial=0)) + 1, -1, dtype=np.int64)
        for s, c in todo.items():
            if s < lut.size:
                lut[s] = c
        target = lut[sp]
        change = (target >= 0) & (labels != target)
        n = int(change.sum())
        if n == 0:
            return None
        changed_ids = sorted({int(s) for s in np.unique(sp[change])})
        labels[change] = target[change].astype(labels.dtype)
        ensure_revised_field(dataset, label_field, revised_field, names)
        new_path = write_mask(labels, dataset, revised_field, sample_id)
        if _conditional_set(dataset, sample_id, revised_field, before, new_path):
            return {
                "before": before,
                "after": new_path,
                "superpixels": changed_ids,
                "values": [todo[s] for s in changed_ids],
                "pixels": n,
            }
        Path(new_path).unlink(missing_ok=True)
    raise ALCError(f"sample {sample_id} kept changing under the propagation; try again")


def undo_propagation(
    dataset: SampleCollection, round: int | None = None, queries_field: str = QUERIES_FIELD
) -> int:
    """Take back the automatic changes of ``round`` (default: the last propagation of
    ``queries_field``); returns the number of pixels restored.

    Where the revised mask is still the one the propagation wrote, the mask from before it is
    restored as it was (exactly). Where answers came after it, only pixels of the propagated
    superpixels that still hold the propagated class are restored; later answers stay.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    round
        The ranking round (default: the last one).
    queries_field
        The ``fo.Detections`` field holding the queries.

    Returns
    -------
    int
        The number of pixels restored.
    """
    dataset = db.dataset_of(dataset)
    info = alc_info(dataset)
    props = info.get("propagations", [])
    mine = [i for i, p in enumerate(props) if p.get("queries_field") == queries_field]
    if round is not None:
        mine = [i for i in mine if props[i].get("round") == round]
    if not mine:
        raise ALCError(f"no propagation to undo for {queries_field!r} round {round}")
    rec = props[mine[-1]]
    revised_field, label_field = rec["revised_field"], rec["label_field"]
    restored = 0
    for sample_id, ch in rec["changes"].items():
        for _ in range(MAX_ATTEMPTS):
            sample = dataset[sample_id]
            sample.reload()
            current = mask_path_of(sample, revised_field)
            if current == ch["after"]:
                if _conditional_set(dataset, sample_id, revised_field, current, ch["before"]):
                    restored += ch["pixels"]
                    break
                continue
            labels = read_segmentation(sample, revised_field)
            before = (
                read_png_array(ch["before"], sample_id)
                if ch["before"]
                else read_segmentation(sample, label_field)
            )
            sp = read_segmentation(sample, rec["superpixel_field"])
            lut = np.full(int(sp.max(initial=0)) + 1, -1, dtype=np.int64)
            for s, c in zip(ch["superpixels"], ch["values"]):
                if s < lut.size:
                    lut[s] = c
            back = (lut[sp] >= 0) & (labels == lut[sp]) & (labels != before)
            if not back.any():
                break
            labels[back] = before[back]
            new_path = write_mask(labels, dataset, revised_field, sample_id)
            if _conditional_set(dataset, sample_id, revised_field, current, new_path):
                restored += int(back.sum())
                break
            Path(new_path).unlink(missing_ok=True)
    del props[mine[-1]]
    update_alc_info(dataset, propagations=props)
    return restored


__all__ = ["frequent_classes", "propagate_answers", "superpixel_means", "undo_propagation"]
