"""A person's review: the queries (:mod:`.queries`), claims that keep reviewers apart
(:mod:`.claims`), answers and undo (:mod:`.answers`), the queue and progress served to the
panel (:mod:`.queue`) and the picture of a query (:mod:`.render`).

This package's face is the one internal module the review panel uses besides the public API
(``panels/review.py``): the names below, loaded on first use.
"""

from __future__ import annotations

import importlib

_FACE = {
    "view_key": ".queue",
    "get_query": ".queries",
    "last_action": ".answers",
    "last_answered": ".answers",
    "data_uri": ".render",
    "class_colors": ".render",
    "color_of": ".render",
    "hex_color": ".render",
    "answer_classes": ".answers",
    "queries_field_of": ".queries",
    "refresh_label": ".queries",
    "class_table": "..store.fields",
    "sample_level": "..store.db",
    "patches_source": "..store.db",
    "reviewer_name": ".claims",
    "standing": ".audit",
    "MAX_REVIEWER_NAME": ".claims",
}

__all__ = [
    "MAX_REVIEWER_NAME",
    "answer_classes",
    "class_colors",
    "class_table",
    "color_of",
    "data_uri",
    "get_query",
    "hex_color",
    "last_action",
    "last_answered",
    "patches_source",
    "queries_field_of",
    "refresh_label",
    "reviewer_name",
    "sample_level",
    "standing",
    "view_key",
]


def __getattr__(name: str):
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'alc_fiftyone.review' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
