"""AttributionViewer: attribution maps of several methods over their images, side by side.

A paged grid (rows: images; columns: the raw image, then one map per method), each map drawn as a
colormap overlay on its image, with a global opacity slider, a colormap selector and a method
selector. Hovering a map reads its value at the pixel under the mouse; clicking a row shows that
image large with all the shown methods side by side, the object mask contour over each, and an
optional metrics panel: a table of metrics per method and their deletion / insertion curves (see
:mod:`workbench.widgets.metrics_panel`); clicking a method there, or its column title, highlights
its curves (``selected_method``).

How it renders (the same in JupyterLab, under ``panel serve`` and in Playwright): the grid and the
detail view are each one :class:`~workbench.widgets.map_grid.MapGrid`, fed by
:class:`~workbench.widgets.map_payloads.MapPayloads` (maps as raw float32 values, at most
``payload_size`` a side, coloured in the browser); clicking a row sets the grid's ``selected``.
On a wide screen the detail view sits beside the grid, on a narrow one below it.

Colour scale: each map is normalised on its own ("per map"). A method whose maps have any negative
value is *signed*: its maps are shown on ``[-s, s]`` with ``s`` the ``clip_percentile``-th
percentile of ``|map|`` (99.5 by default, so that a few extreme pixels do not wash out the rest;
beyond it colours saturate), and the default colormap is the diverging ``RdBu_r`` (white at 0).
Other methods are shown on ``[0, s]`` with ``s`` the percentile of the map, in ``inferno``. Each
map's range is printed under it (and with ticks under each map of the detail view). The opacity is
uniform by default; "fade near 0" (``fade=True``) scales each pixel's opacity by ``|value| / s``, so
the image shows through wherever the map is near 0.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import panel as pn
import param
import torch

from workbench.models.scoring import predict
from workbench.widgets.checks import (
    as_images,
    check_bool_array,
    check_class_indices,
    check_class_names,
    check_image_ids,
    check_image_names,
    check_index,
    check_maps,
    check_sizes,
)
from workbench.widgets.colormaps import COLORMAPS, colormap_lut
from workbench.widgets.html import (
    ActionHTML,
    LiveHTML,
    asset,
    ensure_extension,
    header_html,
    image_captions,
    prediction_html,
    widget_kwargs,
)
from workbench.widgets.images import map_overlay
from workbench.widgets.map_grid import MapGrid
from workbench.widgets.map_payloads import MapPayloads
from workbench.widgets.metrics_panel import (
    CURVE_AXES,
    METRICS_CSS,
    Curves,
    check_curves,
    check_metrics,
    curve_kinds,
    method_colors,
    metrics_html,
    plots_width,
)
from workbench.widgets.paging import paging_controls
from workbench.widgets.viewer import PagedViewer

AUTO = "auto"
UPSAMPLING = ("nearest", "bilinear")
_SIGNED_DEFAULT, _UNSIGNED_DEFAULT = "RdBu_r", "inferno"
_SEP = " \u00b7 "

_CSS = asset("attribution_viewer.css")


class AttributionViewer(PagedViewer):
    """Attribution maps of several methods over their images: a paged grid, hover values, a detail view.

    Rows are images, columns the raw image and then one map per method, drawn as a colormap
    overlay on the image. Hover a map to read the value under the mouse ("method · image i ·
    (row, col) = value"); click a row (or call :meth:`select`) to show that image large with all
    shown methods side by side and the object mask contour over each.

    Parameters
    ----------
    images
        (N, 3, H, W) float tensor in [0, 1].
    maps_by_method
        ``{method name: maps}``, each (N, H, W) (or (N, 1, H, W)), float, possibly signed, finite.
        Coarser maps with the images' aspect ratio, e.g. (N, 8, 8) for a Sobol grid, are upsampled
        for display (nearest neighbour, or bilinear with ``upsampling="bilinear"``).
    model
        Optional classifier; when given without ``predictions``, it runs once here (batched, under
        inference mode) to predict each image's class. Its ``labels`` name the classes when
        ``class_names`` is not given.
    masks
        (N, H, W) bool ground-truth object masks, drawn as a contour in the detail view.
    labels, predictions
        (N,) integer class indices, shown under each image (a wrong prediction in red).
    class_names
        Names of the class indices (default "0", "1", ...).
    metrics
        ``{method: {metric name: value}}``, shown as a table under the detail view; a value is one
        number (a score over the dataset) or (N,) numbers (one per image: the table shows the
        selected image's value and the mean). See also :attr:`metrics`.
    max_rows
        Images per page of the grid.
    cell_size, detail_size
        Width of a grid cell and of a detail panel, in screen pixels.
    clip_percentile
        The colour range of a map is set by this percentile of its (absolute) values: see the
        module docs. 100 uses the maximum.
    payload_size
        Maps larger than this (a side) are sent to the browser as block means for the grid (the
        detail view allows twice as many values); the readout says so.
    title
        Heading shown above the grid.
    names
        (N,) names of the images (e.g. the names :func:`workbench.data.sample_images` returns), shown
        in place of the index under each image and after it in the detail view.
    ids
        (N,) distinct non-negative integers the images are numbered by in captions and titles (default
        0 ... N-1): e.g. their indices in the dataset a viewer of a few of its images comes from.
        :meth:`select` and ``selected`` still take positions 0 ... N-1.
    curves
        ``{method: {kind: curves}}``, ``kind`` usually "deletion" and "insertion", the curves a
        :class:`~workbench.metrics.causal_fidelity.CausalFidelity` (what ``deletion`` and
        ``insertion`` return), a tuple ``(fractions, curve)`` or ``(fractions, curve, auc)``, or a
        dict with those keys: ``fractions`` (P,) in [0, 1], non-decreasing; ``curve`` (N, P) finite;
        ``auc`` (N,) (optional: without it the panel shows no AUC; it computes none itself). The metrics
        panel plots each kind for the selected image and the mean over the images, and adds
        a "<kind> AUC" column to the table. See also :attr:`curves`.
    **params
        Initial values of the parameters: ``methods``, ``cmap``, ``opacity``, ``upsampling``,
        ``fade``, ``selected``, ``show_mask``, ``curve_axis``.

    Attributes
    ----------
    selected, page, methods, cmap, opacity, upsampling, fade, show_mask, selected_method, curve_axis
        The state (``param`` parameters, watchable); widgets and clicks change them, and so can code.
        ``selected_method`` (None or a method) is highlighted in the metrics panel; ``curve_axis``: see
        :func:`~workbench.widgets.metrics_panel.curves_html` ("data", the default, reads an unsure model).
    """

    selected = param.Integer(default=0, bounds=(0, None), doc="Index of the image in the detail view.")
    page = param.Integer(default=0, bounds=(0, None), doc="Current page (0-based) of the grid.")
    methods = param.ListSelector(default=[], objects=[], doc="The methods shown, as columns.")
    cmap = param.Selector(
        default=AUTO,
        objects=[AUTO, *COLORMAPS],
        doc=f'Colormap of the maps; "auto": {_SIGNED_DEFAULT} for signed methods, {_UNSIGNED_DEFAULT} for the others.',
    )
    opacity = param.Number(
        default=0.6, bounds=(0.0, 1.0), step=0.05, doc="Opacity of the maps over the images."
    )
    upsampling = param.Selector(
        default="nearest", objects=list(UPSAMPLING), doc="How maps coarser than the image are upsampled."
    )
    show_mask = param.Boolean(default=True, doc="Draw the object mask contour in the detail view.")
    fade = param.Boolean(
        default=False,
        doc="Fade each map pixel by its distance from 0 (|value| / s), so the image shows where the map is near 0.",
    )

    curve_axis = param.Selector(
        default="data", objects=list(CURVE_AXES),
        doc='y axis of the curves: "data" fits the curves, "relative" divides each by its clean score, "fixed" is [0, 1].',
    )  # fmt: skip
    selected_method = param.Selector(
        default=None,
        objects=[None],
        allow_None=True,
        doc="The method whose curves the metrics panel highlights (None: all alike).",
    )

    def __init__(
        self,
        images: torch.Tensor,
        maps_by_method: Mapping[str, torch.Tensor],
        model: torch.nn.Module | None = None,
        masks: Any = None,
        labels: Any = None,
        predictions: Any = None,
        class_names: Sequence[str] | None = None,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        max_rows: int = 8,
        cell_size: int = 96,
        detail_size: int = 200,
        clip_percentile: float = 99.5,
        payload_size: int = 64,
        title: str = "Attribution maps",
        curves: Mapping[str, Mapping[str, Any]] | None = None,
        names: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        **params: Any,
    ):
        ensure_extension()
        self.images = as_images(images)
        n, _, h, w = self.images.shape
        check_sizes(max_rows=(max_rows, 1, 100), cell_size=(cell_size, 32, 512),
                    detail_size=(detail_size, 64, 1024), payload_size=(payload_size, 4, 512))  # fmt: skip
        if isinstance(clip_percentile, bool) or not (
            isinstance(clip_percentile, int | float) and 0 < clip_percentile <= 100
        ):
            raise ValueError(f"clip_percentile: expected a number in (0, 100], got {clip_percentile!r}")

        self.n, self.image_hw = int(n), (int(h), int(w))
        self.names = check_image_names(names, self.n)
        self.ids = check_image_ids(ids, self.n) or list(range(self.n))
        self.maps, self.signed = check_maps(maps_by_method, self.n, self.image_hw)
        self.method_names = list(self.maps)
        self.masks = (
            None
            if masks is None
            else check_bool_array(masks, "masks", (self.n, h, w), "N, H, W like the images")
        )
        self.labels = None if labels is None else check_class_indices(labels, "labels", self.n)
        self.confidences = None
        if predictions is not None:
            self.predictions = check_class_indices(predictions, "predictions", self.n)
        elif model is not None:
            if not isinstance(model, torch.nn.Module):
                raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
            preds, confs = predict(model, self.images)
            self.predictions, self.confidences = preds.numpy(), confs.numpy()
        else:
            self.predictions = None
        if class_names is None and model is not None:
            try:
                class_names = list(model.labels)
            except (AttributeError, TypeError):
                class_names = None
        self.class_names = check_class_names(
            class_names, {"labels": self.labels, "predictions": self.predictions}
        )
        self._metrics = check_metrics(metrics, self.method_names, self.n)
        self._curves = check_curves(curves, self.method_names, self.n)
        self.colors = method_colors(self.method_names)
        self.max_rows, self.cell_size, self.detail_size = int(max_rows), int(cell_size), int(detail_size)
        self.payload_size, self.clip_percentile = int(payload_size), float(clip_percentile)
        self.title = str(title)
        self._payloads = MapPayloads(
            self.images, self.maps, self.signed, self.masks, self.clip_percentile, self.detail_size
        )

        methods = params.pop("methods", None)
        selected = params.pop("selected", 0)
        selected_method = params.pop("selected_method", None)
        super().__init__(**params)
        self.param.methods.objects = list(self.method_names)
        self.param.methods.check_on_set = True  # unknown method names fail
        self.param.selected_method.objects = [None, *self.method_names]
        self.param.selected_method.check_on_set = True
        self.select_method(selected_method)
        self.param.selected.bounds = (0, self.n - 1)
        self.param.page.bounds = (0, self.n_pages - 1)
        self.methods = list(self.method_names) if methods is None else list(methods)
        self.select(selected)
        self.page = self.selected // self.max_rows
        self._build()
        self.param.watch(self._on_methods, ["methods"])
        self.param.watch(self._on_cmap, ["cmap"])
        self.param.watch(self._on_style, ["opacity", "upsampling", "fade"])
        self.param.watch(lambda *_: self._render_grid(), ["page"])
        self.param.watch(self._on_selected, ["selected"])
        self.param.watch(self._render_detail, ["show_mask"])
        self.param.watch(self._render_metrics, ["selected_method", "curve_axis"])

    # ------------------------------------------------------------------ public state
    @property
    def shown_methods(self) -> list[str]:
        """The shown methods, in the order of ``maps_by_method``."""
        chosen = set(self.methods)
        return [m for m in self.method_names if m in chosen]

    @property
    def n_pages(self) -> int:
        """Number of pages of the grid (at least 1)."""
        return max(1, math.ceil(self.n / self.max_rows))

    @property
    def visible_indices(self) -> list[int]:
        """Indices of the images (rows) on the current page."""
        start = self.page * self.max_rows
        return list(range(start, min(start + self.max_rows, self.n)))

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """``{method: {metric: float or (N,) array}}`` shown under the detail view; assign to replace."""
        return {m: dict(s) for m, s in self._metrics.items()}

    @metrics.setter
    def metrics(self, value: Mapping[str, Mapping[str, Any]] | None) -> None:
        self._metrics = check_metrics(value, self.method_names, self.n)
        self._render_columns()  # the room the panel needs
        self._render_metrics()

    @property
    def curves(self) -> dict[str, dict[str, Curves]]:
        """``{method: {kind: Curves}}`` plotted in the metrics panel (validated: NumPy ``fractions``
        (P,), ``curve`` (N, P), ``auc`` (N,)); assign ``{method: {kind: curves}}`` to replace."""
        return {m: dict(k) for m, k in self._curves.items()}

    @curves.setter
    def curves(self, value: Mapping[str, Mapping[str, Any]] | None) -> None:
        self._curves = check_curves(value, self.method_names, self.n)
        self._render_columns()
        self._render_metrics()

    def select_method(self, method: str | None) -> None:
        """Highlight ``method``'s curves (and its row) in the metrics panel; None shows all alike."""
        if method is not None and method not in self.maps:
            raise ValueError(f"select_method: unknown method {method!r}; the methods are {self.method_names}")
        self.selected_method = method

    def select(self, index: int) -> None:
        """Show image ``index`` (0 <= index < N) in the detail view (and its page in the grid)."""
        index = check_index(index, self.n)
        self.selected = index

    def colormap_of(self, method: str) -> str:
        """The colormap ``method`` is drawn with (``cmap``, or the "auto" choice for its sign)."""
        self._check_method(method)
        if self.cmap != AUTO:
            return self.cmap
        return _SIGNED_DEFAULT if self.signed[method] else _UNSIGNED_DEFAULT

    def value_range(self, index: int, method: str) -> tuple[float, float]:
        """The colour range ``(vmin, vmax)`` of the map of ``method`` for image ``index``."""
        self._check_method(method)
        return self._payloads.value_range(index, method)

    def overlay(self, index: int, method: str) -> np.ndarray:
        """The map of ``method`` over image ``index`` as the viewer draws it, (H, W, 3) uint8
        (the current colormap, opacity and upsampling; e.g. for a figure: ``PIL.Image.fromarray``)."""
        if not 0 <= int(index) < self.n:
            raise IndexError(f"overlay: index {index} is out of range for {self.n} images")
        vmin, vmax = self.value_range(index, method)
        return map_overlay(
            self.images[int(index)], self.maps[method][int(index)], self.colormap_of(method),
            self.opacity, vmin, vmax, smooth=self.upsampling == "bilinear", fade=self.fade,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"AttributionViewer(n={self.n}, methods={self.shown_methods}, selected={self.selected},"
            f" page={self.page + 1}/{self.n_pages})"
        )

    # ------------------------------------------------------------------ payloads
    def _check_method(self, method: str) -> None:
        if method not in self.maps:
            raise ValueError(f"unknown method {method!r}; the methods are {self.method_names}")

    def _captions(self, i: int) -> dict[str, str]:
        """Caption lines, status and accessible name of image ``i`` (:func:`image_captions`)."""
        label = None if self.labels is None else self.class_names[self.labels[i]]
        pred = None if self.predictions is None else self.class_names[self.predictions[i]]
        return image_captions(
            self.ids[i], label, pred, None if label is None or pred is None else label == pred,
            None if self.confidences is None else float(self.confidences[i]),
            None if self.names is None else self.names[i],
        )  # fmt: skip

    def _row(self, i: int, detail: bool) -> dict[str, Any]:
        size = self.detail_size if detail else self.cell_size
        limit = 2 * self.payload_size if detail else self.payload_size
        return {
            "index": i, "id": self.ids[i], "src": self._payloads.image_src(i, size), **self._captions(i),
            "contour": self._payloads.contour_src(i) if detail and self.show_mask else "",
            "cells": {m: self._payloads.cell(i, m, limit) for m in self.shown_methods},
        }  # fmt: skip

    def _columns(self) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
        cols = [
            {"key": m, "title": m, "signed": self.signed[m], "cmap": self.colormap_of(m)}
            for m in self.shown_methods
        ]
        names = {c["cmap"] for c in cols} or {_SIGNED_DEFAULT}
        return cols, {name: colormap_lut(name).reshape(-1).tolist() for name in sorted(names)}

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        note = (
            f"Each map has its own colour range: signed maps [\u2212s, s], others [0, s], with s the"
            f" {self.clip_percentile:g}th percentile of |value| in the map; colours saturate beyond it."
        )
        common = {
            "image_shape": list(self.image_hw), "opacity": self.opacity,
            "smooth": self.upsampling == "bilinear", "fade": self.fade, "scale_note": note,
        }  # fmt: skip
        self._grid = MapGrid(
            mode="grid", cell_size=self.cell_size, selected=self.selected, margin=(5, 5),
            css_classes=["wb-attr-grid-pane"], **common,
        )  # fmt: skip
        self._grid.param.watch(self._on_grid_click, "selected")
        self._detail_view = MapGrid(
            mode="detail", cell_size=self.detail_size, margin=(0, 0), css_classes=["wb-attr-detail-pane"],
            sizing_mode="stretch_width", **common,
        )  # fmt: skip
        self._detail_info = LiveHTML(
            object="", stylesheets=[_CSS], margin=(0, 0, 6, 0), css_classes=["wb-detail-pane"]
        )
        self._metrics_pane = ActionHTML(object="", stylesheets=[METRICS_CSS], margin=(8, 0, 0, 0),
                                        css_classes=["wb-metrics-pane"])  # fmt: skip
        self._metrics_pane.on_action(
            lambda action, value: self._on_pick(value) if action == "method" else None
        )
        for view in (self._grid, self._detail_view):
            view.on_pick(self._on_pick)
        kinds = sorted({"signed" if s else "unsigned" for s in self.signed.values()})
        summary = (
            f"{self.n} image{'s' if self.n != 1 else ''} \u00b7 {self.image_hw[0]}\u00d7{self.image_hw[1]} px \u00b7"
            f" {len(self.method_names)} methods ({', '.join(kinds)})"
        )
        hint = "hover a map to read values \u00b7 click a row to compare methods"
        header = pn.pane.HTML(header_html(self.title, summary, hint), stylesheets=[_CSS], margin=(0, 5),
                              sizing_mode="stretch_width")  # fmt: skip

        def label(text: str, left: int = 5) -> pn.pane.HTML:
            return pn.pane.HTML(
                f'<span class="wb-label">{text}</span>', stylesheets=[_CSS], margin=(5, 0, 5, left)
            )

        self._methods_widget = pn.widgets.CheckBoxGroup.from_param(
            self.param.methods, **widget_kwargs(pn.widgets.CheckBoxGroup, label=""), inline=True,
            margin=(10, 8, 5, 5), css_classes=["wb-methods"],
        )  # fmt: skip
        self._cmap_widget = pn.widgets.Select.from_param(
            self.param.cmap, **widget_kwargs(pn.widgets.Select, label=""), width=110, margin=(5, 5),
            css_classes=["wb-cmap"],
        )  # fmt: skip
        self._opacity_widget = pn.widgets.FloatSlider.from_param(
            self.param.opacity, **widget_kwargs(pn.widgets.FloatSlider, label=""), step=0.05, width=140,
            show_value=False, margin=(12, 10, 5, 5), css_classes=["wb-opacity"],
        )  # fmt: skip
        self._opacity_label = LiveHTML(object=self._opacity_html(), stylesheets=[_CSS], margin=(5, 0, 5, 12),
                                       css_classes=["wb-opacity-label"])  # fmt: skip
        self._upsampling_widget = pn.widgets.RadioButtonGroup.from_param(
            self.param.upsampling,
            **widget_kwargs(pn.widgets.RadioButtonGroup, label="", color="light", variant="outline"),
            width=150, margin=(5, 5), css_classes=["wb-upsampling"],
        )  # fmt: skip
        self._fade_widget = pn.widgets.Checkbox.from_param(
            self.param.fade, **widget_kwargs(pn.widgets.Checkbox, label="fade near 0"),
            margin=(12, 5, 5, 12), css_classes=["wb-fade"],
        )  # fmt: skip
        controls = pn.FlexBox(  # groups of label + widget, wrapped onto several lines when narrow
            pn.Row(label("Methods", 5), self._methods_widget, margin=0),
            pn.Row(label("Colormap", 12), self._cmap_widget, margin=0),
            pn.Row(self._opacity_label, self._opacity_widget, margin=0),
            pn.Row(label("Upsampling", 12), self._upsampling_widget, self._fade_widget, margin=0),
            flex_wrap="wrap", align_items="flex-start", margin=0, css_classes=["wb-controls"],
        )  # fmt: skip
        self._prev, self._next, self._page_info = paging_controls(self.previous_page, self.next_page, _CSS)
        paging = pn.Row(self._prev, self._page_info, self._next, margin=0, visible=self.n_pages > 1)
        mask_toggle = pn.widgets.Checkbox.from_param(
            self.param.show_mask, **widget_kwargs(pn.widgets.Checkbox, label="object mask contour"),
            margin=(6, 0, 0, 0), disabled=self.masks is None, css_classes=["wb-mask-toggle"],
        )  # fmt: skip
        self._axis_widget = pn.widgets.RadioButtonGroup.from_param(
            self.param.curve_axis,
            **widget_kwargs(pn.widgets.RadioButtonGroup, label="", color="light", variant="outline"),
            width=210, margin=(0, 5), css_classes=["wb-curve-axis"],
        )  # fmt: skip
        self._axis_row = pn.Row(label("Curve axis", 24), self._axis_widget, margin=0)
        # Beside the grid when the screen is wide enough, below it otherwise: the detail takes the room left
        # of the row (flex-grow), down to a minimum width (see _render_columns), and wraps its maps.
        self._detail = pn.Column(
            self._detail_info, self._detail_view, pn.Row(mask_toggle, self._axis_row, margin=0), self._metrics_pane,
            margin=(5, 5, 5, 16), css_classes=["wb-detail"], sizing_mode="stretch_width",
        )  # fmt: skip
        self._layout = pn.Column(
            header, controls,
            pn.FlexBox(pn.Column(self._grid, paging, margin=0), self._detail, flex_wrap="wrap",
                       align_items="flex-start", margin=0),
            sizing_mode="stretch_width", css_classes=["wb-attribution-viewer"],
        )  # fmt: skip
        self._on_methods()

    # ------------------------------------------------------------------ rendering
    def _render_columns(self) -> dict[str, Any]:
        """The column payload (methods shown, their colormaps) for :meth:`_render_grid`/:meth:`_render_detail`;
        sizes the views for that many columns."""
        cols, luts = self._columns()
        k = len(cols)
        self._grid.width = (k + 1) * (self.cell_size + 6) + 24
        kinds = len(curve_kinds(self._curves, self.shown_methods))
        plots = plots_width(kinds) if kinds else 0
        cell = self.detail_size + 14
        narrow = max(min(k + 1, 2) * cell + 4, plots) + 24  # the image and one map side by side, or the plots
        wide = max((k + 1) * cell + 4, plots) + 24  # every map on one line
        self._detail.styles = {
            "flex": f"1 1 {narrow}px", "min-width": f"{narrow}px", "max-width": f"{wide}px", "padding": "10px",
            "border": "1px solid #dadce0", "border-radius": "8px", "background": "#fff",
        }  # fmt: skip
        return {"columns": cols, "luts": luts}

    def _render_grid(self, columns: dict[str, Any] | None = None) -> None:
        rows = [self._row(i, detail=False) for i in self.visible_indices]
        self._grid.param.update(rows=rows, **(columns or {}))
        start = self.page * self.max_rows
        self._page_info.object = (
            f'<span class="wb-pageinfo">Page {self.page + 1} / {self.n_pages} \u00b7 images {self.ids[start]}\u2013'
            f"{self.ids[min(start + self.max_rows, self.n) - 1]}</span>"
        )
        self._prev.disabled = self.page == 0
        self._next.disabled = self.page >= self.n_pages - 1

    def _render_detail(self, *_events: Any, columns: dict[str, Any] | None = None) -> None:
        i = self.selected
        self._detail_view.param.update(rows=[self._row(i, detail=True)], **(columns or {}))
        status = self._captions(i)["status"]
        esc = html.escape
        facts = []
        if self.labels is not None:
            facts.append(f'label <span class="wb-label-value">{esc(self.class_names[self.labels[i]])}</span>')
        if self.predictions is not None:
            conf, correct = None if self.confidences is None else float(self.confidences[i]), status == "ok"
            pred = prediction_html(self.class_names[self.predictions[i]], conf, correct if status else None)
            facts.append(f'prediction <span class="wb-{status or "unchecked"}">{pred}</span>')
        shown = self.shown_methods
        facts.append(f"{len(shown)} method{'s' if len(shown) != 1 else ''}")
        self._detail_info.object = (
            f'<div class="wb-detail-info" data-index="{i}" data-methods="{esc(",".join(shown))}">'
            f'<span class="wb-detail-title">Image #{self.ids[i]}{"" if self.names is None else _SEP + esc(self.names[i])}</span>'
            f'<span class="wb-facts">{_SEP.join(facts)}</span></div>'
        )
        self._render_metrics()

    def _render_metrics(self, *_events: Any) -> None:
        """The metrics panel: the table and the curves of the shown methods for the selected image."""
        html_ = metrics_html(
            self._metrics, self._curves, self.shown_methods, self.colors, self.selected, self.n,
            self.selected_method, self.curve_axis, label=self.ids[self.selected],
        )  # fmt: skip
        self._metrics_pane.object = html_
        self._metrics_pane.visible = bool(html_)
        self._axis_row.visible = 'class="wb-curves"' in html_
        pickable = any(m in self._metrics or m in self._curves for m in self.method_names)
        focus = self.selected_method or ""
        for view in (self._grid, self._detail_view):
            view.param.update(pickable=pickable, focus=focus)

    # ------------------------------------------------------------------ callbacks
    def _on_methods(self, *_events: Any) -> None:
        columns = self._render_columns()
        self._render_grid(columns)
        self._render_detail(columns=columns)

    def _on_cmap(self, *_events: Any) -> None:
        columns = self._render_columns()
        for view in (self._grid, self._detail_view):
            view.param.update(**columns)

    def _opacity_html(self) -> str:
        return f'<span class="wb-label">Opacity <span class="wb-value">{self.opacity:.2f}</span></span>'

    def _on_style(self, *_events: Any) -> None:
        self._opacity_label.object = self._opacity_html()
        for view in (self._grid, self._detail_view):
            view.param.update(opacity=self.opacity, smooth=self.upsampling == "bilinear", fade=self.fade)

    def _on_selected(self, *_events: Any) -> None:
        page = self.selected // self.max_rows
        if page != self.page:
            self.page = page
        self._grid.selected = self.selected
        self._render_detail()

    def _on_pick(self, method: str) -> None:
        """A click on a method (metrics row, legend, curve, column title): select it, or unselect it."""
        if method in self.maps:
            self.selected_method = None if method == self.selected_method else method

    def _on_grid_click(self, event: Any) -> None:
        if event.new is not None and 0 <= event.new < self.n and event.new != self.selected:
            self.selected = int(event.new)
