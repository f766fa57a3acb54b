"""What each field of a dataset holds, and the one rule every step asks before it writes one.

The rule: no step writes into a field that holds the labels under review, a ground truth, or
another step's output of a different kind; and a step reads the regions of a ranking only
from a field of superpixels. What a field holds is told by what the dataset records, never by
the field's name:

- ``info["alc"]``: the ``label_field`` (the labels under review) and ``gt_field`` the loaders
  record, ``instances_field`` (VOC object masks), every ranking round's ``label_field``,
  ``superpixel_field``, ``queries_field`` and ``revised_field``, the ``superpixels`` record of
  every superpixel field (and the ``label_field`` label-aware regions followed), the
  ``ground_truth`` fields of simulations (with their queries and revised fields) and of
  ``corrupt_labels``, the ``noisy_labels`` fields ``corrupt_labels`` wrote (and the older
  single ``noise`` record), the ``pseudo_labels`` fields and their instances;
- ``info["alc"]["outputs"]``: the kind of every field a per-sample step writes, recorded by
  :func:`record_output` before its first mask (so an interrupted run is recognised too);
- the masks themselves: a ``num_superpixels`` attribute (superpixel maps), queries with a
  ``superpixel_id`` (a queries field), and class names in ``dataset.mask_targets`` (class
  labels, for a field nothing else records).

A field that holds masks no record explains is never written by a step either: they may be
someone's labels. :func:`require_writable` is that check; :func:`check_ranking_fields` applies
it to the four fields of a ranking; :func:`require_readable` refuses to read, say, class labels
as superpixels.
"""

from __future__ import annotations

from ..errors import ALCError
from .db import dataset_of
from .info import alc_info

#: the kinds of content a field can hold
LABELS = "labels"  # the labels under review
GROUND_TRUTH = "ground truth"
NOISY = "noisy labels"  # written by corrupt_labels
PSEUDO = "pseudo labels"  # written by generate_pseudo_labels
CLASSES = "class labels"  # class names in mask_targets, nothing else recorded
SUPERPIXELS = "superpixels"
INSTANCES = "instance masks"
QUERIES = "queries"
REVISED = "revised labels"

#: what a field written as the key may hold besides it (labels a step made are the labels
#: under review when a user ranks them; every step that writes class labels names the classes)
COMPATIBLE = {
    SUPERPIXELS: (),
    NOISY: (LABELS, CLASSES),
    PSEUDO: (LABELS, CLASSES),
    INSTANCES: (),
    QUERIES: (),
    REVISED: (CLASSES,),
}
#: what a field read as the key must not hold
CONTRADICTS = {
    LABELS: (SUPERPIXELS, INSTANCES, QUERIES),
    SUPERPIXELS: (LABELS, GROUND_TRUTH, NOISY, PSEUDO, CLASSES, QUERIES, REVISED),
}


def field_roles(dataset, field: str) -> dict[str, str]:
    """What ``field`` holds, by what ``dataset`` records (see the module's docstring).

    Parameters
    ----------
    dataset
        The dataset (or a view of it: the whole dataset is looked at).
    field
        A sample field name.

    Returns
    -------
    dict
        ``{kind: why}``: each kind of content the records give the field (:data:`LABELS`,
        :data:`GROUND_TRUTH`, :data:`SUPERPIXELS`, ...) with the record that says so, in words;
        empty when nothing records the field.
    """
    dataset = dataset_of(dataset)
    info = alc_info(dataset)
    roles: dict[str, str] = {}

    def add(kind: str, why: str) -> None:
        roles.setdefault(kind, why)

    if info.get("label_field") == field:
        add(LABELS, "the labels under review (info['alc']['label_field'])")
    if info.get("gt_field") == field:
        add(GROUND_TRUTH, "the ground truth (info['alc']['gt_field'])")
    if info.get("instances_field") == field:
        add(INSTANCES, "the object masks of the import (info['alc']['instances_field'])")
    output = (info.get("outputs") or {}).get(field) or {}
    if output.get("kind") in COMPATIBLE:
        add(output["kind"], f"{output['kind']} ({output.get('step', 'an alc-fiftyone step')})")
    for record in info.get("rounds") or []:
        where = f"ranking round {record.get('round')} of {record.get('queries_field')!r}"
        if record.get("label_field") == field:
            add(LABELS, f"the labels under review ({where})")
        if record.get("superpixel_field") == field:
            add(SUPERPIXELS, f"the superpixels of {where}")
        if record.get("queries_field") == field:
            add(QUERIES, f"the queries of {where}")
        if record.get("revised_field") == field:
            add(REVISED, f"the corrections of {where}")
    for name, record in (info.get("superpixels") or {}).items():
        record = record or {}
        if name == field:
            add(SUPERPIXELS, f"superpixels ({record.get('method', 'compute_superpixels')})")
        if record.get("label_field") == field:
            add(LABELS, f"the labels under review (the superpixels in {name!r} follow them)")
    for name, record in (info.get("ground_truth") or {}).items():
        record = record or {}
        by = record.get("by", "a simulation")
        if name == field:
            add(GROUND_TRUTH, f"the ground truth of {by}")
        if record.get("queries_field") == field:
            add(QUERIES, f"the queries of the {by} against {name!r}")
        if record.get("revised_field") == field:
            add(REVISED, f"the corrections of the {by} against {name!r}")
    noisy = dict(info.get("noisy_labels") or {})
    old = info.get("noise") or {}
    if old.get("out_field"):
        noisy.setdefault(old["out_field"], old)
    for name, record in noisy.items():
        if name == field:
            add(NOISY, "noisy labels (corrupt_labels)")
        if (record or {}).get("gt_field") == field:
            add(GROUND_TRUTH, f"the ground truth that corrupt_labels made {name!r} from")
    for name, record in (info.get("pseudo_labels") or {}).items():
        if name == field:
            add(PSEUDO, "pseudo labels (generate_pseudo_labels)")
        if (record or {}).get("instances_field") == field:
            add(INSTANCES, f"the instance masks of the pseudo labels in {name!r}")
    if dataset.has_field(field):
        _content_roles(dataset, field, add, recorded=bool(roles))
    return roles


def _content_roles(dataset, field: str, add, recorded: bool) -> None:
    """The kinds the masks themselves tell: superpixel counts, queries, class names."""
    import fiftyone as fo

    doc_type = getattr(dataset.get_field(field), "document_type", None)
    if doc_type is fo.Segmentation:
        if dataset.count(f"{field}.num_superpixels"):
            add(SUPERPIXELS, "superpixels (its masks carry num_superpixels)")
        elif not recorded and (dataset.mask_targets or {}).get(field):
            add(CLASSES, "class labels (dataset.mask_targets names its classes)")
    elif doc_type is fo.Detections and dataset.count(f"{field}.detections.superpixel_id"):
        add(QUERIES, "correction queries (they carry superpixel ids)")


def holds_data(dataset, field: str) -> bool:
    """Whether any sample of ``dataset`` (the whole dataset) has a value in ``field``."""
    dataset = dataset_of(dataset)
    return dataset.has_field(field) and dataset.count(field) > 0


def _described(roles: dict[str, str]) -> str:
    return "; ".join(roles.values())


def require_writable(samples, field: str, kind: str, step: str) -> None:
    """ALCError unless ``step`` may write ``kind`` (e.g. :data:`SUPERPIXELS`) into ``field``.

    A field may be written when it holds nothing yet, or when the records say it holds this
    step's own kind of output (a rerun, ``overwrite=True``) and nothing of another kind: never
    the labels under review, a ground truth, another step's output, or masks no record
    explains. Called by every step before it writes a field (:func:`compute_mask_field`, the
    ranking, the simulation, propagation), so the rule holds in one place.

    Parameters
    ----------
    samples
        The dataset or view the step writes to (the whole dataset is checked).
    field
        The field the step would write.
    kind
        What it would write: :data:`SUPERPIXELS`, :data:`NOISY`, :data:`PSEUDO`,
        :data:`INSTANCES`, :data:`QUERIES` or :data:`REVISED`.
    step
        The step's name, for the message (e.g. ``"compute_superpixels"``).
    """
    if not field or not str(field).strip():
        raise ValueError(f"{step}: the output field needs a name")
    roles = field_roles(samples, field)
    other = {k: why for k, why in roles.items() if k != kind and k not in COMPATIBLE[kind]}
    if other:
        raise ALCError(
            f"{step} would write {kind} into {field!r}, which holds {_described(other)}: "
            "that would destroy them, so nothing was written; choose another field"
        )
    if kind not in roles and holds_data(samples, field):
        raise ALCError(
            f"{step} would write {kind} into {field!r}, which already holds data that no "
            f"alc-fiftyone step recorded as {kind} (it may be someone's labels), so nothing "
            "was written; choose another field, or delete that field first"
        )


def record_output(samples, field: str, kind: str, step: str) -> None:
    """Record in ``info["alc"]["outputs"]`` that ``step`` writes ``kind`` into ``field``
    (after :func:`require_writable`, before the first mask is written; one atomic ``$set``).

    Parameters
    ----------
    samples
        The dataset or view the step writes to.
    field
        The field it writes.
    kind
        What it writes (see :func:`require_writable`).
    step
        The step's name.
    """
    from .info import update_alc_info

    dataset = dataset_of(samples)
    record = {"kind": kind, "step": step}
    if (alc_info(dataset).get("outputs") or {}).get(field) != record:
        update_alc_info(dataset, **{f"outputs.{field}": record})


def require_readable(samples, field: str, kind: str, what: str) -> None:
    """ALCError when the records say ``field`` holds something that contradicts reading it as
    ``kind`` (:data:`LABELS` or :data:`SUPERPIXELS`): e.g. class labels read as superpixels
    (class 0 would mean "no superpixel"), or superpixel ids read as classes.

    Parameters
    ----------
    samples
        The dataset or view the step reads.
    field
        The field it would read.
    kind
        What it would read the field as: :data:`LABELS` or :data:`SUPERPIXELS`.
    what
        The parameter, for the message (e.g. ``"superpixel_field"``).
    """
    roles = field_roles(samples, field)
    bad = {k: why for k, why in roles.items() if k in CONTRADICTS[kind]}
    if bad:
        raise ALCError(
            f"{what} {field!r} holds {_described(bad)}, not {kind}; "
            + (
                "compute superpixels with alc.compute_superpixels and pass their field"
                if kind == SUPERPIXELS
                else "pass the field of the class labels"
            )
        )


def check_ranking_fields(
    samples,
    label_field: str,
    superpixel_field: str,
    queries_field: str,
    revised_field: str,
    reset: bool = False,
) -> None:
    """The fields of a ranking (or a simulation) checked together, before anything is read or
    written: four different fields, the label field holding class labels, the superpixel
    field superpixels, and the queries and revised fields writable as such
    (:func:`require_writable`); a revised field holding the corrections of another label
    field is refused too (they would be read as the current labels).

    Parameters
    ----------
    samples
        The dataset or view ranked.
    label_field
        The labels under review.
    superpixel_field
        The superpixel id maps.
    queries_field
        The field that receives the queries.
    revised_field
        The field the answers write.
    reset
        The queries and revised fields are cleared first (a simulation's own fields): the
        corrections they hold now do not matter.
    """
    fields = {
        "label_field": label_field,
        "superpixel_field": superpixel_field,
        "queries_field": queries_field,
        "revised_field": revised_field,
    }
    for what, field in fields.items():
        if not field or not str(field).strip():
            raise ValueError(f"{what} is empty: name a field")
    seen: dict[str, str] = {}
    for what, field in fields.items():
        if field in seen:
            raise ALCError(
                f"{what} and {seen[field]} are both {field!r}: a ranking reads the labels and "
                "the superpixels and writes queries and corrections, each in a field of its "
                "own"
            )
        seen[field] = what
    require_readable(samples, label_field, LABELS, "label_field")
    if dataset_of(samples).has_field(superpixel_field):
        require_readable(samples, superpixel_field, SUPERPIXELS, "superpixel_field")
    require_writable(samples, queries_field, QUERIES, "ranking")
    require_writable(samples, revised_field, REVISED, "ranking")
    if not reset and holds_data(samples, revised_field):
        for record in reversed(alc_info(dataset_of(samples)).get("rounds") or []):
            other = record.get("label_field")
            if record.get("revised_field") == revised_field and other and other != label_field:
                raise ALCError(
                    f"{revised_field!r} holds the corrections of {other!r} (ranking round "
                    f"{record.get('round')}), not of {label_field!r}: ranking "
                    f"{label_field!r} would read them as its labels; pass another "
                    "revised_field (and queries_field)"
                )
