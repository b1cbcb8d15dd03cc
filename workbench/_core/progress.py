"""Progress bars through tqdm.auto (a widget in Jupyter, text elsewhere), silenced on request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

# A call that needs more forward passes than this shows a bar unless told otherwise: about a thousand
# passes is where a CPU run stops feeling instant (seconds on the zoo CNN, a minute on a resnet18).
AUTO_PROGRESS_PASSES = 1000


def progress(iterable: Iterable[T], enabled: bool = True, desc: str | None = None, total: int | None = None):
    """Wrap ``iterable`` in a tqdm.auto bar when ``enabled``; return it untouched otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def auto_progress(progress: bool | None, n_passes: int, threshold: int = AUTO_PROGRESS_PASSES) -> bool:
    """Whether to show a bar: ``progress`` when given, else whether the call needs more than
    ``threshold`` forward passes (``progress=None`` is the automatic default)."""
    if progress is None:
        return int(n_passes) > threshold
    if not isinstance(progress, bool):
        raise ValueError(f"progress: expected True, False or None (automatic), got {progress!r}")
    return progress
