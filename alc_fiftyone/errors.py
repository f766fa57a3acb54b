"""Errors raised by alc-fiftyone. Every problem tied to a sample names the sample."""

from __future__ import annotations

from .core.errors import ALCError

__all__ = [
    "ALCError",
    "DatabaseError",
    "NotClaimedError",
    "OutputError",
    "QueryError",
    "SampleError",
]


class SampleError(ALCError):
    """A problem with one sample's files or labels.

    The message names the sample id, its file and the problem, so a user can find it in the App.
    """

    def __init__(self, sample_id: str | None, problem: str, filepath: str | None = None):
        self.sample_id = sample_id
        self.filepath = filepath
        self.problem = problem
        where = f"sample {sample_id}" if sample_id else "sample"
        if filepath:
            where += f" ({filepath})"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # pickled as its parts, so that one raised in a worker process arrives as itself
        return (type(self), (self.sample_id, self.problem, self.filepath))


class QueryError(ALCError):
    """An answer or undo that cannot be applied to a query (unknown, stale, already answered)."""


class NotClaimedError(QueryError):
    """An answer given for a query the reviewer does not hold (any more): it was skipped,
    answered, taken by another reviewer, or the claim was given back. Names the query, its
    status and who holds it."""

    def __init__(self, query_id: str, status: str | None, holder: str | None, message: str):
        self.query_id, self.status, self.holder = query_id, status, holder
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.query_id, self.status, self.holder, str(self)))


class OutputError(ALCError):
    """An output folder cannot be written: disk full, read-only, forbidden, or a link out of
    the folder. Names the folder and the errno; fatal whatever ``skip_failures`` says (it would
    fail for every sample alike). Files are written atomically, so nothing is half-written."""


class DatabaseError(ALCError):
    """The database failed during an operation (connection lost, MongoDB restarted). Names the
    step that failed and whether a rerun is safe."""
