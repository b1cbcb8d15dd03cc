"""MapGrid: the browser component that draws rows of an image followed by attribution maps.

One small :class:`panel.custom.JSComponent` used twice by the AttributionViewer (the paged grid and
the detail view). Python sends each image once as a PNG and each map as its raw float32 values; the
browser colours the values into a ``<canvas>`` stacked over the image, so opacity and colormap
changes only send a number or a lookup table, and the value under the mouse is read from the same
array that is drawn. Its code and style are the package assets ``map_grid.js`` and ``map_grid.css``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import param
from panel.custom import JSComponent

from workbench.widgets.html import asset


class MapGrid(JSComponent):
    """Rows of an image followed by attribution maps drawn over it (``mode="grid"``: one row per
    image, click a row to select it; ``mode="detail"``: one large row with a colorbar under each map).

    Each row of ``rows`` is a dict: ``index``, ``src`` (data URI of the image), ``alt``, ``caption``
    and ``sub`` (caption lines), ``status`` ("ok", "bad" or ""), ``contour`` (data URI of a
    transparent contour layer, or ""), and ``cells``: method key -> ``{"data": base64 float32
    little-endian values, "h", "w", "vmin", "vmax", "kind", "block"}`` with ``kind`` "pixel" (one
    value per image pixel), "grid" (a coarser map, one value per cell) or "block" (block means of a
    larger map). ``columns`` lists the methods: ``{"key", "title", "signed", "cmap"}``; ``luts``
    maps colormap names to 768 RGB bytes. With ``pickable``, clicking a method title sends
    ``{"method": key}`` to Python (:meth:`on_pick`); the title of ``focus`` is underlined.
    """

    rows = param.List(default=[], doc="Rows to draw, in order.")
    columns = param.List(default=[], doc="The map columns: key, title, signed, cmap.")
    luts = param.Dict(default={}, doc="Colormap name -> 256 RGB triples, flattened.")
    image_shape = param.List(default=[1, 1], doc="(H, W) of the images, for pixel coordinates.")
    cell_size = param.Integer(default=96, bounds=(16, None), doc="Width of a cell in screen pixels.")
    opacity = param.Number(default=0.6, bounds=(0.0, 1.0), doc="Opacity of the maps over the images.")
    smooth = param.Boolean(default=False, doc="Bilinear (True) or nearest-neighbour upsampling of the maps.")
    fade = param.Boolean(default=False, doc="Scale each map pixel's opacity by its distance from 0.")
    selected = param.Integer(default=-1, doc="Index of the selected image (grid mode; -1: none).")
    mode = param.Selector(default="grid", objects=["grid", "detail"], constant=True)
    scale_note = param.String(default="", doc="How the colour range is chosen (tooltip of the colorbars).")
    focus = param.String(
        default="", doc="The method highlighted in the metrics panel (its title is underlined)."
    )
    pickable = param.Boolean(
        default=False, doc="Method titles are clickable (they send the method to Python)."
    )

    _stylesheets = [asset("map_grid.css")]

    _esm = asset("map_grid.js")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._pick_callbacks: list[Any] = []

    def on_pick(self, callback: Any) -> None:
        """Call ``callback(method)`` when a method title is clicked (with ``pickable=True``)."""
        self._pick_callbacks.append(callback)

    def _handle_msg(self, data: Any) -> None:
        if isinstance(data, Mapping) and isinstance(data.get("method"), str):
            for callback in list(self._pick_callbacks):
                callback(data["method"])
