"""ConceptGallery: the concepts of one class, by importance, with their crops, images and recursion tree.

The gallery receives the results of a concept extraction (CRAFT, Fel et al., CVPR 2023; or any
factorization of crop activations, "A Holistic Approach to Unifying Automatic Concept Extraction and
Concept Importance Estimation", NeurIPS 2023): the crops and their codes ``U``, the class-level
importance of each concept, and optionally the concept maps over the crops and over images, the
per-image importances and the recursion tree. It computes nothing: :meth:`ConceptGallery.from_craft`
asks a fitted ``Craft`` for these through its public methods.

Per concept (sorted by importance, a page at a time) it shows: an importance bar; the crops with the
largest code, each with the concept's map over it (one opacity slider for every map); the images where
the concept matters most (by the per-image importance), each with the concept's map; and a slot for
the concept's feature visualization (MACO, Fel et al., NeurIPS 2023: "not computed yet" until one is given,
or computed through a given optimizer callable, a page of concepts per call, each once). Beside the cards: the
recursion tree (each node with its layer and importance; a click selects the concept, or the
sub-concept and its crops) and the selected image, with its map for every concept next to the maps an
:class:`~workbench.widgets.AttributionViewer` shows for the same image (when one is linked, selecting
an image here selects it there too, and back).

Everything renders as HTML built in Python (:class:`~workbench.widgets.html.ActionHTML`): clicks on
concepts, images and tree nodes come back as actions, so the state is testable without a browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import panel as pn
import param
import torch

from workbench._core.validation import check_images, check_int
from workbench.widgets.atom_browser import CSS as _ATOM_CSS
from workbench.widgets.attribution_viewer import AttributionViewer
from workbench.widgets.checks import check_atom, check_index, check_names, check_values
from workbench.widgets.colormaps import map_range
from workbench.widgets.featviz_slots import FeatureVizSlots
from workbench.widgets.html import ActionHTML, LiveHTML, asset, ensure_extension, fmt, widget_kwargs
from workbench.widgets.images import heat_tile, png_data_uri
from workbench.widgets.paging import paging_controls
from workbench.widgets.viewer import PagedViewer

_CSS = _ATOM_CSS + asset("concept_gallery.css")
_DOT = " \u00b7 "
_CROP, _THUMB, _DETAIL, _FEATVIZ = 56, 64, 96, 64
EMPTY_FEATVIZ = "feature visualization: not computed yet"
_TWIG = "\u2514 "


@dataclass(frozen=True)
class TreeNode:
    """One node of the recursion tree as the gallery shows it.

    ``path`` is its position ("0", "0.1": the second child of the first root); ``top`` is the gallery
    concept it belongs to (itself at the top level; None for a root without a concept, e.g. the class);
    ``sub`` says that it refines a concept above it (a sub-concept, at an earlier layer).
    """

    path: str
    depth: int
    concept: int | None
    layer: str
    importance: float | None
    crops: tuple[int, ...]
    top: int | None
    sub: bool


def tree_nodes(tree: Any, n_concepts: int, n_crops: int) -> list[TreeNode]:
    """The nodes of a recursion tree, depth first, checked.

    ``tree`` is a node dict ``{"concept": int, "layer": str, "importance": float, "crops": [indices],
    "children": [nodes]}`` (every key optional; ``concept`` None for a root such as the class), a list of
    them, or an object with ``to_dict()`` returning either. The first concept on each path is a gallery
    concept (0..n_concepts-1); ``crops`` index the gallery's crops.
    """
    if tree is None:
        return []
    if not isinstance(tree, Mapping | list | tuple) and callable(getattr(tree, "to_dict", None)):
        tree = tree.to_dict()
    if not isinstance(tree, Mapping | list | tuple):
        raise ValueError(f"tree: expected a node dict, a list of them or an object with to_dict(), got {type(tree).__name__}")  # fmt: skip
    out: list[TreeNode] = []

    def walk(node: Any, path: str, depth: int, top: int | None) -> None:
        where = f"tree node {path}"
        if not isinstance(node, Mapping):
            raise ValueError(f"{where}: expected a dict with concept, layer, importance, crops, children; got {type(node).__name__}")  # fmt: skip
        c = node.get("concept")
        if c is not None:
            if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
                raise ValueError(f"{where}: concept must be an integer >= 0 (or None for a root), got {c!r}")
            if top is None and c >= n_concepts:
                raise ValueError(
                    f"{where}: concept {c} is out of range for the {n_concepts} concepts of the gallery"
                )
            c = int(c)
        imp = node.get("importance")
        if imp is not None:
            if (
                isinstance(imp, bool)
                or not isinstance(imp, int | float | np.number)
                or not math.isfinite(imp)
            ):
                raise ValueError(f"{where}: importance must be a finite number, got {imp!r}")
            imp = float(imp)
        crops = [] if node.get("crops") is None else node.get("crops")
        bad = [
            k
            for k in crops
            if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < n_crops
        ]
        if bad:
            raise ValueError(
                f"{where}: crops must index the {n_crops} crops (0..{n_crops - 1}), got {bad[:5]}"
            )
        children = [] if node.get("children") is None else node.get("children")
        if not isinstance(children, list | tuple):
            raise ValueError(f"{where}: children must be a list of nodes, got {type(children).__name__}")
        here = top if top is not None else c
        out.append(TreeNode(path, depth, c, str(node.get("layer") or ""), imp, tuple(int(k) for k in crops), here,
                            sub=top is not None))  # fmt: skip
        for k, child in enumerate(children):
            walk(child, f"{path}.{k}", depth + 1, here)

    for k, root in enumerate([tree] if isinstance(tree, Mapping) else tree):
        walk(root, str(k), 0, None)
    return out


class ConceptGallery(PagedViewer):
    """The concepts of one class, sorted by importance: crops, maps, images, recursion tree, feature viz.

    Parameters
    ----------
    crops
        (M, 3, h, w) float in [0, 1]: the crops the concepts were extracted from.
    crop_codes
        (M, r): the code ``U`` of each crop on the r concepts (crop activations ~= ``U W``).
    importances
        (r,): the class-level importance of each concept (e.g. CRAFT's Sobol total index); signed values
        are drawn as signed bars.
    crop_maps
        (M, r, h', w'): each concept's map over each crop (e.g. its spatial codes), drawn over the crop
        in the concept's colour range; None shows the crops plain (their code under each). As for
        ``image_maps``, maps with any negative value are drawn with a diverging colormap around 0.
    images
        (N, 3, H, W) float in [0, 1]: the images of the per-image importances and maps.
    image_importances
        (N, r): the importance of each concept for each image; picks the images where a concept matters most.
    image_maps
        (N, r, H', W'): each concept's attribution map over each image (maps with any negative value are
        drawn with a diverging colormap around 0).
    tree
        The recursion tree (see :func:`tree_nodes`): a node dict, a list of them, or an object with
        ``to_dict()`` (CRAFT's ``ConceptTree``).
    concept_names
        Names of the r concepts (default "concept 0", ...).
    class_name
        The class the concepts explain (in the title).
    featviz
        ``{concept: image (3, H, W) in [0, 1]}``: feature visualizations; a concept without one shows an
        empty slot ("feature visualization: not computed yet"). See also :attr:`featviz`.
    featviz_optimizer
        Computes the missing feature visualizations when their page is shown: called once per page with the
        list of objectives ``direction(concept_layer, concept_vectors[c])`` of the page's concepts that have
        no image yet, it returns a ``FeatureViz`` with one image per objective (e.g.
        ``functools.partial(workbench.featviz.visualize, model, steps=128, progress=False)``: MACO by
        default, the concepts optimized together in one batch). Each image is computed once.
    concept_vectors, concept_layer
        (r, C) the concepts' directions in the activations of ``concept_layer`` (CRAFT's ``W``); needed with
        ``featviz_optimizer`` (:meth:`from_craft` passes the Craft's).
    attribution_viewer
        An :class:`~workbench.widgets.AttributionViewer` of the same images: selecting an image here
        selects it there (and back), and its maps of the selected image are shown next to the concept maps.
    top_k
        Crops shown per concept (those with the largest positive code).
    page_size
        Concepts per page.
    n_top_images
        Images shown per concept (those with the largest importance for it).
    title
        Heading (default "Concepts of <class_name>").
    **params
        Initial values of the parameters: ``page``, ``selected``, ``selected_node``, ``selected_image``,
        ``opacity``.

    Attributes
    ----------
    page : int
        The shown page of :attr:`order`.
    selected : int
        The selected concept (default: the most important).
    selected_node : str or None
        The selected node of the recursion tree (its :attr:`TreeNode.path`).
    selected_image : int or None
        The image whose concept maps are shown.
    opacity : float
        Opacity of every concept map (crops, images, the selected image).

    Notes
    -----
    Colour ranges: one per concept and per kind of map (crops, images), from
    :func:`~workbench.widgets.colormaps.map_range` over all the maps of that concept (99.5th percentile),
    so the maps of one concept compare across crops and across images. The crops of a concept are its
    ``top_k`` crops by code (code > 0 only); its images are the ``n_top_images`` with the largest
    ``image_importances`` for it. Sorting and colour ranges are the only arithmetic the gallery does.
    """

    page = param.Integer(default=0, bounds=(0, None), doc="The shown page.")
    selected = param.Integer(default=0, bounds=(0, None), doc="The selected concept.")
    selected_node = param.String(default=None, allow_None=True, doc="The selected tree node (its path).")
    selected_image = param.Integer(default=None, allow_None=True, doc="The image whose maps are shown.")
    opacity = param.Number(default=0.6, bounds=(0.0, 1.0), step=0.05, doc="Opacity of the concept maps.")

    def __init__(
        self,
        *,
        crops: Any,
        crop_codes: Any,
        importances: Any,
        crop_maps: Any = None,
        images: Any = None,
        image_importances: Any = None,
        image_maps: Any = None,
        tree: Any = None,
        concept_names: Sequence[str] | None = None,
        class_name: str | None = None,
        featviz: Mapping[int, Any] | None = None,
        featviz_optimizer: Callable[..., Any] | None = None,
        concept_vectors: Any = None,
        concept_layer: str | None = None,
        attribution_viewer: AttributionViewer | None = None,
        top_k: int = 8,
        page_size: int = 4,
        n_top_images: int = 4,
        title: str | None = None,
        **params: Any,
    ):
        ensure_extension()
        for value, name in ((top_k, "top_k"), (page_size, "page_size"), (n_top_images, "n_top_images")):
            check_int(value, name)
        self.crops = check_images(crops, name="crops", channels=3).detach().float().cpu()
        m = len(self.crops)
        self.crop_codes = check_values(crop_codes, "crop_codes", (m, None), f"one code per crop: {m} crops, r concepts")  # fmt: skip
        r = self.n_concepts = int(self.crop_codes.shape[1])
        if r < 1:
            raise ValueError("crop_codes: expected at least one concept (column), got shape (M, 0)")
        self.importances = check_values(
            importances, "importances", (r,), f"one per concept: crop_codes has {r} columns"
        )
        self.crop_maps = None
        if crop_maps is not None:
            self.crop_maps = check_values(crop_maps, "crop_maps", (m, r, None, None), f"{m} crops, {r} concepts, h, w")  # fmt: skip
        self.images = None if images is None else check_images(images, name="images", channels=3).detach().float().cpu()  # fmt: skip
        n = self.n_images = 0 if self.images is None else len(self.images)
        for value, name in ((image_importances, "image_importances"), (image_maps, "image_maps")):
            if value is not None and self.images is None:
                raise ValueError(f"{name}: needs the images they belong to (images=...)")
        self.image_importances = None
        if image_importances is not None:
            self.image_importances = check_values(
                image_importances, "image_importances", (n, r), f"{n} images, {r} concepts"
            )
        self.image_maps = None
        if image_maps is not None:
            self.image_maps = check_values(image_maps, "image_maps", (n, r, None, None), f"{n} images, {r} concepts, H, W")  # fmt: skip
        # Maps with a negative value are drawn around 0 (diverging colormap), per kind of map.
        self._signed = {kind: maps is not None and bool((maps < 0).any())
                        for kind, maps in (("crops", self.crop_maps), ("images", self.image_maps))}  # fmt: skip
        self.concept_names = check_names(concept_names, r, "concept_names", "concept ")[:r]
        self.class_name = None if class_name is None else str(class_name)
        self.title = str(title) if title is not None else "Concepts" + (f" of {self.class_name}" if self.class_name else "")  # fmt: skip
        self.nodes = tree_nodes(tree, r, m)
        self._featviz = self._featviz_slots(featviz, featviz_optimizer, concept_vectors, concept_layer)
        if attribution_viewer is not None:
            if not isinstance(attribution_viewer, AttributionViewer):
                raise ValueError(f"attribution_viewer: expected an AttributionViewer, got {type(attribution_viewer).__name__}")  # fmt: skip
            if self.images is None:
                raise ValueError("attribution_viewer: linking needs the images (images=...)")
            av = attribution_viewer.images
            if av.shape != self.images.shape or not torch.allclose(av.float(), self.images, atol=1e-6):
                raise ValueError(f"attribution_viewer: it shows other images ({tuple(av.shape)}) than the gallery's"
                                 f" {tuple(self.images.shape)}; link viewers of the same images")  # fmt: skip
        self.attribution_viewer = attribution_viewer
        self.top_k, self.page_size, self.n_top_images = top_k, page_size, n_top_images
        self._ranges: dict[tuple[str, int], tuple[float, float]] = {}
        params.setdefault("selected", int(self.order[0]))
        selected_image = params.pop("selected_image", None)
        selected_node = params.pop("selected_node", None)
        super().__init__(**params)
        self.param.page.bounds = (0, self.n_pages - 1)
        self.select(self.selected)
        self._build()
        self.param.watch(self._render_cards, ["page", "selected", "selected_image", "opacity"])
        self.param.watch(self._render_tree, ["selected", "selected_node"])
        self.param.watch(self._render_image, ["selected", "selected_image", "opacity"])
        if attribution_viewer is not None:
            attribution_viewer.param.watch(self._on_viewer_select, ["selected"])
            attribution_viewer.param.watch(
                self._render_image, ["methods", "cmap", "opacity", "upsampling", "fade"]
            )
        if selected_node is not None:
            self.select_node(selected_node)
        if selected_image is not None:
            self.select_image(selected_image)

    # ------------------------------------------------------------------ from a fitted CRAFT
    @classmethod
    def from_craft(
        cls, craft: Any, images: Any, attribution_viewer: AttributionViewer | None = None, **kw: Any
    ) -> ConceptGallery:
        """The gallery of a fitted ``Craft`` (CRAFT, Fel et al., CVPR 2023) on ``images`` of its class.

        Calls only the Craft's public API: ``crops``, ``crop_codes``, ``class_id``,
        ``importance(images, class_id)`` (r,) and ``importance(..., per_image=True)`` (N, r),
        ``concept_maps(x, method="codes")`` on the images and on the crops, and ``tree()``. Any of the
        gallery's arguments given in ``kw`` (``importances``, ``image_importances``, ``image_maps``,
        ``crop_maps``, ``tree``, ...) is used as given instead of asking the Craft (e.g.
        ``crop_maps=None`` skips the crops' maps, one forward pass per crop). With a ``featviz_optimizer``,
        the concepts' feature visualizations are directions of the Craft's ``concepts`` in its ``layer``.
        """
        lazy: dict[str, Callable[[], Any]] = {
            "importances": lambda: craft.importance(images, craft.class_id),
            "image_importances": lambda: craft.importance(images, craft.class_id, per_image=True),
            "image_maps": lambda: craft.concept_maps(images, method="codes"),
            "crop_maps": lambda: craft.concept_maps(craft.crops, method="codes"),
            "tree": craft.tree,
        }
        for key, make in lazy.items():
            if key not in kw:
                kw[key] = make()
        kw.setdefault("class_name", f"class {craft.class_id}")
        if kw.get("featviz_optimizer") is not None:
            kw.setdefault("concept_vectors", craft.concepts)
            kw.setdefault("concept_layer", craft.layer)
        return cls(crops=craft.crops, crop_codes=craft.crop_codes, images=images,
                   attribution_viewer=attribution_viewer, **kw)  # fmt: skip

    # ------------------------------------------------------------------ state and queries
    def _featviz_slots(
        self, featviz: Mapping[int, Any] | None, optimizer: Any, vectors: Any, layer: str | None
    ) -> FeatureVizSlots:
        """The feature-visualization slots: the given images, and the optimizer's (with its objectives)."""
        objective = None
        self.concept_vectors, self.concept_layer = None, layer
        if optimizer is not None:
            if vectors is None or not isinstance(layer, str) or not layer:
                raise ValueError("featviz_optimizer: needs concept_vectors (r, C) and concept_layer (a module"
                                 " name) to build each concept's objective")  # fmt: skip
            r = self.n_concepts
            self.concept_vectors = check_values(vectors, "concept_vectors", (r, None), f"one direction per concept: {r} concepts")  # fmt: skip

            def objective(c: int) -> Any:
                from workbench.featviz import objectives

                name = f"concept {c} ({self.concept_names[c]})"
                return objectives.direction(layer, self.concept_vectors[c], name=name)

        return FeatureVizSlots(self.n_concepts, featviz, optimizer, objective, "concept", "gallery")

    @property
    def featviz(self) -> dict[int, torch.Tensor]:
        """``{concept: image (3, H, W)}``: the feature visualizations shown (given, or computed by the
        ``featviz_optimizer``); assign a dict to replace the given ones."""
        return self._featviz.images()

    @featviz.setter
    def featviz(self, value: Mapping[int, Any] | None) -> None:
        self._featviz.given = self._featviz.check_given(value)
        self._render_cards()

    @property
    def order(self) -> np.ndarray:
        """The concepts by decreasing importance (ties by id)."""
        return self.importances.argsort(descending=True, stable=True).numpy()

    @property
    def n_pages(self) -> int:
        return max(1, -(-self.n_concepts // self.page_size))

    @property
    def page_concepts(self) -> list[int]:
        """The concepts on the shown page, most important first."""
        return [int(c) for c in self.order[self.page * self.page_size : (self.page + 1) * self.page_size]]

    def rank(self, concept: int) -> int:
        """The position of ``concept`` in :attr:`order` (0: the most important)."""
        return int(np.nonzero(self.order == self._concept(concept))[0][0])

    def top_crops(self, concept: int, k: int | None = None) -> list[tuple[int, float]]:
        """The crops with the largest positive code on ``concept``: ``[(crop, code)]``, at most ``k`` (``top_k``)."""
        u = self.crop_codes[:, self._concept(concept)]
        idx = u.argsort(descending=True, stable=True)[: k or self.top_k]
        return [(int(i), float(u[i])) for i in idx if u[i] > 0]

    def top_images(self, concept: int, k: int | None = None) -> list[tuple[int, float]]:
        """The images where ``concept`` matters most: ``[(image, importance)]``, at most ``k`` (``n_top_images``);
        empty without ``image_importances``."""
        c = self._concept(concept)
        if self.image_importances is None:
            return []
        v = self.image_importances[:, c]
        return [
            (int(i), float(v[i])) for i in v.argsort(descending=True, stable=True)[: k or self.n_top_images]
        ]

    def node(self, path: str) -> TreeNode:
        """The tree node at ``path`` ("0", "0.1", ...)."""
        for node in self.nodes:
            if node.path == path:
                return node
        paths = ", ".join(n.path for n in self.nodes[:12]) or "none: no tree was given"
        raise ValueError(f"select_node: no tree node {path!r}; the nodes are {paths}")

    def select(self, concept: int) -> None:
        """Select ``concept`` and show the page that holds it."""
        c = self._concept(concept)
        self.param.update(page=self.rank(c) // self.page_size, selected=c)

    def select_node(self, path: str | None) -> None:
        """Select a node of the recursion tree (None: none), and the gallery concept it belongs to."""
        if path is None:
            self.selected_node = None
            return
        node = self.node(str(path))
        if node.top is not None:
            self.select(node.top)
        self.selected_node = node.path

    def select_image(self, index: int | None) -> None:
        """Show image ``index``'s map for every concept (None: no image); a linked AttributionViewer
        selects the same image."""
        if index is None:
            self.selected_image = None
            return
        if self.images is None:
            raise ValueError("select_image: the gallery has no images (images=...)")
        i = check_index(index, self.n_images, "select_image")
        self.selected_image = i
        av = self.attribution_viewer
        if av is not None and av.selected != i:
            av.select(i)

    def on_select_image(self, callback: Callable[[int | None], Any]) -> param.parameterized.Watcher:
        """Call ``callback(image or None)`` when the selected image changes; returns the ``param`` watcher."""
        return self.param.watch(lambda e: callback(e.new), ["selected_image"])

    def __repr__(self) -> str:
        return (f"ConceptGallery(n_concepts={self.n_concepts}, n_crops={len(self.crops)}, n_images={self.n_images},"
                f" page={self.page + 1}/{self.n_pages}, selected={self.selected}, selected_image={self.selected_image})")  # fmt: skip

    def _concept(self, concept: Any) -> int:
        c = check_atom(concept, self.n_concepts, "concept", "gallery")
        if c is None:
            raise ValueError("concept: expected a concept id, got None")
        return c

    def _range(self, kind: str, concept: int) -> tuple[float, float]:
        """The colour range of ``concept``'s maps of ``kind`` ("crops" or "images"), over all of them."""
        key = (kind, concept)
        if key not in self._ranges:
            maps = self.crop_maps if kind == "crops" else self.image_maps
            self._ranges[key] = map_range(maps[:, concept], self._signed[kind])
        return self._ranges[key]

    def _image_tile(self, i: int, c: int | None, size: int) -> str:
        """Image ``i`` with concept ``c``'s map over it (plain for ``c`` None or without maps)."""
        if c is None or self.image_maps is None:
            return heat_tile(self.images[i], None, 0.0, 1.0, size)
        vmax = self._range("images", c)[1]
        return heat_tile(
            self.images[i], self.image_maps[i, c], self.opacity, vmax, size, signed=self._signed["images"]
        )

    # ------------------------------------------------------------------ rendering
    def _bar(self, value: float, top: float, width: int = 120) -> str:
        color = "#2e7d32" if value >= 0 else "#c62828"
        return (f'<span class="wb-cg-track" style="width:{width}px"><span class="wb-cg-fill" style="width:'
                f'{100 * abs(value) / (top or 1.0):.1f}%;background:{color}"></span></span>')  # fmt: skip

    def _crop_tiles(self, c: int) -> str:
        tiles = []
        for k, u in self.top_crops(c):
            amap = None if self.crop_maps is None else self.crop_maps[k, c]
            vmax = 1.0 if self.crop_maps is None else self._range("crops", c)[1]
            src = heat_tile(self.crops[k], amap, self.opacity, vmax, _CROP, signed=self._signed["crops"])
            tiles.append(f'<div class="wb-ex wb-cg-crop" data-crop="{k}"><img src="{src}" alt="crop {k} of concept'
                         f' {c}" width="{_CROP}"><div class="wb-cap">u {fmt(u)}</div></div>')  # fmt: skip
        return "".join(tiles) or '<span class="wb-muted">no crop has this concept</span>'

    def _image_thumbs(self, c: int) -> str:
        tiles = []
        for i, v in self.top_images(c):
            sel = " wb-on" if i == self.selected_image else ""
            tiles.append(f'<div class="wb-ex wb-cg-image{sel}" data-action="image" data-value="{i}" data-image="{i}"'
                         f' role="button" tabindex="0"><img src="{self._image_tile(i, c, _THUMB)}" alt="image {i}, map of'
                         f' concept {c}" width="{_THUMB}"><div class="wb-cap">#{i} \u00b7 {fmt(v)}</div></div>')  # fmt: skip
        return "".join(tiles)

    def _featviz_slot(self, c: int) -> str:
        image = self._featviz.get(c)
        if image is None:
            return f'<div class="wb-cg-slot wb-cg-empty" data-featviz="empty">{EMPTY_FEATVIZ}</div>'
        return (f'<div class="wb-cg-slot" data-featviz="filled"><img src="{png_data_uri(image, size=_FEATVIZ)}"'
                f' alt="feature visualization of concept {c}" width="{_FEATVIZ}"></div>')  # fmt: skip

    def _card(self, c: int, top: float) -> str:
        esc = html.escape
        sel = c == self.selected
        blocks = [f'<div class="wb-cg-block"><div class="wb-cg-label">Top crops<span class="wb-hint">largest code u'
                  f'{"" if self.crop_maps is None else ", concept map over each"}</span></div>'
                  f'<div class="wb-examples">{self._crop_tiles(c)}</div></div>']  # fmt: skip
        if self.image_importances is not None:
            blocks.append(f'<div class="wb-cg-block"><div class="wb-cg-label">Where it matters most<span class="wb-hint">'
                          f'image importance; click to inspect</span></div><div class="wb-examples">{self._image_thumbs(c)}'
                          "</div></div>")  # fmt: skip
        blocks.append(
            f'<div class="wb-cg-block"><div class="wb-cg-label">Feature viz</div>{self._featviz_slot(c)}</div>'
        )
        v = float(self.importances[c])
        return (
            f'<div class="wb-cg-card{" wb-selected" if sel else ""}" data-concept="{c}" data-rank="{self.rank(c)}">'
            f'<div class="wb-cg-head" data-action="concept" data-value="{c}" role="button" tabindex="0"'
            f' aria-pressed="{str(sel).lower()}"><span class="wb-cg-rank">{self.rank(c) + 1}</span>'
            f'<span class="wb-cg-name">{esc(self.concept_names[c])}</span>{self._bar(v, top)}'
            f'<span class="wb-cg-value">importance {fmt(v)}</span></div>'
            f'<div class="wb-cg-body">{"".join(blocks)}</div></div>'
        )

    def _render_cards(self, *_events: Any) -> None:
        top = float(self.importances.abs().max())
        concepts = self.page_concepts
        self._featviz.fill(concepts)  # one optimizer call for the page's missing visualizations, if any
        cards = "".join(self._card(c, top) for c in concepts)
        self._cards.object = (
            f'<div class="wb-sae wb-cg-cards" data-page="{self.page}" data-concepts="{",".join(map(str, concepts))}"'
            f' data-selected="{self.selected}" data-opacity="{self.opacity:.2f}">{cards}</div>'
        )
        start = self.page * self.page_size
        self._info.object = (f'<div class="wb-pageinfo">page {self.page + 1} / {self.n_pages} \u00b7 concepts'
                             f" {start + 1}\u2013{start + len(concepts)} of {self.n_concepts} by importance</div>")  # fmt: skip

    def _node_label(self, node: TreeNode) -> str:
        if node.concept is None:
            return html.escape(self.class_name or "root")
        return f"sub-concept {node.concept}" if node.sub else html.escape(self.concept_names[node.concept])

    def _render_tree(self, *_events: Any) -> None:
        if not self.nodes:
            self._tree.object = ('<div class="wb-sae wb-cg-tree"><div class="wb-section">Recursion tree</div>'
                                 '<span class="wb-muted">no tree given</span></div>')  # fmt: skip
            return
        top = max((abs(n.importance) for n in self.nodes if n.importance is not None), default=0.0)
        rows = []
        for node in self.nodes:
            on = node.path == self.selected_node or (
                self.selected_node is None and not node.sub and node.concept == self.selected
            )
            imp = (
                ""
                if node.importance is None
                else f"{self._bar(node.importance, top, 60)}<span>{fmt(node.importance)}</span>"
            )
            layer = f'<span class="wb-muted">{html.escape(node.layer)}</span>' if node.layer else ""
            crops = f'<span class="wb-muted">{len(node.crops)} crops</span>' if node.crops else ""
            rows.append(f'<div class="wb-cg-node{" wb-on" if on else ""}" data-action="node" data-value="{node.path}"'
                        f' data-path="{node.path}" data-concept="{"" if node.concept is None else node.concept}"'
                        f' role="button" tabindex="0" style="padding-left:{6 + 16 * node.depth}px">'
                        f'<span class="wb-cg-twig">{_TWIG if node.depth else ""}</span>'
                        f'<span class="wb-cg-name">{self._node_label(node)}</span>{layer}{imp}{crops}</div>')  # fmt: skip
        detail = ""
        if self.selected_node is not None:
            node = self.node(self.selected_node)
            tiles = "".join(f'<img src="{heat_tile(self.crops[k], None, 0.0, 1.0, 40)}" alt="crop {k}" width="40">'
                            for k in node.crops[: 2 * self.top_k])  # fmt: skip
            facts = [self._node_label(node)] + ([html.escape(node.layer)] if node.layer else [])
            facts += [] if node.importance is None else [f"importance {fmt(node.importance)}"]
            detail = (f'<div class="wb-cg-node-detail" data-path="{node.path}"><div class="wb-muted">{_DOT.join(facts)}'
                      f' \u00b7 {len(node.crops)} crops</div><div class="wb-cg-node-crops">{tiles}</div></div>')  # fmt: skip
        self._tree.object = (
            f'<div class="wb-sae wb-cg-tree" data-selected-node="{self.selected_node or ""}">'
            f'<div class="wb-section">Recursion tree<span class="wb-hint">click a node to select it</span></div>'
            f"{''.join(rows)}{detail}</div>"
        )

    def _render_image(self, *_events: Any) -> None:
        i = self.selected_image
        if i is None:
            hint = ("click an image under \u201cWhere it matters most\u201d, or call select_image(i)"
                    if self.images is not None else "no images given")  # fmt: skip
            self._image.object = (f'<div class="wb-sae wb-cg-detail" data-image=""><div class="wb-section">Selected image'
                                  f'</div><span class="wb-muted">{hint}</span></div>')  # fmt: skip
            return
        esc = html.escape
        tiles = [f'<div class="wb-ex"><img src="{self._image_tile(i, None, _DETAIL)}" alt="image {i}" width="{_DETAIL}">'
                 f'<div class="wb-cap">image #{i}</div></div>']  # fmt: skip
        for c in self.order:
            c = int(c)
            v = "" if self.image_importances is None else fmt(float(self.image_importances[i, c]))
            pic = (f'<img src="{self._image_tile(i, c, _DETAIL)}" alt="image {i}, map of concept {c}" width="{_DETAIL}">'
                   if self.image_maps is not None else "")  # fmt: skip
            on = " wb-on" if c == self.selected else ""
            tiles.append(f'<div class="wb-ex wb-cg-map{on}" data-action="concept" data-value="{c}" data-concept="{c}"'
                         f' role="button" tabindex="0">{pic}<div class="wb-cap">{esc(self.concept_names[c])}</div>'
                         f'<div class="wb-cap">{v}</div></div>')  # fmt: skip
        what = "maps and importances" if self.image_maps is not None else "importances"
        parts = [f'<div class="wb-section">Image #{i}: concept {what}<span class="wb-hint">concepts by class'
                 f" importance; click one to select it</span></div>"
                 f'<div class="wb-examples wb-cg-concept-maps">{"".join(tiles)}</div>']  # fmt: skip
        av = self.attribution_viewer
        if av is not None:
            cells = "".join(
                f'<div class="wb-ex wb-cg-attr" data-method="{esc(m)}"><img src="{png_data_uri(av.overlay(i, m), size=_DETAIL)}"'
                f' alt="{esc(m)} map of image {i}" width="{_DETAIL}"><div class="wb-cap">{esc(m)}</div></div>'
                for m in av.shown_methods
            )  # fmt: skip
            parts.append(f'<div class="wb-section">Attribution maps<span class="wb-hint">the AttributionViewer\'s, same'
                         f' image</span></div><div class="wb-examples wb-cg-attr-maps">{cells}</div>')  # fmt: skip
        self._image.object = (f'<div class="wb-sae wb-cg-detail" data-image="{i}" data-opacity="{self.opacity:.2f}">'
                              f'{"".join(parts)}</div>')  # fmt: skip

    # ------------------------------------------------------------------ callbacks and layout
    def _on_action(self, action: str, value: str) -> None:
        if action == "concept" and value.isdigit():
            self.select(int(value))
            self.selected_node = None
        elif action == "image" and value.isdigit():
            self.select_image(int(value))
        elif action == "node" and any(n.path == value for n in self.nodes):
            self.select_node(None if value == self.selected_node else value)

    def _on_viewer_select(self, event: Any) -> None:
        if event.new is not None and event.new != self.selected_image:
            self.selected_image = int(event.new)

    def _build(self) -> None:
        crops_w = self.top_k * (_CROP + 8)
        images_w = self.n_top_images * (_THUMB + 8) if self.image_importances is not None else 0
        width = max(crops_w, 300) + images_w + _FEATVIZ + 90
        self._cards = ActionHTML(object="", stylesheets=[_CSS], margin=(5, 5), width=width, css_classes=["wb-cg-cards-pane"])  # fmt: skip
        self._tree = ActionHTML(object="", stylesheets=[_CSS], margin=(5, 5), sizing_mode="stretch_width",
                                css_classes=["wb-cg-tree-pane"])  # fmt: skip
        self._image = ActionHTML(object="", stylesheets=[_CSS], margin=(5, 5), sizing_mode="stretch_width",
                                 css_classes=["wb-cg-image-pane"])  # fmt: skip
        for pane in (self._cards, self._tree, self._image):
            pane.on_action(self._on_action)
        prev, nxt, self._info = paging_controls(self.previous_page, self.next_page, _CSS)
        opacity = pn.widgets.FloatSlider.from_param(
            self.param.opacity, width=180, margin=(0, 12), css_classes=["wb-cg-opacity"],
            **widget_kwargs(pn.widgets.FloatSlider, label="concept map opacity"),
        )  # fmt: skip
        n_crops, n = len(self.crops), self.n_images
        summary = f"{self.n_concepts} concepts \u00b7 {n_crops} crops" + (f" \u00b7 {n} images" if n else "")
        header = LiveHTML(object=f'<div class="wb-sae"><span class="wb-title">{html.escape(self.title)}</span>'
                                 f'<span class="wb-muted">{summary} \u00b7 sorted by importance</span></div>',
                          stylesheets=[_CSS], margin=(5, 5))  # fmt: skip
        side = pn.Column(self._tree, self._image, margin=0, sizing_mode="stretch_width", styles={"flex": "1 1 380px", "min-width": "380px"})  # fmt: skip
        self._layout = pn.Column(
            header,
            pn.Row(prev, self._info, nxt, opacity, margin=0),
            pn.FlexBox(self._cards, side, flex_wrap="wrap", align_items="flex-start", margin=0),
            sizing_mode="stretch_width", css_classes=["wb-concept-gallery"],
        )  # fmt: skip
        self._render_cards()
        self._render_tree()
        self._render_image()
