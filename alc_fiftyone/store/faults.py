"""Turning infrastructure failures into clear errors, and per-sample failures into summaries.

- :func:`database_errors`: a MongoDB failure (connection lost, server restarted, cursor gone)
  becomes a :class:`~alc_fiftyone.errors.DatabaseError` that says which step failed, what was
  or was not written, and that a rerun is safe, instead of a raw pymongo traceback.
- :func:`failure_record`: the summary entry of a sample skipped with ``skip_failures=True``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import DatabaseError, SampleError

NOTHING_WRITTEN = "nothing was written: the previous results are intact"
_WRITE_STATE: ContextVar[str] = ContextVar("alc_write_state", default=NOTHING_WRITTEN)


@contextmanager
def database_errors(step: str, state: str | Callable[[], str] = NOTHING_WRITTEN):
    """Raise :class:`DatabaseError` naming ``step`` and ``state`` (what was written; a
    callable is asked when the error comes) for any pymongo error raised inside the block.
    The original error is chained as ``__cause__``."""
    from pymongo.errors import PyMongoError

    try:
        yield
    except PyMongoError as e:
        text = state() if callable(state) else state
        raise DatabaseError(
            f"the database failed while {step} ({type(e).__name__}: {_short(e)}); {text}. "
            "Check that MongoDB is running, then rerun: it is safe to rerun."
        ) from e


def set_write_state(text: str) -> None:
    """Say what a database failure from now on (within a :func:`database_errors_of` call)
    would leave behind."""
    _WRITE_STATE.set(text)


def database_errors_of(step: str):
    """Decorator: the function's pymongo errors become :class:`DatabaseError` naming ``step``
    and the state last given to :func:`set_write_state` during the call."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            token = _WRITE_STATE.set(NOTHING_WRITTEN)
            try:
                with database_errors(step, _WRITE_STATE.get):
                    return fn(*args, **kwargs)
            finally:
                _WRITE_STATE.reset(token)

        return wrapper

    return decorate


def _short(error: Exception, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_record(error: SampleError) -> dict:
    """``{"id", "filepath", "error"}`` of a sample skipped because of ``error``."""
    return {"id": error.sample_id, "filepath": error.filepath, "error": error.problem}
