"""ThumbnailGrid: the browser component that draws the DatasetViewer's page of clickable thumbnails.

One small :class:`panel.custom.JSComponent`: each thumbnail is an HTML ``<button>`` (image and caption
inside, ``class="wb-thumb"``, ``data-index="<i>"``, an accessible name "Image i: ...") that sets
``selected`` on click; arrow keys move the selection. Its code and style are the package assets
``thumbnail_grid.js`` and ``thumbnail_grid.css``.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

from workbench.widgets.html import asset


class ThumbnailGrid(JSComponent):
    """A grid of clickable thumbnails; ``selected`` is the dataset index of the last one clicked.

    Each item of ``items`` is a dict with ``index``, ``src`` (a data URI), ``alt`` (the button's
    accessible name), ``label`` and ``pred`` (caption lines, ``pred`` may be empty), ``status``
    ("ok", "bad" or "": the prediction is right, wrong, or not comparable) and ``wrong``.
    """

    items = param.List(default=[], doc="Thumbnails to draw, in order.")
    selected = param.Integer(default=-1, doc="Dataset index of the selected thumbnail (-1: none).")
    columns = param.Integer(default=8, bounds=(1, None))
    thumb_size = param.Integer(default=80, bounds=(8, None))

    _stylesheets = [asset("thumbnail_grid.css")]

    _esm = asset("thumbnail_grid.js")
