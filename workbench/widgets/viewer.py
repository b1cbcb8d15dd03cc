"""The base classes of the workbench widgets: a Panel ``Viewer`` shown through one layout, and paging."""

from __future__ import annotations

import panel as pn
from panel.viewable import Viewer


class LayoutViewer(Viewer):
    """A widget whose Panel layout is ``self._layout`` (built by the subclass): displaying the widget,
    :meth:`panel` and ``pn.panel(widget)`` all show it; ``str`` is the subclass's ``repr``."""

    _layout: pn.viewable.Viewable

    def panel(self) -> pn.viewable.Viewable:
        """The Panel layout (also what displaying the widget shows)."""
        return self._layout

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def __str__(self) -> str:
        return repr(self)


class PagedViewer(LayoutViewer):
    """A :class:`LayoutViewer` shown a page at a time: the subclass declares a ``page`` parameter and an
    ``n_pages`` property."""

    page: int
    n_pages: int

    def next_page(self) -> None:
        """Go to the next page (stays on the last one)."""
        self.page = min(self.page + 1, self.n_pages - 1)

    def previous_page(self) -> None:
        """Go to the previous page (stays on the first one)."""
        self.page = max(self.page - 1, 0)
