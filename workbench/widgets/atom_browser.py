"""AtomBrowser: page through the atoms of a sparse dictionary and inspect one atom at a time.

The browser receives a trained dictionary (any :class:`~workbench.sae.SparseAutoencoder`), the
activations it was trained on (an :class:`~workbench.data.ActivationStore` or a tensor), the images and
the per-atom statistics (:class:`~workbench.sae.AtomStats`, from :func:`workbench.sae.atom_stats`); it
trains and computes no analysis (without ``stats`` it asks ``atom_stats`` for them). Crops and
heatmaps are drawn lazily, for the atoms of the shown page and the selected atom only, by re-encoding
the rows of the few images shown.

Per atom it shows: the images where it fires most (top-k) and images sampled at quantiles of its
per-image activation, each as a crop around the token where it fires most and as the whole image with
the atom's heatmap; the histogram of its non-zero activations; its mean activation per class and an
importance per class; its nearest atoms (cosine of the dictionary) and the atoms that fire with it; a
stability score when other runs are given; and, for an archetypal dictionary (RA-SAE, with candidates
``C`` and row-stochastic weights ``W``), the candidate points it is built from, each shown through the
image region nearest to it; and its feature visualization (MACO, Fel et al., NeurIPS 2023), given as a
dict or computed through a given optimizer callable, one call per page of atoms, each image once. Search takes an atom id (``"12"`` or ``"#12"``) or a class name (the atoms
are then ranked by that class's mean activation).

Everything renders as HTML built in Python (:class:`~workbench.widgets.metrics_panel.ActionHTML`):
clicks on atoms, classes and neighbours come back as actions, so the state is testable without a browser.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import panel as pn
import param
import torch

from workbench._core.validation import check_images, check_int
from workbench.data.activation_rows import ActivationRows
from workbench.sae.atom_statistics import AtomStats, atom_stats
from workbench.sae.base import encode_rows
from workbench.widgets.checks import check_atom
from workbench.widgets.featviz_slots import FeatureVizSlots
from workbench.widgets.html import ActionHTML, asset, ensure_extension, fmt, svg_histogram, widget_kwargs
from workbench.widgets.images import crop_box, crop_tile, heat_tile, png_data_uri, token_map
from workbench.widgets.paging import paging_controls
from workbench.widgets.viewer import PagedViewer

CSS = asset("atom_browser.css")
_DOT = " \u00b7 "
_CACHE = 256
_CARD_PAIR, _DETAIL_FV = 44, 128  # card thumbnails when a feature visualization sits beside the crop


class AtomBrowser(PagedViewer):
    """Paged browser of a sparse dictionary's atoms, with a detail view of the selected atom.

    Parameters
    ----------
    sae
        The dictionary (``encode``, ``dictionary`` (n_atoms, d)); RA-SAE's ``C`` and ``W`` are used when present.
    store_or_acts
        The activations of ``images``: an :class:`~workbench.data.ActivationStore`, a map (N, C, H, W),
        tokens (N, T, C) or rows (N * rows_per_image, d), image after image. Spatial rows (a square
        number per image, possibly after a class token) give heatmaps and crops.
    images
        (N, 3, H, W) in [0, 1], the images of the activations (None: statistics only, no pictures).
    model
        Optional :class:`~workbench.models.Model` to get class directions for the importance (passed to
        :func:`workbench.sae.atom_stats`, which takes the gradient through ``model.split(layer)``). Needs
        ``images`` and labels. Not used when ``stats`` is given.
    layer
        The layer of the activations (default: the store's).
    labels
        (N,) class indices of the images (default: the store's labels).
    class_names
        Names of the classes (default: the model's labels, else "class 0", ...).
    class_directions
        (n_classes, d) class directions given directly (instead of ``model``).
    runs
        Dictionaries (n_atoms_b, d) or SAEs of other training runs, for the stability score.
    rows_per_image
        Rows per image for 2-D activation rows.
    page_size, columns
        Atoms per page and cards per row.
    top_k, n_quantiles
        Examples shown: the ``top_k`` images where the atom fires most, and ``n_quantiles`` images at
        evenly spaced quantiles of its per-image maximum over the images where it fires.
    crop
        Side of a crop as a fraction of the image side.
    batch_size
        Rows per encoding batch.
    stats
        The per-atom statistics, from :func:`workbench.sae.atom_stats` on the same SAE and activations
        (default: computed here by that function from the arguments above).
    dead_atoms
        Initial value of :attr:`dead_atoms`.
    title
        Heading.
    featviz
        ``{atom: image (3, H, W) in [0, 1]}``: feature visualizations of atoms, shown on their cards and in
        the detail view (an atom without one shows an empty slot while others have one).
    featviz_optimizer
        Computes the missing feature visualizations when their page is shown: called once per page with
        the list of objectives ``direction(layer, dictionary[i], cosine=True)`` of the page's atoms (and the
        selected one) that have no image yet; it returns a ``FeatureViz`` with one image per objective
        (e.g. ``functools.partial(workbench.featviz.visualize, model, steps=128, progress=False)``: MACO
        by default, the atoms optimized together in one batch). Needs ``layer`` (or a store, which knows
        its layer). Each image is computed once.

    Attributes
    ----------
    page : int
        The shown page (0-based) of :attr:`order`.
    selected : int or None
        The selected atom.
    rank_class : str or None
        A class name: atoms ordered by that class's mean activation (None: by atom id).
    opacity : float
        Opacity of the heatmaps.
    dead_atoms : str
        Atoms that fire on no row: ``"show"`` them in their place, sort them ``"last"``, or ``"hide"``
        them from the pages (a hidden atom can still be selected by its id).

    Notes
    -----
    Importance of atom ``i`` for class ``c`` (with a model or class directions):
    ``class_mean[c, i] * (D_i . w_c)``, where ``D_i`` is the decoder atom and ``w_c`` the class
    direction: a first-order (activation x gradient) estimate of what the atom adds to the logit of
    ``c`` per row of an average image of that class (multiply by ``rows_per_image`` for a whole image,
    when the head pools by summing). Without a model, only the per-class mean is shown.
    Memory: ``image_max`` holds N x n_atoms floats and ``cofiring`` n_atoms x n_atoms.
    """

    page = param.Integer(default=0, bounds=(0, None), doc="The shown page.")
    selected = param.Integer(default=None, allow_None=True, doc="The selected atom.")
    rank_class = param.String(
        default=None, allow_None=True, doc="Rank atoms by this class's mean activation."
    )
    opacity = param.Number(default=0.6, bounds=(0.0, 1.0), doc="Opacity of the heatmaps.")
    dead_atoms = param.Selector(default="show", objects=["show", "last", "hide"],
                                doc="Dead atoms: shown in place, sorted last, or hidden.")  # fmt: skip

    def __init__(
        self,
        sae: torch.nn.Module,
        store_or_acts: Any,
        images: torch.Tensor | None = None,
        model: torch.nn.Module | None = None,
        layer: str | None = None,
        labels: torch.Tensor | Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        class_directions: torch.Tensor | None = None,
        runs: Sequence[Any] = (),
        rows_per_image: int | None = None,
        page_size: int = 16,
        columns: int = 4,
        top_k: int = 6,
        n_quantiles: int = 4,
        crop: float = 0.5,
        batch_size: int = 4096,
        title: str = "Atoms",
        stats: AtomStats | None = None,
        dead_atoms: str = "show",
        featviz: Mapping[int, Any] | None = None,
        featviz_optimizer: Callable[..., Any] | None = None,
        **params: Any,
    ):
        ensure_extension()
        if not (hasattr(sae, "encode") and hasattr(sae, "dictionary")):
            raise ValueError(
                f"sae: expected a sparse dictionary with encode() and dictionary, got {type(sae).__name__}"
            )
        for value, name, lo in ((page_size, "page_size", 1), (columns, "columns", 1), (top_k, "top_k", 1),
                                (n_quantiles, "n_quantiles", 0), (batch_size, "batch_size", 1)):  # fmt: skip
            check_int(value, name, lo)
        if not 0 < crop <= 1:
            raise ValueError(f"crop: expected a fraction in (0, 1], got {crop!r}")
        self.sae, self.title = sae, str(title)
        self.page_size, self.columns, self.top_k, self.n_quantiles = page_size, columns, top_k, n_quantiles
        self.crop, self.batch_size = float(crop), batch_size
        self.D = sae.dictionary.detach().float().cpu()
        self.n_atoms = self.D.shape[0]
        n_img = None if images is None else len(images)
        self.rows = ActivationRows(store_or_acts, rows_per_image, n_img, name="store_or_acts")
        if self.rows.d != self.D.shape[1]:
            raise ValueError(f"store_or_acts: activations of dimension {self.rows.d}, but the dictionary's atoms"
                             f" have dimension {self.D.shape[1]}")  # fmt: skip
        if images is not None:
            check_images(images, name="images", channels=None)
            images = images.detach().float().cpu()
        self.images = images
        self.n_images = self.rows.n_images
        if labels is None and self.rows.store is not None:
            labels = self.rows.store.image_labels
        self.labels = None if labels is None else torch.as_tensor(labels).long().cpu()
        if self.labels is not None and self.labels.shape != (self.n_images,):
            raise ValueError(
                f"labels: expected ({self.n_images},) class indices, got shape {tuple(self.labels.shape)}"
            )
        n_classes = 0 if self.labels is None else int(self.labels.max()) + 1
        if class_names is None and model is not None and hasattr(model, "labels"):
            class_names = model.labels
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) < n_classes:
                raise ValueError(
                    f"class_names: {len(class_names)} names, but labels go up to {n_classes - 1}"
                )
            n_classes = len(class_names)
        self.class_names = class_names or [f"class {c}" for c in range(n_classes)]
        if self.labels is not None and bool((self.labels < 0).any()):
            raise ValueError("labels: expected class indices >= 0")
        if stats is None:
            stats = atom_stats(sae, self.rows, self.labels, n_classes=len(self.class_names) if self.labels is not None
                               else None, images=self.images, model=model, layer=layer,
                               class_directions=class_directions, runs=runs, batch_size=batch_size)  # fmt: skip
        if not isinstance(stats, AtomStats) or stats.image_max.shape != (self.n_images, self.n_atoms):
            got = tuple(stats.image_max.shape) if isinstance(stats, AtomStats) else type(stats).__name__
            raise ValueError(f"stats: expected the AtomStats of {self.n_atoms} atoms on {self.n_images} images"
                             f" (workbench.sae.atom_stats), got image_max {got}")  # fmt: skip
        self.stats = stats
        self.has_candidates = stats.candidate_weights is not None
        self._codes: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.layer = (
            layer if layer is not None or self.rows.store is None else self.rows.store.meta.get("layer")
        )
        self._featviz = self._featviz_slots(featviz, featviz_optimizer)
        params.setdefault("selected", 0)
        params.setdefault("dead_atoms", dead_atoms)
        super().__init__(**params)
        self._check_atom(self.selected)
        self._build()

    # ------------------------------------------------------------------ feature visualizations
    def _featviz_slots(self, featviz: Mapping[int, Any] | None, optimizer: Any) -> FeatureVizSlots:
        """The feature-visualization slots: the given images, and the optimizer's (with its objectives)."""
        objective = None
        if optimizer is not None:
            if not isinstance(self.layer, str) or not self.layer:
                raise ValueError("featviz_optimizer: needs the layer of the activations (layer=...) to build each"
                                 " atom's objective")  # fmt: skip
            layer = self.layer

            def objective(atom: int) -> Any:
                from workbench.featviz import objectives

                return objectives.direction(layer, self.D[atom], cosine=True, name=f"atom {atom}")

        return FeatureVizSlots(self.n_atoms, featviz, optimizer, objective, "atom", "dictionary")

    @property
    def featviz(self) -> dict[int, torch.Tensor]:
        """``{atom: image (3, H, W)}``: the feature visualizations shown (given, or computed by the
        ``featviz_optimizer``); assign a dict to replace the given ones."""
        return self._featviz.images()

    @featviz.setter
    def featviz(self, value: Mapping[int, Any] | None) -> None:
        self._featviz.given = self._featviz.check_given(value)
        self._render()

    def _featviz_html(self, atom: int, size: int) -> str:
        image = self._featviz.get(atom)
        if image is None:
            return (f'<div class="wb-fv-slot wb-fv-empty" data-featviz="empty" style="width:{size}px;height:{size}px">'
                    "feature viz: not computed</div>")  # fmt: skip
        return (f'<div class="wb-fv-slot" data-featviz="filled"><img src="{png_data_uri(image, size=size)}"'
                f' alt="feature visualization of atom {atom}" width="{size}"></div>')  # fmt: skip

    # ------------------------------------------------------------------ per-atom queries
    def _check_atom(self, atom: Any) -> int | None:
        return check_atom(atom, self.n_atoms)

    # The queries read the statistics (workbench.sae.AtomStats); the widget only checks the atom id.
    def nearest_atoms(self, atom: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` atoms with the largest cosine to ``atom`` in the dictionary: ``[(id, cosine)]``."""
        return self.stats.nearest_atoms(self._check_atom(atom), k)

    def cofiring_atoms(self, atom: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` atoms most often active when ``atom`` is: ``[(id, P(id active | atom active))]``."""
        return self.stats.cofiring_atoms(self._check_atom(atom), k)

    def top_images(self, atom: int, k: int | None = None) -> list[tuple[int, float]]:
        """The images where ``atom`` fires most, ``[(image, max code)]`` (only images where it fires)."""
        return self.stats.top_images(self._check_atom(atom), k or self.top_k)

    def quantile_images(self, atom: int, n: int | None = None) -> list[tuple[int, float]]:
        """``n`` images at evenly spaced quantiles (exclusive of the ends) of the atom's per-image maximum,
        among the images where it fires, highest first: ``[(image, max code)]``."""
        return self.stats.quantile_images(self._check_atom(atom), self.n_quantiles if n is None else n)

    def candidates(self, atom: int, k: int = 5) -> list[tuple[int, float, int]]:
        """Archetypal dictionaries only: the ``k`` candidates with the largest weights in ``W[atom]``:
        ``[(candidate, weight, nearest data row)]``; empty for other dictionaries."""
        return self.stats.candidates(self._check_atom(atom), k)

    def image_codes(self, image: int) -> torch.Tensor:
        """Codes (rows_per_image, n_atoms) of one image (cached: only the shown images are encoded)."""
        if image in self._codes:
            self._codes.move_to_end(image)
            return self._codes[image]
        z = encode_rows(self.sae, self.rows.get(image, image + 1), self.batch_size)
        self._codes[image] = z
        while len(self._codes) > _CACHE:
            self._codes.popitem(last=False)
        return z

    def heatmap(self, atom: int, image: int) -> np.ndarray | None:
        """The atom's codes over one image's (h, w) grid, or None when rows are not spatial."""
        if self.rows.grid is None:
            return None
        return token_map(self.image_codes(image)[:, self._check_atom(atom)], self.rows.grid, self.rows.skip)

    # ------------------------------------------------------------------ order, paging, search
    @property
    def order(self) -> np.ndarray:
        """Atom ids in the shown order: by id, or by the mean activation of :attr:`rank_class`; dead atoms
        in place, last, or left out (:attr:`dead_atoms`)."""
        if self.rank_class is None:
            order = np.arange(self.n_atoms)
        else:
            c = self.class_names.index(self.rank_class)
            order = self.stats.class_mean[c].argsort(descending=True, stable=True).numpy()
        if self.dead_atoms != "show":
            dead = self.stats.dead.numpy()[order]
            order = order[~dead] if self.dead_atoms == "hide" else np.concatenate([order[~dead], order[dead]])
        return order

    @property
    def n_dead(self) -> int:
        """Number of atoms that fire on no row."""
        return int(self.stats.dead.sum())

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.order) // self.page_size))

    @property
    def page_atoms(self) -> list[int]:
        """The atoms on the shown page."""
        return [int(a) for a in self.order[self.page * self.page_size : (self.page + 1) * self.page_size]]

    def select(self, atom: int | None) -> None:
        """Select ``atom`` and show the page that holds it; :meth:`on_select` callbacks receive it."""
        atom = self._check_atom(atom)
        if atom is not None:
            where = np.nonzero(self.order == atom)[0]
            if len(where):  # a hidden (dead) atom is selected without changing the page
                self.param.update(page=int(where[0]) // self.page_size, selected=atom)
            else:
                self.selected = atom
        else:
            self.selected = None

    def rank_by_class(self, name: str | None) -> None:
        """Order the atoms by the mean activation of class ``name`` (None: by id) and show the first page."""
        if name is not None:
            if self.stats.class_mean is None:
                raise ValueError("rank_by_class: no labels were given, so there are no per-class statistics")
            if name not in self.class_names:
                raise ValueError(f"rank_by_class: unknown class {name!r}; the classes are {self.class_names}")
        self.param.update(rank_class=name, page=0)

    def search(self, query: str) -> str:
        """An atom id (``"12"``, ``"#12"``) selects that atom; a class name ranks the atoms by it.

        Returns what was done ("atom" or "class"); raises ValueError for anything else.
        """
        q = str(query).strip().lstrip("#").strip()
        if q.isdigit():
            self.select(int(q))
            return "atom"
        match = [c for c in self.class_names if c.lower() == q.lower()]
        if match:
            self.rank_by_class(match[0])
            return "class"
        raise ValueError(f"search: {query!r} is neither an atom id (0..{self.n_atoms - 1}) nor a class"
                         f" ({', '.join(self.class_names) or 'no labels'})")  # fmt: skip

    def on_select(self, callback: Callable[[int | None], Any]) -> param.parameterized.Watcher:
        """Call ``callback(atom or None)`` when the selection changes; returns the ``param`` watcher."""
        return self.param.watch(lambda e: callback(e.new), ["selected"])

    # ------------------------------------------------------------------ rendering
    def _example(self, atom: int, image: int, value: float, size: int = 76) -> str:
        img = self.images[image]
        cls = (
            f" \u00b7 {html.escape(self.class_names[int(self.labels[image])])}"
            if self.labels is not None
            else ""
        )
        amap = self.heatmap(atom, image)
        vmax = float(self.stats.max[atom])
        if amap is None:
            pair = f'<img src="{heat_tile(img, None, 0, 1, size)}" alt="image {image}" width="{size}">'
        else:
            token = int(self.image_codes(image)[self.rows.skip :, atom].argmax())
            box = crop_box(token, self.rows.grid, tuple(img.shape[-2:]), self.crop)
            pair = (
                f'<img src="{crop_tile(img, box, size)}" alt="crop of image {image}" width="{size}">'
                f'<img src="{heat_tile(img, amap, self.opacity, vmax, size, box)}" alt="heatmap of atom'
                f' {atom} on image {image}" width="{size}">'
            )
        return (f'<div class="wb-ex" data-image="{image}"><div class="wb-pair">{pair}</div>'
                f'<div class="wb-cap">img {image}{cls} \u00b7 {fmt(value)}</div></div>')  # fmt: skip

    def _card(self, atom: int) -> str:
        s = self.stats
        fv = self._featviz.enabled
        size = _CARD_PAIR if fv else 64
        top = self.top_images(atom, 1)
        if top and self.images is not None:
            image = top[0][0]
            amap = self.heatmap(atom, image)
            if amap is not None:
                token = int(self.image_codes(image)[self.rows.skip :, atom].argmax())
                box = crop_box(token, self.rows.grid, tuple(self.images.shape[-2:]), self.crop)
                src = crop_tile(self.images[image], box, size)
            else:
                src = heat_tile(self.images[image], None, 0, 1, size)
            thumb = f'<img src="{src}" alt="atom {atom} top crop" width="{size}">'
        else:
            thumb = (
                f'<div class="wb-dead" style="width:{size}px;height:{size}px">dead</div>' if not top else ""
            )
        if fv:
            thumb = f'<div class="wb-pair">{thumb}{self._featviz_html(atom, size)}</div>'
        sel = atom == self.selected
        return (
            f'<div class="wb-card{" wb-selected" if sel else ""}" data-action="atom" data-value="{atom}"'
            f' data-atom="{atom}" role="button" tabindex="0" aria-pressed="{str(sel).lower()}">'
            f'<span class="wb-id">#{atom}</span>{thumb}'
            f'<span class="wb-sub">{100 * float(s.frequency[atom]):.1f}% \u00b7 max {fmt(float(s.max[atom]))}</span></div>'
        )

    def _grid_html(self) -> str:
        rank = f" \u00b7 ranked by <b>{html.escape(self.rank_class)}</b>" if self.rank_class else ""
        n_dead = self.n_dead
        dead = f" ({n_dead} dead{', hidden' if self.dead_atoms == 'hide' else ', last' if self.dead_atoms == 'last' else ''})" if n_dead else ""  # fmt: skip
        cards = "".join(self._card(a) for a in self.page_atoms)
        return (
            f'<div class="wb-sae wb-atom-grid" data-page="{self.page}" data-rank="{html.escape(self.rank_class or "")}"'
            f' data-dead="{self.dead_atoms}"'
            f' data-atoms="{",".join(map(str, self.page_atoms))}">'
            f'<div style="margin-bottom:6px"><span class="wb-title">{html.escape(self.title)}</span>'
            f'<span class="wb-muted">{self.n_atoms} atoms{dead} \u00b7 {self.n_images} images{rank}</span></div>'
            f'<div class="wb-cards" style="--wb-cols:{self.columns}">{cards}</div></div>'
        )

    def _chips(self, pairs: list[tuple[int, float]], kind: str) -> str:
        if not pairs:
            return '<span class="wb-muted">none</span>'
        return '<div class="wb-chips">' + "".join(
            f'<span class="wb-chip" data-action="atom" data-value="{j}" data-kind="{kind}" role="button"'
            f' tabindex="0">#{j} <span class="wb-muted">{fmt(v)}</span></span>' for j, v in pairs
        ) + "</div>"  # fmt: skip

    def _classes_html(self, atom: int) -> str:
        s = self.stats
        if s.class_mean is None:
            return ""
        means = s.class_mean[:, atom]
        imp = None if s.importance is None else s.importance[:, atom]
        top_m = float(means.abs().max()) or 1.0
        top_i = 1.0 if imp is None else (float(imp.abs().max()) or 1.0)
        rows = []
        for c, name in enumerate(self.class_names):
            m = float(means[c])
            cells = f'<td>{fmt(m)}<span class="wb-bar" style="width:{60 * abs(m) / top_m:.0f}px;background:#1565c0"></span></td>'  # fmt: skip
            if imp is not None:
                v = float(imp[c])
                color = "#2e7d32" if v >= 0 else "#c62828"
                cells += f'<td>{fmt(v)}<span class="wb-bar" style="width:{60 * abs(v) / top_i:.0f}px;background:{color}"></span></td>'  # fmt: skip
            on = " wb-on" if name == self.rank_class else ""
            rows.append(f'<tr class="wb-class{on}" data-action="class" data-value="{html.escape(name)}" tabindex="0">'
                        f'<td class="wb-name">{html.escape(name)}</td>{cells}</tr>')  # fmt: skip
        head = "<th>mean activation</th>" + ("<th>importance</th>" if imp is not None else "")
        hint = "click a class to rank the atoms by it" + ("; importance = mean \u00d7 atom\u00b7class direction" if imp is not None else "")  # fmt: skip
        return (f'<div><div class="wb-section">Classes<span class="wb-hint">{hint}</span></div><table>'
                f'<tr><th class="wb-name">class</th>{head}</tr>{"".join(rows)}</table></div>')  # fmt: skip

    def _candidates_html(self, atom: int) -> str:
        cands = self.candidates(atom)
        if not cands:
            return ""
        tiles = []
        for c, w, row in cands:
            image, token = divmod(row, self.rows.rows_per_image)
            pic = ""
            if self.images is not None:
                img = self.images[image]
                if self.rows.grid is not None and token >= self.rows.skip:
                    box = crop_box(token - self.rows.skip, self.rows.grid, tuple(img.shape[-2:]), self.crop)
                    pic = f'<img src="{crop_tile(img, box, 64)}" alt="candidate {c} nearest crop" width="64">'
                else:
                    pic = f'<img src="{heat_tile(img, None, 0, 1, 64)}" alt="candidate {c} nearest image" width="64">'
            tiles.append(f'<div class="wb-ex" data-candidate="{c}">{pic}<div class="wb-cap">C{c} \u00b7 w {fmt(w)}'
                         f"</div><div class=\"wb-cap\">img {image}</div></div>")  # fmt: skip
        return (f'<div class="wb-section">Archetypal candidates<span class="wb-hint">top weights of W[{atom}],'
                f' each shown by its nearest image region</span></div><div class="wb-examples">{"".join(tiles)}</div>')  # fmt: skip

    def _detail_html(self) -> str:
        atom = self.selected
        if atom is None:
            return '<div class="wb-sae wb-atom-detail"><span class="wb-muted">Click an atom.</span></div>'
        s = self.stats
        facts = [f"fires on {100 * float(s.frequency[atom]):.2f}% of tokens",
                 f"{100 * float(s.image_frequency[atom]):.1f}% of images", f"mean {fmt(float(s.mean[atom]))}",
                 f"max {fmt(float(s.max[atom]))}"]  # fmt: skip
        if s.run_cosines is not None:
            runs = ", ".join(fmt(float(v)) for v in s.run_cosines[:, atom])
            facts.append(f'<span class="wb-stability" title="best matched cosine in each other run: {runs}">'
                         f"stability {fmt(float(s.stability[atom]))}</span>")  # fmt: skip
        parts = [f'<div class="wb-title">Atom #{atom}</div><div class="wb-muted">{_DOT.join(facts)}</div>']
        if self.images is not None:
            for label, items, hint in (
                (
                    "Top activations",
                    self.top_images(atom),
                    "crop around the strongest token, and the heatmap",
                ),
                (
                    "Quantile samples",
                    self.quantile_images(atom),
                    "images at quantiles of the per-image maximum",
                ),
            ):
                body = (
                    "".join(self._example(atom, i, v) for i, v in items)
                    or '<span class="wb-muted">never fires</span>'
                )
                parts.append(f'<div class="wb-section">{label}<span class="wb-hint">{hint}</span></div>'
                             f'<div class="wb-examples wb-{label.split()[0].lower()}">{body}</div>')  # fmt: skip
        hist = svg_histogram(
            s.hist[atom].tolist(), 0.0, float(s.max[atom]), 280, 110, "activation when active"
        )
        n_on = int(s.hist[atom].sum())
        cols = [f'<div><div class="wb-section">Activation density<span class="wb-hint">{n_on} active tokens</span>'
                f"</div>{hist}</div>", self._classes_html(atom),
                f'<div><div class="wb-section">Nearest atoms<span class="wb-hint">cosine</span></div>'
                f'{self._chips(self.nearest_atoms(atom), "nearest")}'
                f'<div class="wb-section">Co-firing atoms<span class="wb-hint">P(j | #{atom})</span></div>'
                f'{self._chips(self.cofiring_atoms(atom), "cofiring")}</div>']  # fmt: skip
        parts.append(f'<div class="wb-cols">{"".join(cols)}</div>')
        parts.append(self._candidates_html(atom))
        if self._featviz.enabled:
            parts.append('<div class="wb-section">Feature visualization<span class="wb-hint">MACO image of'
                         f" direction(layer, D[{atom}], cosine)</span></div>{self._featviz_html(atom, _DETAIL_FV)}")  # fmt: skip
        return f'<div class="wb-sae wb-atom-detail" data-atom="{atom}">{"".join(parts)}</div>'

    def _render(self, *_events: Any) -> None:
        # one optimizer call for the page's (and the selected atom's) missing visualizations, if any
        self._featviz.fill(self.page_atoms + ([] if self.selected is None else [self.selected]))
        self._grid.object = self._grid_html()
        self._detail.object = self._detail_html()
        self._info.object = f'<div class="wb-pageinfo">page {self.page + 1} / {self.n_pages}</div>'

    def _on_action(self, action: str, value: str) -> None:
        if action == "atom" and value.isdigit():
            self.select(int(value))
        elif action == "class" and value in self.class_names:
            self.rank_by_class(None if value == self.rank_class else value)

    def _on_dead_atoms(self, *_events: Any) -> None:
        self.page = min(self.page, self.n_pages - 1)  # the order may have shrunk
        self._render()

    def _on_search(self, *_events: Any) -> None:
        query = self._search.value
        if not query.strip():
            return
        try:
            what = self.search(query)
            self._message.object = (
                f'<span class="wb-muted">{"atom" if what == "atom" else "ranked by class"}</span>'
            )
        except (ValueError, IndexError) as err:
            self._message.object = (
                f'<span class="wb-search-error" style="color:#c62828">{html.escape(str(err))}</span>'
            )

    def _build(self) -> None:
        from workbench.widgets.html import LiveHTML

        self._grid = ActionHTML(object="", stylesheets=[CSS], margin=(5, 5), css_classes=["wb-atom-grid-pane"],
                                width=self.columns * 110 + 10)  # fmt: skip
        self._detail = ActionHTML(object="", stylesheets=[CSS], margin=(5, 10), css_classes=["wb-atom-detail-pane"],
                                  sizing_mode="stretch_width")  # fmt: skip
        for pane in (self._grid, self._detail):
            pane.on_action(self._on_action)
        prev, nxt, self._info = paging_controls(self.previous_page, self.next_page, CSS)
        self._search = pn.widgets.TextInput(**widget_kwargs(pn.widgets.TextInput, label=""),
                                            placeholder="atom id or class name", width=200, margin=(5, 5),
                                            css_classes=["wb-search"])  # fmt: skip
        self._search.param.watch(self._on_search, ["value"])
        opacity = pn.widgets.FloatSlider.from_param(self.param.opacity, width=160, margin=(0, 10),
                                                    **widget_kwargs(pn.widgets.FloatSlider, label="heatmap opacity"))  # fmt: skip
        self._message = LiveHTML(object="", stylesheets=[CSS], margin=(5, 5))
        dead = pn.widgets.Select.from_param(self.param.dead_atoms, width=110, margin=(0, 10), css_classes=["wb-dead-atoms"],
                                            **widget_kwargs(pn.widgets.Select, label="dead atoms"))  # fmt: skip
        self._layout = pn.Column(
            pn.Row(prev, nxt, self._info, self._search, self._message, opacity, dead, margin=0),
            pn.Row(self._grid, self._detail, margin=0, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self._render()
        self.param.watch(self._render, ["page", "selected", "rank_class", "opacity"])
        self.param.watch(self._on_dead_atoms, ["dead_atoms"])

    def __repr__(self) -> str:
        return (f"AtomBrowser(n_atoms={self.n_atoms}, n_images={self.n_images}, page={self.page}/{self.n_pages},"
                f" selected={self.selected}, rank_class={self.rank_class!r})")  # fmt: skip
