"""Claims: several reviewers on one dataset never get the same query.

A reviewer claims a query before it is shown (:func:`claim`, one atomic update: of two
reviewers claiming the same query at once, exactly one wins); a claim not answered within
:data:`CLAIM_SECONDS` returns to the queue; a query someone else holds cannot be answered or
skipped by another name (:func:`refuse_held`) unless forced.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..errors import NotClaimedError, QueryError
from ..store import changes, db
from ..store.fields import QUERIES_FIELD
from .queries import attr, find_query_sample_id, object_id

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


CLAIM_SECONDS = 600  # a claim not answered within this time returns to the queue
# the longest reviewer name accepted: an e-mail address or a full name fits; the panel's card
# shows it on one line beside the progress
MAX_REVIEWER_NAME = 64


def reviewer_name(name: str | None) -> str | None:
    """``name`` as a reviewer name (surrounding blanks removed), or a QueryError saying why it
    cannot be one: longer than :data:`MAX_REVIEWER_NAME` characters, or holding control
    characters (a line break, a tab). None stays None (no reviewer).

    Parameters
    ----------
    name
        The name given.

    Returns
    -------
    str or None
        The name, stripped.
    """
    if name is None:
        return None
    name = str(name).strip()
    if len(name) > MAX_REVIEWER_NAME:
        raise QueryError(
            f"a reviewer name has at most {MAX_REVIEWER_NAME} characters; this one has {len(name)}"
        )
    if any(not c.isprintable() for c in name):
        raise QueryError("a reviewer name cannot hold line breaks, tabs or control characters")
    return name


def free_for(user: str | None, now: datetime, prefix: str = "") -> dict:
    """Condition (on a query's fields, each name prefixed) under which ``user`` may claim it:
    pending, claimed with an expired claim, or already claimed by ``user``."""
    p = prefix
    alts = [
        {f"{p}status": "pending"},
        {f"{p}status": "claimed", f"{p}claimed_until": {"$lt": now}},
    ]
    if user is not None:
        alts.append({f"{p}status": "claimed", f"{p}claimed_by": user})
    return {"$or": alts}


def claim(
    dataset: SampleCollection,
    query_id: str,
    user: str | None,
    seconds: float = CLAIM_SECONDS,
    queries_field: str = QUERIES_FIELD,
    sample_id: str | None = None,
) -> bool:
    """Claim query ``query_id`` for ``user`` for ``seconds``; True when the claim was won.

    One atomic MongoDB update with an array filter on the query's id, status and claim expiry:
    of two reviewers claiming the same query at once, exactly one wins. A query is claimable
    when pending, when its claim expired, or when ``user`` already holds it (the claim is then
    extended).

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    seconds
        How long the claim holds; an unanswered claim then returns to the queue.
    queries_field
        The ``fo.Detections`` field holding the queries.
    sample_id
        The id of the sample holding the query, when known (saves a look-up).

    Returns
    -------
    bool
        True when the claim was won (or extended).
    """
    user = reviewer_name(user)
    dataset = db.dataset_of(dataset)
    oid = object_id(query_id)
    if sample_id is None:
        sample_id = find_query_sample_id(dataset, query_id, queries_field)
    object_id(sample_id, "sample")
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # MongoDB stores naive UTC
    until = now + timedelta(seconds=seconds)
    arr = f"{queries_field}.detections"
    res = db.update_sample(
        dataset,
        sample_id,
        {arr: {"$elemMatch": {"_id": oid, **free_for(user, now)}}},
        {
            "$set": {
                f"{arr}.$[q].status": "claimed",
                f"{arr}.$[q].claimed_by": user,
                f"{arr}.$[q].claimed_at": now,
                f"{arr}.$[q].claimed_until": until,
            }
        },
        array_filters=[{"q._id": oid, **free_for(user, now, "q.")}],
    )
    changes.touched(dataset, sample_id)
    return res.modified_count == 1


def release(
    dataset: SampleCollection, query_id: str, user: str | None, queries_field: str = QUERIES_FIELD
) -> bool:
    """Give a claim of ``user`` back (the query is pending again); True if one was released.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.

    Returns
    -------
    bool
        True when a claim of ``user`` was given back.
    """
    dataset = db.dataset_of(dataset)
    oid = object_id(query_id)
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    arr = f"{queries_field}.detections"
    res = db.update_sample(
        dataset,
        sample_id,
        {arr: {"$elemMatch": {"_id": oid, "status": "claimed", "claimed_by": user}}},
        {
            "$set": {
                f"{arr}.$[q].status": "pending",
                f"{arr}.$[q].claimed_by": None,
                f"{arr}.$[q].claimed_until": None,
            }
        },
        array_filters=[{"q._id": oid, "q.status": "claimed", "q.claimed_by": user}],
    )
    changes.touched(dataset, sample_id)
    return res.modified_count == 1


def claim_holder(det, user: str | None, now: datetime | None = None) -> str | None:
    """The reviewer who holds a live claim on ``det``, when it is not ``user``; else None."""
    if attr(det, "status") != "claimed":
        return None
    holder = attr(det, "claimed_by")
    until = attr(det, "claimed_until")
    now = now or datetime.now(timezone.utc)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    if holder == user or (until is not None and until <= now):
        return None
    return str(holder)


def refuse_held(det, user, action: str) -> None:
    holder = claim_holder(det, user)
    if holder is not None:
        until = attr(det, "claimed_until")
        raise QueryError(
            f"query {det.id} is claimed by {holder!r}"
            + (f" until {until:%H:%M:%S} UTC" if until else "")
            + f"; {action} it only if they gave it up (pass force=True to {action} anyway)"
        )


def not_held_by_another(user) -> dict:
    """Condition on a query (fields prefixed ``q.`` in ``$elemMatch`` form: bare names) under
    which ``user`` may answer or skip it: no live claim of another reviewer."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return {
        "$or": [
            {"status": {"$ne": "claimed"}},
            {"claimed_by": user},
            {"claimed_until": {"$lt": now}},
        ]
    }


def require_claim(det, claimed_by: str) -> None:
    """NotClaimedError unless ``claimed_by`` holds ``det`` (status ``claimed``, their name),
    saying why not: skipped, answered, split, held by another reviewer, or not claimed."""
    status = attr(det, "status")
    holder = attr(det, "claimed_by")
    if status == "claimed" and holder == claimed_by:
        return
    if status == "claimed":
        why = f"is held by {holder!r}"
    elif status in ("confirmed", "corrected"):
        why = f"was answered ({attr(det, 'answer')!r} by {attr(det, 'answered_by')!r})"
    elif status in ("skipped", "split"):
        by = attr(det, "answered_by")
        why = f"was {status}" + (f" by {by!r}" if by and by != claimed_by else "")
    else:
        why = "is not claimed (the claim expired or was given back)"
    raise NotClaimedError(det.id, status, holder, f"query {det.id} {why}")


def held_by(claimed_by: str) -> dict:
    """Condition (``$elemMatch`` form) that ``claimed_by`` holds a query."""
    return {"status": "claimed", "claimed_by": claimed_by}
