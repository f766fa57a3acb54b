"""Progress reporting without printing.

The library reports progress through a callback ``progress(done, total, desc)``; the CLI turns
it into a tqdm bar and an operator into ``ctx.set_progress``. ``None`` means silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

ProgressCallback = Callable[[int, int, str], None]
T = TypeVar("T")


def track(
    items: Iterable[T], total: int, progress: ProgressCallback | None, desc: str = ""
) -> Iterator[T]:
    """Yield ``items`` and report ``(done, total, desc)`` after each one."""
    if progress is not None:
        progress(0, total, desc)
    for done, item in enumerate(items, start=1):
        yield item
        if progress is not None:
            progress(done, total, desc)


def prefixed(progress: ProgressCallback | None, prefix: str) -> ProgressCallback | None:
    """``progress`` with ``prefix`` before every description (e.g. ``"round 2/5: "``)."""
    if progress is None:
        return None

    def report(done: int, total: int, desc: str) -> None:
        progress(done, total, f"{prefix}{desc}")

    return report


class TqdmProgress:
    """A progress callback drawing one tqdm bar per description (used by the CLI)."""

    def __init__(self, **tqdm_kwargs):
        self._kwargs = tqdm_kwargs
        self._bar = None
        self._desc = None

    def __call__(self, done: int, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        if self._bar is None or desc != self._desc or done < self._bar.n:
            self.close()
            self._bar = tqdm(total=total, desc=desc, **self._kwargs)  # draws its 0% line
            self._desc = desc
        if done != self._bar.n:
            self._bar.n = done
            self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
