"""Explorer: one app of linked views over a model and its images: where it looks, what it sees, is it right.

Pick an image in the grid (a :class:`~workbench.widgets.DatasetViewer`) and every view follows: its
attribution maps by method with their deletion, insertion and MuFidelity scores (an
:class:`~workbench.widgets.AttributionViewer` and a :class:`~workbench.widgets.MetricsBoard`), the CRAFT
concepts of its predicted class with their maps over it (a :class:`~workbench.widgets.ConceptGallery`),
the atoms of a sparse dictionary that fire on it (and an :class:`~workbench.widgets.AtomBrowser`), and the
MACO feature visualizations of its top concepts and atoms. Pick a concept (in the gallery) or an atom (on
the image, or in the browser) and the grid filters to the images where it matters most.

The Explorer computes nothing: an :class:`~workbench.explain.session.ExploreSession` does, on its background
thread, caching every result; each view shows "computing..." and the progress line shows the jobs until
their results arrive, so the page answers clicks all along. Results reach the page through the server's
event loop and then the Bokeh document's next tick under ``panel serve`` (a document may only be touched from
the loop's thread; results that come before the page has loaded wait for Panel's onload), and through the
kernel's event loop in a notebook (Panel's updates are not safe from two threads at once).
``workbench explore MODEL`` serves it; in JupyterLab, display ``Explorer(...)``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import panel as pn
import param
import torch

from workbench.widgets.atom_browser import AtomBrowser
from workbench.widgets.attribution_viewer import AttributionViewer
from workbench.widgets.concept_gallery import ConceptGallery
from workbench.widgets.dataset_viewer import DatasetViewer
from workbench.widgets.explorer_views import (
    CSS,
    atoms_html,
    banner_html,
    featviz_html,
    message_html,
    section_html,
    status_html,
)
from workbench.widgets.html import ActionHTML, LiveHTML, ensure_extension
from workbench.widgets.metrics_board import MetricsBoard
from workbench.widgets.viewer import LayoutViewer

_N_ATOMS_SHOWN, _N_FEATVIZ = 6, 3
_LOG = logging.getLogger(__name__)


class Explorer(LayoutViewer):
    """Linked views of one model on a set of images, computed in the background by an ExploreSession.

    Parameters
    ----------
    session
        An :class:`~workbench.explain.session.ExploreSession`, or the model (a ``Model`` or a
        :func:`~workbench.load_model` spec) to build one from with ``images`` and ``session_kwargs``.
        One session can serve many Explorers (the browser tabs of ``workbench explore``): they share its cache.
    images
        (N, 3, H, W) in [0, 1], when ``session`` is a model.
    concepts, concept_names
        Known concept labels of the images (PlantedShapes'), shown in the grid's detail pane.
    top
        The filter keeps the images whose code of the picked concept or atom is in this top fraction.
    title
        Heading.
    **session_kwargs
        Passed to ``ExploreSession`` when ``session`` is a model (methods, method_params, labels, ...).

    Attributes
    ----------
    selected : int
        The selected image; every view follows it.
    filter : dict or None
        ``{"kind": "concept", "class_id", "item"}`` or ``{"kind": "atom", "item"}``: what the grid is filtered by.
    """

    selected = param.Integer(default=0, bounds=(0, None), doc="The selected image.")
    filter = param.Dict(
        default=None, allow_None=True, doc="What the image grid is filtered by (None: nothing)."
    )

    def __init__(
        self,
        session: Any,
        images: torch.Tensor | None = None,
        *,
        concepts: Any = None,
        concept_names: Any = None,
        top: float = 0.25,
        title: str = "Explorer",
        **session_kwargs: Any,
    ):
        from workbench.explain.session import ExploreSession

        ensure_extension()
        if not isinstance(session, ExploreSession):
            if images is None:
                raise ValueError("images: needed to explore a model (or pass an ExploreSession)")
            session = ExploreSession(session, images, **session_kwargs)
        elif images is not None or session_kwargs:
            raise ValueError("images and session arguments go to the ExploreSession, not beside one")
        if not 0 < top <= 1:
            raise ValueError(f"top: expected a fraction in (0, 1], got {top!r}")
        self.session, self.top, self.title = session, float(top), str(title)
        self.gallery: ConceptGallery | None = None
        self.atom_browser: AtomBrowser | None = None
        self.attribution_viewer: AttributionViewer | None = None
        self.metrics_board: MetricsBoard | None = None
        self._where_index: int | None = None  # the image the attribution viewer shows
        self._concepts: dict[int, Any] = {}  # class -> ClassConcepts, as they arrive
        self._dictionary: Any = None
        self._atom_featviz: dict[int, torch.Tensor] = {}
        self._pending, self._pending_lock = 0, threading.Lock()
        self._status_due = False
        self.error: str | None = None  # the last error a view showed
        self._attached = True  # False once the browser tab of a served Explorer is closed
        self._doc = (
            pn.state.curdoc if pn.state.curdoc is not None and pn.state.curdoc.session_context else None
        )
        # In a notebook, the kernel's event loop (its main thread) applies the results, as the served
        # document's next tick does under `panel serve`.
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a script: no loop, results are applied on the worker's thread
            self._loop = None
        self._loop_thread = threading.current_thread()
        self._queue: deque[Callable[[], None]] = deque()  # results held for the kernel's loop, or the page
        # A served page takes results once Panel knows it loaded (its onload): a layout changed after the browser
        # pulled the document but before then is dropped by Panel 1.9 (its hold drains such events, assuming
        # the document is serialized later), and the view never fills in (reproduced: tests/test_explorer.py).
        self._page_ready, self._gate = self._doc is None, threading.Lock()
        super().__init__()
        self.param.selected.bounds = (0, session.n - 1)
        self._build(concepts, concept_names)
        self.param.watch(self._on_selected, ["selected"])
        self.param.watch(self._on_filter, ["filter"])
        session.on_progress(self._on_progress)
        if self._doc is not None:  # a closed browser tab stops listening to the shared session
            pn.state.on_session_destroyed(lambda _ctx: self._detach())
            pn.state.onload(self._on_page_loaded)
        self._on_selected()
        self._request(session.dictionary(), self._show_dictionary, None, "atoms")

    @classmethod
    def from_planted(
        cls, model: Any, n: int = 16, seed: int = 0, rule: str | None = None, **kw: Any
    ) -> Explorer:
        """An Explorer of ``n`` PlantedShapes images (with their labels, masks and concepts) at the model's
        input size; ``rule`` defaults to the one a zoo model was trained on (its card), else "shape"."""
        from workbench.data import planted_shapes
        from workbench.models import load_model

        model = load_model(model) if isinstance(model, str) else model
        rule = rule or (getattr(model, "card", None) or {}).get("data", {}).get("rule", "shape")
        data = planted_shapes(n, size=model.input_size[-1], seed=seed, rule=rule)
        kw.setdefault(
            "title", f"Explorer \u00b7 {getattr(model, 'spec', type(model).__name__)} on PlantedShapes"
        )
        return cls(model, data.images, labels=data.labels, masks=data.object_masks, concepts=data.concepts,
                   concept_names=data.concept_names, **kw)  # fmt: skip

    # ------------------------------------------------------------------ public actions
    def select(self, index: int) -> None:
        """Select image ``index``: every view follows (a filter that hides it is cleared)."""
        self.grid.select(index)  # the grid's watcher sets self.selected

    def filter_by_concept(self, class_id: int, concept: int) -> None:
        """Filter the grid to the images where ``concept`` of ``class_id`` matters most (needs its concepts)."""
        if class_id not in self._concepts:
            raise ValueError(f"filter_by_concept: the concepts of class {class_id} are not computed yet")
        self.filter = {"kind": "concept", "class_id": int(class_id), "item": int(concept)}

    def filter_by_atom(self, atom: int) -> None:
        """Filter the grid to the images where ``atom`` fires most (needs the dictionary)."""
        if self._dictionary is None:
            raise ValueError("filter_by_atom: the dictionary is not trained yet")
        self.filter = {"kind": "atom", "item": int(atom)}

    def clear_filter(self) -> None:
        """Show every image again."""
        self.filter = None

    def wait(self, timeout: float = 300.0) -> Explorer:
        """Block until every view has its results (for scripts and tests; a served page never waits)."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain()  # a notebook cell that waits blocks the loop: apply its results here
            with self._pending_lock:
                if self._pending == 0 and not self.session.pending_tasks():
                    return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"wait: views still computing after {timeout} s")
            time.sleep(0.02)

    def __repr__(self) -> str:
        return (f"Explorer(n={self.session.n}, selected={self.selected}, filter={self.filter},"
                f" pending={self._pending})")  # fmt: skip

    # ------------------------------------------------------------------ threading
    def _dispatch(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` where it may touch the page: the served document's next tick (held until the page has
        loaded), the notebook kernel's loop, or here (a script)."""
        if self._doc is None:
            if self._loop is None or threading.current_thread() is self._loop_thread:
                fn()
                return
            self._queue.append(fn)
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the kernel's loop is closed: nothing displays these views any more
                self._queue.clear()
        elif not self._page_ready and self._hold_for_page(fn):
            return
        elif self._loop is not None and threading.current_thread() is not self._loop_thread:
            # Hop to the server's loop before touching the document: its event lists are not thread-safe.
            # A next-tick callback added from this thread while Panel flushes the document's held events on
            # the loop (it does around every model update) can be lost, and its view then never fills in
            # (measured with Bokeh alone: 28 % of 20,000 such additions lost under frequent thread switches).
            try:
                self._loop.call_soon_threadsafe(self._next_tick, fn)
            except RuntimeError:  # the server's loop is closed: nothing displays these views any more
                self._detach()
        else:
            self._next_tick(fn)

    def _next_tick(self, fn: Callable[[], None]) -> None:
        """Schedule ``fn`` on the served document's next tick (call it on the server's loop thread)."""
        if not self._attached:  # a closed tab's document takes no more callbacks
            return
        try:
            self._doc.add_next_tick_callback(fn)
        except Exception:  # noqa: BLE001 - the session closed between the check and the call
            self._detach()

    def _hold_for_page(self, fn: Callable[[], None]) -> bool:
        """Keep ``fn`` until the served page has loaded; False if it just did (then dispatch ``fn`` now)."""
        with self._gate:
            if not self._page_ready:
                self._queue.append(fn)
            return not self._page_ready

    def _on_page_loaded(self) -> None:
        """Panel's onload (on the server's loop, the page connected): apply the results held until now."""
        with self._gate:
            self._page_ready = True
            held = list(self._queue)
            self._queue.clear()
        _LOG.debug("Explorer %x: page loaded, %d held results applied", id(self), len(held))
        if self._attached:
            for fn in held:
                try:
                    fn()
                except Exception:  # one view's bug must not keep the others from the page
                    _LOG.exception("Explorer: a held result failed to apply")

    def _drain(self) -> None:
        """Apply the results handed over to this thread, in order."""
        while self._queue:
            self._queue.popleft()()

    def _request(
        self, future: Future, show: Callable[[Any, int | None], None], index: int | None, kind: str = ""
    ) -> None:
        """Call ``show(result, index)`` on the page once ``future`` is done (an error message instead)."""
        with self._pending_lock:
            self._pending += 1

        def done(f: Future) -> None:
            _LOG.debug("Explorer %x: %s result of image %s handed over", id(self), kind or "a", index)

            def apply() -> None:
                _LOG.debug("Explorer %x: %s result of image %s applied", id(self), kind or "a", index)
                try:
                    err = f.exception()
                    if err is None:
                        show(f.result(), index)
                    else:  # shown on the page, and logged with its traceback (the server's log)
                        _LOG.warning(
                            "Explorer: the %s view of image %s failed", kind or "a", index, exc_info=err
                        )
                        self._show_error(kind, index, f"{type(err).__name__}: {err}")
                except Exception as bug:  # a view that fails to draw says so instead of staying "computing"
                    _LOG.exception("Explorer: the %s view failed", kind or "a")
                    self._show_error(kind, index, f"{type(bug).__name__}: {bug}")
                finally:
                    with self._pending_lock:
                        self._pending -= 1

            self._dispatch(apply)

        future.add_done_callback(done)

    def _on_progress(self, _progress: Any) -> None:
        if self._status_due:
            return
        self._status_due = True

        def render() -> None:
            self._status_due = False
            self._status.object = status_html(self.session.pending_tasks())

        self._dispatch(render)

    def _detach(self) -> None:
        _LOG.debug("Explorer %x: detached from its page", id(self))
        self._attached = False
        self.session.off_progress(self._on_progress)
        with self._gate:
            self._queue.clear()  # results held for a page that never loaded

    # ------------------------------------------------------------------ layout
    def _build(self, concepts: Any, concept_names: Any) -> None:
        s = self.session
        self.grid = DatasetViewer(
            s.images, labels=s.labels, predictions=s.predictions, class_names=s.class_names, masks=s.masks,
            concepts=concepts, concept_names=concept_names, confidences=s.confidences, names=s.names, columns=8,
            thumb_size=64, max_items=16, detail_size=128, title="Images",
        )  # fmt: skip
        self.grid.param.watch(lambda e: setattr(self, "selected", int(e.new)), ["selected"])
        self._status = LiveHTML(object=status_html([]), stylesheets=[CSS], margin=(4, 5), sizing_mode="stretch_width",
                                css_classes=["wb-ex-status-pane"])  # fmt: skip
        self._banner = ActionHTML(object=banner_html(None, 0, 0), stylesheets=[CSS], margin=(4, 5),
                                  sizing_mode="stretch_width", css_classes=["wb-ex-banner-pane"])  # fmt: skip
        self._banner.on_action(lambda action, _v: self.clear_filter() if action == "clear" else None)
        self._where = pn.Column(margin=0, sizing_mode="stretch_width", css_classes=["wb-ex-where"])
        self._what = pn.Column(margin=0, sizing_mode="stretch_width", css_classes=["wb-ex-what"])
        self._atoms = ActionHTML(object="", stylesheets=[CSS], margin=(5, 5), sizing_mode="stretch_width",
                                 css_classes=["wb-ex-atoms-pane"])  # fmt: skip
        self._atoms.on_action(
            lambda action, v: self._on_atom_click(int(v)) if action == "atom" and v.isdigit() else None
        )
        self._browser = pn.Column(margin=0, sizing_mode="stretch_width", css_classes=["wb-ex-browser"])
        self._featviz = LiveHTML(object="", stylesheets=[CSS], margin=(5, 5), sizing_mode="stretch_width",
                                 css_classes=["wb-ex-featviz-pane"])  # fmt: skip
        methods = ", ".join(s.methods)
        head = LiveHTML(object=(f'<div class="wb-sae wb-ex-header"><span class="wb-title">{self.title}</span><span class='
                                f'"wb-muted">{s.n} images \u00b7 layer {s.layer} \u00b7 methods {methods} \u00b7 pick an'
                                " image: every view follows; pick a concept or an atom: the images filter</span></div>"),
                        stylesheets=[CSS], margin=(5, 5), sizing_mode="stretch_width")  # fmt: skip

        def section(title: str, hint: str, kind: str, *body: Any, **kw: Any) -> pn.Column:
            heading = LiveHTML(object=section_html(title, hint, kind), stylesheets=[CSS], margin=(5, 5),
                               sizing_mode="stretch_width")  # fmt: skip
            return pn.Column(heading, *body, margin=(0, 5), css_classes=[f"wb-ex-{kind}-section"], **kw)

        images = section("Images", "click one; a concept or an atom picked below filters them", "images", self.grid,
                         sizing_mode="stretch_width")  # fmt: skip
        where = section("Where does it look? Is it right?", "attribution maps of the selected image, their deletion /"
                        " insertion curves and MuFidelity", "where", self._where, sizing_mode="stretch_width")  # fmt: skip
        what = section("What does it see?", "CRAFT concepts of the predicted class; click a concept to filter the images",
                       "what", self._what, sizing_mode="stretch_width")  # fmt: skip
        atoms = section("Which atoms fire?", "a sparse dictionary of the layer; click an atom to filter the images",
                        "atoms", self._atoms, self._browser, sizing_mode="stretch_width")  # fmt: skip
        looks = section("What do they look like?", "feature visualizations (MACO)", "featviz", self._featviz,
                        sizing_mode="stretch_width")  # fmt: skip
        self._layout = pn.Column(
            head, self._status, self._banner, images, where, what, looks, atoms,
            sizing_mode="stretch_width", css_classes=["wb-explorer"],
        )  # fmt: skip

    # ------------------------------------------------------------------ selection: every view follows
    def _on_selected(self, *_events: Any) -> None:
        i, s = self.selected, self.session
        if self.grid.selected != i:
            self.grid.select(i)
        if (
            self.filter is not None and self.grid.subset is None
        ):  # selecting a hidden image cleared the grid's filter
            self.filter = None
        self.attribution_viewer, self.metrics_board, self._where_index = None, None, None
        waiting = message_html(f"computing the maps of image #{i}\u2026", "where", i)
        self._where.objects = [LiveHTML(object=waiting, stylesheets=[CSS], margin=(5, 5))]
        self._request(s.attributions(i), self._show_attribution, i, "where")
        self._request(s.fidelities(i), self._show_fidelity, i, "where")
        c = int(s.predictions[i])
        if c in self._concepts:
            self._show_concepts(self._concepts[c], i)
        else:
            text = message_html(f"fitting the CRAFT concepts of {s.class_names[c]}\u2026", "what", i)
            self._what.objects = [LiveHTML(object=text, stylesheets=[CSS], margin=(5, 5))]
            self._request(s.concepts(c), self._show_concepts, i, "what")
        self._render_atoms()
        self._render_featviz()

    def _current(self, index: int | None) -> bool:
        return index is None or index == self.selected

    def _show_error(self, kind: str, index: int | None, text: str) -> None:
        self.error = text
        if not self._current(index):
            return
        pane = LiveHTML(object=message_html(text, kind, index, error=True), stylesheets=[CSS], margin=(5, 5))
        if kind == "where":
            self._where.objects = [pane]
        elif kind == "what":
            self._what.objects = [pane]
        elif kind == "featviz":
            self._featviz.object = pane.object
        else:
            self._atoms.object = pane.object

    def _show_attribution(self, maps: dict[str, torch.Tensor], i: int) -> None:
        if not self._current(i):
            return
        s = self.session
        self.attribution_viewer = AttributionViewer(
            s.images[i : i + 1], {m: v[None] for m, v in maps.items()},
            masks=None if s.masks is None else s.masks[i : i + 1],
            labels=None if s.labels is None else s.labels[i : i + 1], predictions=s.predictions[i : i + 1],
            class_names=s.class_names, names=None if s.names is None else [s.names[i]], ids=[i], max_rows=1,
            cell_size=80, detail_size=140,
            title=f"Attribution maps of image #{i} for its prediction",
        )  # fmt: skip
        self.metrics_board, self._where_index = None, i
        self._where.objects = [self.attribution_viewer]
        fut = s.fidelities(i)
        if fut.done() and fut.exception() is None:  # cached: no second trip through the worker
            self._show_fidelity(fut.result(), i)
        elif not fut.done():  # queued again if it had failed: shown when the new result arrives
            self._request(fut, self._show_fidelity, i, "where")

    def _show_fidelity(self, scores: dict[str, Any], i: int) -> None:
        av = self.attribution_viewer
        if not self._current(i) or av is None or self._where_index != i or self.metrics_board is not None:
            _LOG.debug("Explorer %x: fidelity of image %s not shown (selected %s, viewer %s, where %s, board %s)",
                       id(self), i, self.selected, av is not None, self._where_index, self.metrics_board is not None)  # fmt: skip
            return
        _LOG.debug("Explorer %x: fidelity board of image %s shown", id(self), i)
        av.curves = {m: {"deletion": f.deletion, "insertion": f.insertion} for m, f in scores.items()}
        av.metrics = {m: {"MuFidelity": f.mufidelity} for m, f in scores.items()}
        self.metrics_board = MetricsBoard({m: f.scores() for m, f in scores.items()},
                                          title=f"Fidelity on image #{i}")  # fmt: skip
        self.metrics_board.on_select(av.select_method)
        self._where.objects = [av, self.metrics_board]

    def _show_concepts(self, concepts: Any, i: int) -> None:
        s, c = self.session, concepts.class_id
        self._concepts[c] = concepts
        if not self._current(i):
            return
        if self.gallery is None or self.gallery.class_name != s.class_names[c]:
            names = [f"{s.class_names[c]} concept {k}" for k in range(len(concepts.importances))]
            self.gallery = ConceptGallery(**concepts.gallery_arguments(), images=s.images, concept_names=names,
                                          class_name=s.class_names[c], top_k=6, page_size=2, n_top_images=4,
                                          title=f"Concepts of {s.class_names[c]} (the predicted class)")  # fmt: skip
            # every pick filters, the already selected concept's too (onlychanged=False)
            self.gallery.param.watch(
                lambda e: self._on_concept_pick(c, int(e.new)), ["selected"], onlychanged=False
            )
            self.gallery.on_select_image(
                lambda img: self.select(img) if img is not None and img != self.selected else None
            )
            self._what.objects = [self.gallery]
            self._request(
                s.featviz("concept", range(len(concepts.importances)), c), self._show_concept_featviz, None
            )
        self.gallery.select_image(i)
        self._render_featviz()

    def _show_concept_featviz(self, images: dict[int, torch.Tensor], _i: Any) -> None:
        if self.gallery is not None:
            self.gallery.featviz = images
        self._render_featviz()

    def _show_dictionary(self, dictionary: Any, _i: Any) -> None:
        s = self.session
        self._dictionary = dictionary
        self.atom_browser = AtomBrowser(dictionary.sae, dictionary.activations, s.images, layer=dictionary.layer,
                                        labels=s.predictions, class_names=s.class_names, stats=dictionary.stats,
                                        page_size=8, columns=4, top_k=4, n_quantiles=0, selected=None,
                                        title=f"SAE atoms of {dictionary.layer}")  # fmt: skip
        self.atom_browser.param.watch(lambda e: self._on_atom_pick(e.new), ["selected"], onlychanged=False)
        self._browser.objects = [self.atom_browser]
        self._render_atoms()
        self._render_featviz()

    def _render_atoms(self) -> None:
        i = self.selected
        if self._dictionary is None:
            self._atoms.object = message_html(
                f"training the sparse dictionary of {self.session.layer}\u2026", "atoms", i
            )
            return
        atoms = self.session.image_atoms(self._dictionary, i, _N_ATOMS_SHOWN)
        heatmaps = [self.atom_browser.heatmap(a, i) for a, _v in atoms]
        pick = self.filter["item"] if self.filter and self.filter["kind"] == "atom" else None
        self._atoms.object = atoms_html(self.session.images[i], i, atoms, heatmaps, pick)

    def _render_featviz(self) -> None:
        """The MACO strip of the selected image: its top concepts (of its class) and atoms, requested here."""
        s, i = self.session, self.selected
        c = int(s.predictions[i])
        concept_tiles, atom_tiles = [], []
        if c in self._concepts:
            top = [k for k, _v in s.image_concepts(self._concepts[c], i)[:_N_FEATVIZ]]
            fut = s.featviz("concept", top, c)
            done = fut.result() if fut.done() and fut.exception() is None else {}
            concept_tiles = [(k, f"{s.class_names[c]} concept {k}", done.get(k)) for k in top]
            if not fut.done():
                self._request(fut, lambda _r, _i: self._render_featviz(), i, "featviz")
        if self._dictionary is not None:
            top = [a for a, _v in s.image_atoms(self._dictionary, i, _N_FEATVIZ)]
            fut = s.featviz("atom", top)
            done = fut.result() if fut.done() and fut.exception() is None else {}
            atom_tiles = [(a, done.get(a)) for a in top]
            if done and self.atom_browser is not None and not set(done) <= set(self._atom_featviz):
                self._atom_featviz.update(done)
                self.atom_browser.featviz = dict(self._atom_featviz)
            if not fut.done():
                self._request(fut, lambda _r, _i: self._render_featviz(), i, "featviz")
        if not concept_tiles and not atom_tiles:
            self._featviz.object = message_html(
                "waiting for the concepts and atoms of this image\u2026", "featviz", i
            )
            return
        self._featviz.object = featviz_html(i, concept_tiles, atom_tiles)

    # ------------------------------------------------------------------ filters: a concept or an atom narrows the grid
    def _on_concept_pick(self, class_id: int, concept: int) -> None:
        self.filter = {"kind": "concept", "class_id": class_id, "item": concept}

    def _on_atom_pick(self, atom: int | None) -> None:
        self.filter = None if atom is None else {"kind": "atom", "item": int(atom)}

    def _on_atom_click(self, atom: int) -> None:
        if self.atom_browser is not None:
            self.atom_browser.select(atom)  # its watcher sets the filter

    def _on_filter(self, *_events: Any) -> None:
        f, s = self.filter, self.session
        if f is None:
            self.grid.subset = None
            self._banner.object = banner_html(None, 0, 0)
        else:
            if f["kind"] == "concept":
                keep = s.images_where_concept(self._concepts[f["class_id"]], f["item"], self.top)
                text = f"{s.class_names[f['class_id']]} concept {f['item']}"
            else:
                keep = s.images_where_atom(self._dictionary, f["item"], self.top)
                text = f"atom {f['item']}"
            self.grid.subset = [int(k) for k in keep]
            self._banner.object = banner_html(text, len(keep), s.n)
        if self._dictionary is not None:
            self._render_atoms()
