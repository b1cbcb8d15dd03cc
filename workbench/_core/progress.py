"""Progress bars through tqdm.auto (a widget in Jupyter, text elsewhere), silenced on request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], enabled: bool = True, desc: str | None = None, total: int | None = None):
    """Wrap ``iterable`` in a tqdm.auto bar when ``enabled``; return it untouched otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)
