"""DatasetViewer: a paged grid of image thumbnails with a detail pane for the selected image.

The viewer receives everything it shows (images, labels, predictions, masks, concepts); it never
runs a model by itself. :meth:`DatasetViewer.from_planted` is the one explicit convenience that runs
a model the caller hands over, once, to fill in the predictions.

Clicking works the same in JupyterLab, under ``panel serve`` and in Playwright: the grid is one
small :class:`panel.custom.JSComponent` that draws each thumbnail as an HTML ``<button>`` (image and
caption inside, ``class="wb-thumb"``, ``data-index="<i>"``, an accessible name "Image i: ...") and
sets its ``selected`` parameter on click; the Python side watches it.
"""

from __future__ import annotations

import html
import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
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
    check_image_names,
    check_index,
    check_names,
    check_sizes,
    to_numpy,
)
from workbench.widgets.html import (
    LiveHTML,
    asset,
    ensure_extension,
    header_html,
    image_captions,
    img_tag,
    prediction_html,
    widget_kwargs,
)
from workbench.widgets.images import contour_overlay, png_data_uri
from workbench.widgets.paging import paging_controls
from workbench.widgets.thumbnail_grid import ThumbnailGrid
from workbench.widgets.viewer import PagedViewer

ALL_CLASSES = "all classes"
SHOW_OPTIONS = ("all", "mistakes", "correct")
_THUMB_CACHE_SIZE = 1024

_CSS = asset("dataset_viewer.css")


class DatasetViewer(PagedViewer):
    """A paged thumbnail grid of images with labels, predictions, object masks and concepts.

    Click a thumbnail (or call :meth:`select`) to show it large in the detail pane, with the
    contour of its object mask, its label, prediction and the concepts present. Arrow keys move
    the selection within a page; Prev/Next turn pages; the filters list only mistakes or a class.

    Parameters
    ----------
    images
        (N, 3, H, W) float tensor in [0, 1] (pixel space, like everywhere in the workbench).
    labels, predictions
        (N,) integer class indices (tensor, array or list), both optional. Mistakes (prediction !=
        label) get a red caption and can be filtered.
    class_names
        Names of the class indices (default "0", "1", ...).
    prediction_names
        Names of the prediction indices when the model has its own label space (an ImageNet model
        on PlantedShapes, say); predictions are then shown but never counted as mistakes. Default:
        ``class_names``, the same label space as the labels.
    masks
        (N, H, W) bool object masks, drawn as a contour in the detail pane.
    concepts, concept_names
        (N, K) bool concept presence and the K names; names such as ``"shape=circle"`` are shown
        as "shape: circle".
    confidences
        (N,) float in [0, 1], the probability of the predicted class, shown next to it.
    columns
        Thumbnails per row.
    thumb_size
        Side of a thumbnail in screen pixels.
    max_items
        Thumbnails per page: never more than this many are rendered at once.
    detail_size
        Side of the large image in the detail pane, in screen pixels.
    title
        Heading shown above the grid.
    names
        (N,) names of the images (e.g. the names :func:`workbench.data.sample_images` returns), shown
        in place of the index in each caption and after it in the detail pane.
    """

    selected = param.Integer(
        default=0, bounds=(0, None), doc="Index (into the dataset) of the selected image."
    )
    page = param.Integer(default=0, bounds=(0, None), doc="Current page (0-based) of the filtered images.")
    show = param.Selector(default="all", objects=list(SHOW_OPTIONS), doc="Which images to list.")
    class_filter = param.Selector(
        default=ALL_CLASSES, objects=[ALL_CLASSES], doc="Only images with this label."
    )
    show_mask = param.Boolean(default=True, doc="Draw the object mask contour in the detail pane.")
    subset = param.List(default=None, allow_None=True, item_type=int,
                        doc="Only these dataset indices (None: all), e.g. where a concept matters.")  # fmt: skip

    def __init__(
        self,
        images: torch.Tensor,
        labels: Any = None,
        predictions: Any = None,
        class_names: Sequence[str] | None = None,
        masks: Any = None,
        concepts: Any = None,
        concept_names: Sequence[str] | None = None,
        columns: int = 8,
        thumb_size: int = 80,
        max_items: int = 48,
        confidences: Any = None,
        detail_size: int = 256,
        title: str = "Dataset",
        prediction_names: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        **params: Any,
    ):
        ensure_extension()
        self.images = as_images(images)
        n, _, h, w = self.images.shape
        check_sizes(columns=(columns, 1, 64), thumb_size=(thumb_size, 16, 512), max_items=(max_items, 1, 1000),
                    detail_size=(detail_size, 64, 1024))  # fmt: skip

        self.n = int(n)
        self.names = check_image_names(names, self.n)
        self.labels = None if labels is None else check_class_indices(labels, "labels", self.n)
        self.predictions = (
            None if predictions is None else check_class_indices(predictions, "predictions", self.n)
        )
        same_space = prediction_names is None or (
            class_names is not None and [str(c) for c in prediction_names] == [str(c) for c in class_names]
        )
        preds = {"predictions": self.predictions}
        self.class_names = check_class_names(
            class_names, {"labels": self.labels, **(preds if same_space else {})}
        )
        self.prediction_names = (
            self.class_names if same_space else check_class_names(prediction_names, preds, "prediction_names")
        )
        self.same_label_space = same_space
        self.masks = (
            None
            if masks is None
            else check_bool_array(masks, "masks", (self.n, h, w), "N, H, W like the images")
        )
        if concepts is not None:
            c = to_numpy(concepts, "concepts")
            k = c.shape[1] if c.ndim == 2 else -1
            self.concepts = check_bool_array(c, "concepts", (self.n, max(k, 0)), "N images, K concepts")
            self.concept_names = check_names(concept_names, k, "concept_names", "concept_")
            if len(self.concept_names) != k:
                raise ValueError(
                    f"concept_names: expected {k} names (one per concept column), got {len(self.concept_names)}"
                )
        else:
            if concept_names is not None:
                raise ValueError("concept_names: given without concepts")
            self.concepts, self.concept_names = None, []
        self.confidences = None
        if confidences is not None:
            conf = to_numpy(confidences, "confidences").astype(np.float64)
            if conf.shape != (self.n,) or not np.all((conf >= 0) & (conf <= 1)):
                raise ValueError(
                    f"confidences: expected shape ({self.n},) with values in [0, 1], got shape {conf.shape}"
                )
            self.confidences = conf
        self.columns, self.thumb_size, self.max_items = int(columns), int(thumb_size), int(max_items)
        self.detail_size = int(detail_size)
        self.title = str(title)
        self._thumb_cache: OrderedDict[int, str] = OrderedDict()
        self._comparable = self.labels is not None and self.predictions is not None and self.same_label_space

        super().__init__(**params)
        self.param.selected.bounds = (0, self.n - 1)
        self.param.class_filter.objects = (
            [ALL_CLASSES, *self.class_names] if self.labels is not None else [ALL_CLASSES]
        )
        self._filtered = np.arange(self.n)
        self._build()
        self.param.watch(self._on_filter, ["show", "class_filter", "subset"])
        self.param.watch(self._on_page, ["page"])
        self.param.watch(self._on_selected, ["selected"])
        self.param.watch(self._render_detail, ["show_mask"])
        self._on_filter()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_planted(
        cls, data: Any, model: torch.nn.Module | None = None, batch_size: int = 256, **kwargs: Any
    ) -> DatasetViewer:
        """A viewer of a PlantedShapes dataset; with ``model``, its predictions are computed once.

        The model runs here, explicitly, under ``torch.inference_mode`` in batches of ``batch_size``
        on the model's device; the viewer itself only receives the predictions and confidences.
        A model whose class names (``model.labels``) differ from the data's has its own label space
        (an ImageNet model, say): its predictions are shown with its names and never counted as
        mistakes. ``kwargs`` go to the constructor (``columns``, ``max_items``, ...).
        """
        predictions = confidences = None
        if model is not None:
            try:
                names = list(model.labels)
            except (AttributeError, TypeError):
                names = None
            if names is not None and names != list(data.class_names):
                kwargs.setdefault("prediction_names", names)
            elif names is None:
                warnings.warn(
                    "model has no class names (.labels); its predictions are assumed to index the data's"
                    f" classes {list(data.class_names)}",
                    stacklevel=2,
                )
            predictions, confidences = predict(model, data.images, batch_size=batch_size)
        kwargs.setdefault("title", "PlantedShapes")
        return cls(
            data.images,
            labels=data.labels,
            predictions=predictions,
            class_names=data.class_names,
            masks=data.object_masks,
            concepts=data.concepts,
            concept_names=data.concept_names,
            confidences=confidences,
            **kwargs,
        )

    # ------------------------------------------------------------------ public state
    @property
    def n_pages(self) -> int:
        """Number of pages of the filtered images (at least 1)."""
        return max(1, math.ceil(len(self._filtered) / self.max_items))

    @property
    def filtered_indices(self) -> np.ndarray:
        """Dataset indices that pass the current filters, in order."""
        return self._filtered.copy()

    @property
    def visible_indices(self) -> list[int]:
        """Dataset indices of the thumbnails on the current page."""
        start = self.page * self.max_items
        return [int(i) for i in self._filtered[start : start + self.max_items]]

    @property
    def mistakes(self) -> np.ndarray:
        """Indices where the prediction differs from the label (empty without both, or across label spaces)."""
        if not self._comparable:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.labels != self.predictions)

    def select(self, index: int) -> None:
        """Select image ``index`` (0 <= index < N); shows its page, clearing filters that hide it."""
        index = check_index(index, self.n)
        self.selected = index

    def item(self, index: int) -> dict[str, Any]:
        """What the detail pane shows for ``index``: label, prediction, confidence, concepts (names)."""
        if not 0 <= int(index) < self.n:
            raise IndexError(
                f"item: index {index} is out of range for {self.n} images (valid: 0..{self.n - 1})"
            )
        i = int(index)
        out: dict[str, Any] = {"index": i, "name": None if self.names is None else self.names[i]}
        out["label"] = None if self.labels is None else self.class_names[self.labels[i]]
        out["prediction"] = None if self.predictions is None else self.prediction_names[self.predictions[i]]
        out["confidence"] = None if self.confidences is None else float(self.confidences[i])
        out["correct"] = bool(self.labels[i] == self.predictions[i]) if self._comparable else None
        out["concepts"] = (
            [] if self.concepts is None else [self.concept_names[k] for k in np.flatnonzero(self.concepts[i])]
        )
        return out

    def __repr__(self) -> str:
        return f"DatasetViewer(n={self.n}, selected={self.selected}, page={self.page + 1}/{self.n_pages})"

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self._header = pn.pane.HTML(
            self._header_html(), stylesheets=[_CSS], margin=(0, 5), sizing_mode="stretch_width"
        )
        self._prev, self._next, self._page_info = paging_controls(self.previous_page, self.next_page, _CSS)
        self._goto = pn.widgets.IntInput(
            **widget_kwargs(pn.widgets.IntInput, label=""),
            value=self.selected,
            start=0,
            end=self.n - 1,
            width=90,
            margin=(5, 5),
            css_classes=["wb-goto"],
        )
        self._goto.param.watch(self._on_goto, "value")
        controls: list[Any] = [self._prev, self._page_info, self._next]
        controls.append(
            pn.pane.HTML('<span class="wb-pageinfo">Go to #</span>', stylesheets=[_CSS], margin=(5, 0, 5, 16))
        )
        controls.append(self._goto)
        self._show_widget = pn.widgets.RadioButtonGroup.from_param(
            self.param.show,
            **widget_kwargs(pn.widgets.RadioButtonGroup, label="", color="light", variant="outline"),
            margin=(5, 5, 5, 16),
            width=230,
        )
        self._class_widget = pn.widgets.Select.from_param(
            self.param.class_filter, **widget_kwargs(pn.widgets.Select, label=""), width=150, margin=(5, 5)
        )
        if self._comparable:
            controls.append(self._show_widget)
        if self.labels is not None:
            controls.append(self._class_widget)
        self._grid = ThumbnailGrid(
            columns=self.columns,
            thumb_size=self.thumb_size,
            selected=self.selected,
            width=self.columns * (self.thumb_size + 16),
            margin=(5, 5),
            css_classes=["wb-grid-pane"],
        )
        self._grid.param.watch(self._on_grid_click, "selected")
        self._detail_image = LiveHTML(
            object="", stylesheets=[_CSS], margin=(0, 0), css_classes=["wb-detail-image"]
        )
        self._detail_info = LiveHTML(
            object="",
            stylesheets=[_CSS],
            margin=(4, 0),
            css_classes=["wb-detail-pane"],
            width=self.detail_size,
        )
        mask_toggle = pn.widgets.Checkbox.from_param(
            self.param.show_mask,
            **widget_kwargs(pn.widgets.Checkbox, label="object mask contour"),
            margin=(6, 0, 0, 0),
            disabled=self.masks is None,
        )
        self._detail = pn.Column(
            self._detail_image,
            mask_toggle,
            self._detail_info,
            width=self.detail_size + 24,
            margin=(5, 5, 5, 16),
            styles={
                "padding": "10px",
                "border": "1px solid #dadce0",
                "border-radius": "8px",
                "background": "#fff",
            },
            css_classes=["wb-detail"],
        )
        self._layout = pn.Column(
            self._header,
            pn.Row(*controls, margin=0),
            pn.FlexBox(self._grid, self._detail, flex_wrap="wrap", align_items="flex-start", margin=0),
            sizing_mode="stretch_width",
            css_classes=["wb-dataset-viewer"],
        )

    def _header_html(self) -> str:
        parts = [f"{self.n} images", f"{tuple(self.images.shape[2:])[0]}\u00d7{self.images.shape[3]} px"]
        if self.labels is not None:
            parts.append(f"{len(self.class_names)} classes")
        if self._comparable:
            correct = int((self.labels == self.predictions).sum())
            parts.append(f"accuracy {correct / self.n:.1%} ({correct}/{self.n}, {self.n - correct} mistakes)")
        return header_html(self.title, " \u00b7 ".join(parts), "click a thumbnail to inspect it")

    # ------------------------------------------------------------------ rendering
    def _thumb_uri(self, i: int) -> str:
        uri = self._thumb_cache.get(i)
        if uri is None:
            h, w = self.images.shape[2:]
            size = self.thumb_size if max(h, w) > self.thumb_size else None  # small images: scaled by CSS
            uri = png_data_uri(self.images[i], size=size)
            self._thumb_cache[i] = uri
            if len(self._thumb_cache) > _THUMB_CACHE_SIZE:
                self._thumb_cache.popitem(last=False)
        else:
            self._thumb_cache.move_to_end(i)
        return uri

    def _thumb_item(self, i: int) -> dict[str, Any]:
        info = self.item(i)
        c = image_captions(i, info["label"], info["prediction"], info["correct"], name=info["name"])
        return {
            "index": i, "src": self._thumb_uri(i), "alt": c["alt"], "label": c["caption"], "pred": c["sub"],
            "status": c["status"], "wrong": info["correct"] is False,
        }  # fmt: skip

    def _render_grid(self) -> None:
        self._grid.items = [self._thumb_item(i) for i in self.visible_indices]
        n_f = len(self._filtered)
        start = self.page * self.max_items
        shown = f"{start}\u2013{min(start + self.max_items, n_f) - 1}" if n_f else "none"
        filt = "" if n_f == self.n else f" ({n_f} of {self.n} match)"
        self._page_info.object = f'<span class="wb-pageinfo">Page {self.page + 1} / {self.n_pages} \u00b7 items {shown}{filt}</span>'
        self._prev.disabled = self.page == 0
        self._next.disabled = self.page >= self.n_pages - 1

    def _render_detail(self, *_events: Any) -> None:
        i = self.selected
        info = self.item(i)
        h = self.images.shape[2]
        scale = max(1, round(self.detail_size / h))
        mask = self.masks[i] if self.masks is not None and self.show_mask else None
        pixels = contour_overlay(
            self.images[i], mask, scale=scale, thickness=max(1, round(2 * h * scale / self.detail_size))
        )
        uri = png_data_uri(pixels, size=self.detail_size)
        alt = f"Image {i}" + (" with its object mask contour" if mask is not None else "")
        self._detail_image.object = img_tag(uri, alt, width=self.detail_size, css_class="wb-detail-img")
        self._detail_info.object = self._detail_html(info)

    def _detail_html(self, info: dict[str, Any]) -> str:
        esc = html.escape
        called = "" if info["name"] is None else f' \u00b7 <span class="wb-name">{esc(info["name"])}</span>'
        rows = []
        if info["label"] is not None:
            rows.append(f'<tr><th>label</th><td class="wb-label">{esc(info["label"])}</td></tr>')
        if info["prediction"] is not None:
            cls = {True: "wb-ok", False: "wb-bad", None: ""}[info["correct"]]
            pred = prediction_html(info["prediction"], info["confidence"], info["correct"])
            rows.append(f'<tr><th>prediction</th><td class="wb-prediction {cls}">{pred}</td></tr>')
        table = f"<table>{''.join(rows)}</table>" if rows else ""
        concepts = ""
        if self.concepts is not None:
            chips = []
            for name in info["concepts"]:
                if "=" in name:
                    group, value = name.split("=", 1)
                    chips.append(
                        f'<li title="{esc(name)}"><span class="wb-group">{esc(group)}:</span> {esc(value)}</li>'
                    )
                else:
                    chips.append(f'<li title="{esc(name)}">{esc(name)}</li>')
            body = (
                f'<ul class="wb-concepts">{"".join(chips)}</ul>'
                if chips
                else '<div class="wb-none">none</div>'
            )
            concepts = f'<div class="wb-section">Concepts present ({len(chips)})</div>{body}'
        return (
            f'<div class="wb-detail-info" data-index="{info["index"]}">'
            f'<div class="wb-detail-title">Image #{info["index"]}{called}</div>{table}{concepts}</div>'
        )

    # ------------------------------------------------------------------ callbacks
    def _on_filter(self, *_events: Any) -> None:
        keep = np.ones(self.n, bool)
        if self._comparable and self.show != "all":
            wrong = self.labels != self.predictions
            keep &= wrong if self.show == "mistakes" else ~wrong
        if self.labels is not None and self.class_filter != ALL_CLASSES:
            keep &= self.labels == self.class_names.index(self.class_filter)
        if self.subset is not None:
            keep &= np.isin(np.arange(self.n), np.asarray(self.subset, np.int64))
        self._filtered = np.flatnonzero(keep)
        self.param.page.bounds = (0, self.n_pages - 1)
        page = self._page_of(self.selected)
        with param.discard_events(self):
            self.page = page if page is not None else 0
        self._render_grid()
        self._render_detail()

    def _page_of(self, index: int) -> int | None:
        pos = np.searchsorted(self._filtered, index)
        if pos < len(self._filtered) and self._filtered[pos] == index:
            return int(pos // self.max_items)
        return None

    def _on_page(self, *_events: Any) -> None:
        self._render_grid()

    def _on_selected(self, *_events: Any) -> None:
        i = self.selected
        page = self._page_of(i)
        if page is None:  # hidden by a filter: clear the filters so the selection is visible
            with param.discard_events(self):
                self.show, self.class_filter, self.subset = "all", ALL_CLASSES, None
            self._on_filter()
            page = self._page_of(i)
        if page != self.page:
            self.page = page
        self._grid.selected = i
        self._goto.value = i
        self._render_detail()

    def _on_grid_click(self, event: Any) -> None:
        if event.new is not None and 0 <= event.new < self.n and event.new != self.selected:
            self.selected = int(event.new)

    def _on_goto(self, event: Any) -> None:
        if event.new is not None and 0 <= event.new < self.n and event.new != self.selected:
            self.selected = int(event.new)
