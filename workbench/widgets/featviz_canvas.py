"""FeatureVizCanvas: pick a channel, an SAE atom, a concept or a class, and watch its visualization form.

The canvas receives an optimizer callable with the signature of :func:`workbench.featviz.visualize` without
the model (``functools.partial(visualize, model, progress=False)``) and the targets it may offer; it builds
the objective of the picked target with :mod:`workbench.featviz.objectives` and computes nothing else.
Run starts the optimization in a background thread, so the notebook (or the ``panel serve`` session)
stays responsive: the optimizer's per-step callback stores the step and objective value, redraws the
preview every ``preview_every`` steps, and returns the Stop button's flag (True stops the optimization).
Updates from that thread go through Panel, which applies them at once in a notebook (over the kernel's
comm) and schedules them on the session's next tick under ``panel serve`` (``doc.add_next_tick_callback``,
since the thread does not hold the document lock).

The finished image is shown plain, with its transparency map as alpha (over a checkerboard) or as a heat
overlay: the accumulated |gradient| of MACO (Fel et al., "Unlocking Feature Visualization for Deeper
Networks with MAgnitude Constrained Optimization", NeurIPS 2023). A side-by-side mode runs several
parameterizations (MACO, Fourier, pixel) one after the other and shows each result with its final
objective. Export writes the shown image (with its overlay) to a PNG, atomically.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param
import torch

from workbench._core.serialization import atomic_write_bytes
from workbench.widgets.atom_browser import CSS as _ATOM_CSS
from workbench.widgets.checks import check_sizes
from workbench.widgets.featviz_slots import check_optimizer, result_images
from workbench.widgets.featviz_targets import TARGET_KINDS, FeatureVizTargets
from workbench.widgets.html import LiveHTML, asset, ensure_extension, fmt, widget_kwargs
from workbench.widgets.images import (
    TRANSPARENCY_MODES,
    png_bytes,
    png_data_uri,
    to_rgb_uint8,
    transparency_overlay,
)
from workbench.widgets.viewer import LayoutViewer

_CSS = _ATOM_CSS + asset("featviz_canvas.css")
#: The parameterizations the canvas offers by default (see :func:`workbench.featviz.visualize`).
PARAMETERIZATIONS = ("maco", "fourier", "pixel")
_DOT = " \u00b7 "
_RESERVED = ("param", "steps", "callback")  # keywords the canvas passes to the optimizer itself


def _set_label(widget: Any, text: str) -> None:
    """A Panel widget's label, whichever name this Panel version gives it (``label`` or ``name``)."""
    setattr(widget, "label" if "label" in widget.param else "name", text)


def history_svg(values: Sequence[float], width: int = 200, height: int = 40) -> str:
    """An inline SVG line of the objective per step (the mean over the step's crops), its first and last
    values written at the ends."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return ""
    lo, hi = float(v.min()), float(v.max())
    span = (hi - lo) or 1.0
    pl, pr, pt, pb = 2, 2, 4, 12
    x = pl + np.arange(v.size) / (v.size - 1) * (width - pl - pr)
    y = pt + (1 - (v - lo) / span) * (height - pt - pb)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
    return (
        f'<svg class="wb-fv-history" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="objective per step, {fmt(v[0])} to {fmt(v[-1])}"><title>objective per step (mean over the'
        f' crops of the step)</title><polyline points="{points}"/><text x="{pl}" y="{height - 1}">step 1:'
        f' {fmt(v[0])}</text><text x="{width - pr}" y="{height - 1}" text-anchor="end">step {v.size}:'
        f" {fmt(v[-1])} (crops)</text></svg>"
    )


def _checked_result(result: Any) -> Any:
    """An optimizer's result for one objective: a ``FeatureViz`` (image, transparency, history, final)."""
    result_images(result, 1, "optimizer")  # one (3, S, S) image in [0, 1]
    missing = [a for a in ("transparency", "history", "final") if getattr(result, a, None) is None]
    if missing:
        raise ValueError(f"optimizer: its result lacks {missing}; expected a workbench.featviz.FeatureViz")
    if not hasattr(result, "stopped"):
        result.stopped = False
    return result


class FeatureVizCanvas(LayoutViewer):
    """Run a feature visualization live: pick a target, watch it form, stop it, compare, export.

    Parameters
    ----------
    optimizer
        ``optimizer(objective, param=..., steps=..., callback=..., **optimizer_kwargs) -> FeatureViz``:
        :func:`workbench.featviz.visualize` without its model, e.g.
        ``functools.partial(visualize, model, image_size=128, progress=False)``. The canvas calls it from a
        background thread with ``callback(step, images, values) -> bool`` (True: stop).
    channels
        ``{layer: number of channels}``: the layers whose channels can be visualized
        (``objectives.channel(layer, c)``). :meth:`from_model` counts them.
    sae, sae_layer
        A sparse dictionary (anything with ``dictionary`` (n_atoms, d), or the tensor) and the layer it was
        trained on: atoms are visualized with ``objectives.direction(sae_layer, D[i], cosine=True)``.
    concepts, concept_layer, concept_names
        (k, C) concept vectors (e.g. CRAFT's ``W``), their layer, and their names:
        ``objectives.direction(concept_layer, W[k])``.
    class_names
        The model's class names: classes are visualized with ``objectives.logit(c)``.
    parameterizations
        The parameterizations offered (names the optimizer accepts as ``param``).
    optimizer_kwargs
        Extra keywords for every optimizer call (``image_size``, ``seed``, ``lr``...); not ``param``,
        ``steps`` or ``callback``, which the canvas sets.
    display_size
        Side of each shown image in pixels.
    title
        Heading.
    **params
        Initial values of the parameters below.

    Attributes
    ----------
    target : str
        The kind of target: "channel", "atom", "concept" or "class" (those given).
    layer : str
        The layer of a channel target.
    index : int
        The channel, atom, concept or class.
    parameterization : str
        The parameterization of a single run (and of :attr:`result`).
    compare : bool
        Run every parameterization of :attr:`compared`, one after the other, and show them side by side.
    compared : list of str
        The parameterizations of the side-by-side mode.
    steps, preview_every : int
        Optimization steps per run; the preview (and status line) is redrawn every ``preview_every`` steps.
    overlay : str
        How the transparency map is shown: "none", "alpha" (as the image's alpha, over a checkerboard) or
        "heat" (a heatmap over the image).
    export_path : str
        Where the Export button writes the PNG.
    results : dict
        ``{parameterization: FeatureViz}`` of the last run (filled as each finishes).
    running : bool
        Whether a run is in progress.
    step, value, history
        The last step reached (1-based), its objective value, and the objective of every step so far of
        the parameterization that runs (or ran last).
    preview : torch.Tensor or None
        The last preview image (3, S, S).
    n_previews : int
        Previews drawn in the last run (one every ``preview_every`` steps).
    error : str or None
        What went wrong in the last run, if anything.

    References
    ----------
    Fel et al., Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
    Optimization (MACO), NeurIPS 2023; Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017.
    """

    target = param.Selector(default="channel", objects=list(TARGET_KINDS), doc="The kind of target.")
    layer = param.Selector(default=None, objects=[None], allow_None=True, doc="The layer of a channel.")
    index = param.Integer(default=0, bounds=(0, None), doc="The channel, atom, concept or class.")
    parameterization = param.Selector(default="maco", objects=list(PARAMETERIZATIONS), doc="Single-run parameterization.")  # fmt: skip
    compare = param.Boolean(default=False, doc="Run the compared parameterizations side by side.")
    compared = param.ListSelector(default=list(PARAMETERIZATIONS), objects=list(PARAMETERIZATIONS),
                                  doc="Parameterizations of the side-by-side mode.")  # fmt: skip
    steps = param.Integer(default=128, bounds=(1, None), doc="Optimization steps per run.")
    preview_every = param.Integer(default=8, bounds=(1, None), doc="Steps between two previews.")
    overlay = param.Selector(default="none", objects=list(TRANSPARENCY_MODES), doc="Transparency shown as.")
    export_path = param.String(default="featviz.png", doc="Where Export writes the PNG.")

    def __init__(
        self,
        optimizer: Callable[..., Any],
        *,
        channels: Mapping[str, int] | None = None,
        sae: Any = None,
        sae_layer: str | None = None,
        concepts: Any = None,
        concept_layer: str | None = None,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        parameterizations: Sequence[str] = PARAMETERIZATIONS,
        optimizer_kwargs: Mapping[str, Any] | None = None,
        display_size: int = 256,
        title: str = "Feature visualization",
        **params: Any,
    ):
        ensure_extension()
        if optimizer is None:
            raise ValueError("optimizer: expected a callable like functools.partial(workbench.featviz.visualize, model)")  # fmt: skip
        self.optimizer = check_optimizer(optimizer, "optimizer")
        self.targets = FeatureVizTargets.checked(channels, sae, sae_layer, concepts, concept_layer, concept_names,
                                                 class_names)  # fmt: skip
        names = [parameterizations] if isinstance(parameterizations, str) else list(parameterizations)
        if not names or not all(isinstance(p, str) and p for p in names) or len(set(names)) != len(names):
            raise ValueError(f"parameterizations: expected distinct names such as {list(PARAMETERIZATIONS)}, got {parameterizations!r}")  # fmt: skip
        kwargs = dict(optimizer_kwargs or {})
        if not isinstance(optimizer_kwargs or {}, Mapping) or any(k in kwargs for k in _RESERVED):
            raise ValueError(f"optimizer_kwargs: expected a dict of extra keywords other than {list(_RESERVED)}, got {optimizer_kwargs!r}")  # fmt: skip
        check_sizes(display_size=(display_size, 32, 2048))
        self.optimizer_kwargs, self.display_size, self.title = kwargs, display_size, str(title)
        self.results: dict[str, Any] = {}
        self.step, self.value, self.history = 0, None, []
        self.preview: torch.Tensor | None = None
        self.n_previews = 0
        self.error: str | None = None
        self._exception: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run: dict[str, Any] | None = None  # the last run: params, steps, label, objective name, stopped
        self._running_param: str | None = None
        # a run is in progress: set before its thread starts, cleared before the thread's last redraw
        self._active = False
        picks = ("target", "layer", "index", "parameterization", "compared")
        pick = {k: params.pop(k) for k in picks if k in params}  # checked once the choices are known
        super().__init__(**params)
        kinds = self.targets.kinds
        self.param.target.objects = kinds
        self.param.layer.objects = list(self.targets.channels) or [None]
        self.param.parameterization.objects = names
        self.param.compared.objects = names
        self.param.update(parameterization=pick.get("parameterization", "maco" if "maco" in names else names[0]),
                          compared=list(pick.get("compared", names)))  # fmt: skip
        if self.targets.channels:  # default: the last layer given
            self.layer = self.targets.check_layer(pick.get("layer", list(self.targets.channels)[-1]))
        self.select(pick.get("target", kinds[0]), pick.get("index", 0))
        self._build()
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:  # `panel serve`: a closed tab stops its run
            pn.state.on_session_destroyed(lambda _context: self.stop())

    # ------------------------------------------------------------------ construction from a model
    @classmethod
    def from_model(
        cls,
        optimizer: Callable[..., Any],
        model: Any,
        layers: Sequence[str] | str | None = None,
        sae: Any = None,
        sae_layer: str | None = None,
        concepts: Any = None,
        concept_layer: str | None = None,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        **kw: Any,
    ) -> FeatureVizCanvas:
        """The canvas of a workbench :class:`~workbench.models.Model`: its ``layers`` (default
        ``model.layers()``) with their channel counts, its class names (``model.labels``), and the given
        SAE and concepts.

        The channel counts come from one forward pass of a black image at the model's input size through
        ``model.activations`` (shapes only: (N, C, H, W) maps and (N, C) vectors have C channels, (N, T, C)
        tokens C). ``optimizer`` is usually ``functools.partial(workbench.featviz.visualize, model,
        progress=False)``; ``kw`` goes to the constructor.
        """
        if not hasattr(model, "activations") or not hasattr(model, "input_size"):
            raise ValueError(
                f"model: expected a workbench Model (load_model(...)), got {type(model).__name__}"
            )
        names = model.layers() if layers is None else [layers] if isinstance(layers, str) else list(layers)
        device = getattr(model, "device", torch.device("cpu"))
        black = torch.zeros(1, *model.input_size, device=device)
        with torch.no_grad():
            acts = model.activations(black, names)  # a KeyError naming the closest layers for an unknown one
        channels = {}
        for name, a in acts.items():
            if a.ndim not in (2, 3, 4):
                raise ValueError(f"layers: {name!r} gives outputs of shape {tuple(a.shape)}; expected maps, tokens or vectors")  # fmt: skip
            channels[name] = int(a.shape[-1] if a.ndim == 3 else a.shape[1])
        if class_names is None:
            class_names = getattr(model, "labels", None)
        return cls(optimizer, channels=channels, sae=sae, sae_layer=sae_layer, concepts=concepts,
                   concept_layer=concept_layer, concept_names=concept_names, class_names=class_names, **kw)  # fmt: skip

    # ------------------------------------------------------------------ the target
    def select(self, target: str | None = None, index: int | None = None, layer: str | None = None) -> None:
        """Pick a target: its kind (default: the current one), its index (default 0) and, for a channel,
        its layer (default: the current one). Unknown layers raise a KeyError naming the closest ones;
        an index out of range a ValueError."""
        kind = self.targets.check_kind(self.target if target is None else target)
        if kind == "channel":
            layer = self.targets.check_layer(self.layer if layer is None else layer)
        elif layer is not None:
            raise ValueError(f"layer: only channel targets take a layer; a {kind} reads {self.targets.layer_of(kind)!r}")  # fmt: skip
        index = self.targets.check_index(kind, 0 if index is None else index, layer)
        self.param.index.bounds = (0, self.targets.count(kind, layer) - 1)
        self.param.update(target=kind, index=index, **({"layer": layer} if kind == "channel" else {}))

    @property
    def target_label(self) -> str:
        """The picked target, for people ("channel 5 of layer3", "class 2 (dots)")."""
        return self.targets.label(self.target, self.index, self._target_layer())

    def _target_layer(self) -> str | None:
        return self.layer if self.target == "channel" else None

    def objective(self) -> Any:
        """The :mod:`workbench.featviz.objectives` objective of the picked target (checked)."""
        return self.targets.objective(self.target, self.index, self._target_layer())

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._active

    @property
    def result(self) -> Any:
        """The ``FeatureViz`` shown as the current image: the last run's :attr:`parameterization`, else its
        first finished parameterization (None before any)."""
        if self.parameterization in self.results:
            return self.results[self.parameterization]
        return next(iter(self.results.values()), None)

    def run(self, wait: bool = True) -> Any:
        """Visualize the picked target: one parameterization, or every one of :attr:`compared` in
        side-by-side mode, in a background thread.

        With ``wait=True`` (scripts, tests) returns :attr:`result` once done, and raises what the optimizer
        raised; ``wait=False`` (the Run button) returns None at once. A bad pick raises here, before
        anything starts; a second run while one is in progress raises a RuntimeError.
        """
        if self._active:
            raise RuntimeError("run: a visualization is already running; stop() it or wait() for it")
        if self._thread is not None:
            self._thread.join()  # the last run's thread, drawing its final state
        objective = self.objective()
        params = list(self.compared) if self.compare else [self.parameterization]
        if not params:
            raise ValueError("compared: choose at least one parameterization to run side by side")
        self._run = {"params": params, "steps": self.steps, "label": self.target_label, "name": objective.name,
                     "stopped": False}  # fmt: skip
        self.results, self.step, self.value, self.history = {}, 0, None, []
        self.preview, self.n_previews, self.error, self._exception = None, 0, None, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, args=(objective, params, self.steps),
                                        name="FeatureVizCanvas", daemon=True)  # fmt: skip
        self._running_param, self._active = params[0], True
        self._sync()
        self._thread.start()
        return self.wait() if wait else None

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish (at most ``timeout`` seconds); returns :attr:`result` and raises
        what the optimizer raised."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"wait: the visualization is still running after {timeout} s")
        if self._exception is not None:
            raise RuntimeError(f"the optimizer failed: {self.error}") from self._exception
        return self.result

    def stop(self) -> None:
        """Ask the running optimization to stop: the callback returns True at the next step (what was reached
        is kept), and the side-by-side mode runs no further parameterization."""
        self._stop.set()

    def _work(self, objective: Any, params: list[str], steps: int) -> None:
        try:
            for p in params:
                if self._stop.is_set():
                    break
                self._running_param, self.history, self.step, self.preview = p, [], 0, None
                self._sync()
                result = self.optimizer(
                    objective, param=p, steps=steps, callback=self._on_step, **self.optimizer_kwargs
                )
                self.results = {**self.results, p: _checked_result(result)}
        except Exception as err:  # noqa: BLE001 - shown in the status line, re-raised by wait()
            self._exception, self.error = err, f"{type(err).__name__}: {err}"
        finally:
            early = len(self.results) < len(params) or any(r.stopped for r in self.results.values())
            self._run["stopped"] = self._stop.is_set() and early
            self._running_param, self._active = None, False
            self._sync()

    def _on_step(self, step: int, images: torch.Tensor, values: torch.Tensor) -> bool:
        """The optimizer's callback: record the step, redraw every ``preview_every`` steps, say whether to stop."""
        self.step = int(step) + 1
        self.value = float(values.reshape(-1)[0])
        self.history.append(self.value)
        if self.step % self.preview_every == 0:
            self.preview = images[0].detach().float().cpu().clamp(0, 1)
            self.n_previews += 1
            self._render_canvas()
            self._render_status()
        return self._stop.is_set()

    # ------------------------------------------------------------------ export
    def export_png(self, path: str | Path, param: str | None = None, overlay: str | None = None) -> Path:
        """Write the image of ``param`` (default: :attr:`result`'s) to ``path`` as a PNG, at its own size.

        ``overlay`` (default :attr:`overlay`): "none" writes RGB, "alpha" RGBA with the transparency map as
        alpha, "heat" the map over the image. Written to a temporary name and renamed, so the file is never
        half-written. Returns the path.
        """
        result = self.result if param is None else self.results.get(param)
        if result is None:
            done = list(self.results) or "none yet"
            raise ValueError(f"export_png: no visualization of {param or 'any parameterization'} to export (finished: {done}); run() first")  # fmt: skip
        mode = self.overlay if overlay is None else overlay
        pixels = transparency_overlay(result.image[0], result.transparency[0], mode)
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ValueError(f"export_png: expected a path ending in .png, got {str(path)!r}")
        atomic_write_bytes(path, png_bytes(pixels))
        return path

    # ------------------------------------------------------------------ rendering
    def _header_html(self) -> str:
        esc = html.escape
        try:
            label, name = self.target_label, self.objective().name
        except (ValueError, KeyError) as err:
            label, name = f"invalid target: {err}", ""
        return (f'<div class="wb-sae wb-fv-head" data-target="{self.target}" data-index="{self.index}">'
                f'<span class="wb-title">{esc(self.title)}</span><span>{esc(label)}</span>'
                f'<span class="wb-fv-objective">{esc(name)}</span></div>')  # fmt: skip

    def _status_html(self) -> str:
        run = self._run
        if run is None:
            state, text = "idle", "pick a target and press Run"
        elif self.running:
            p = self._running_param or run["params"][0]
            value = "" if self.value is None else f"{_DOT}objective {fmt(self.value)}"
            state, text = "running", f"running {p} ({run['params'].index(p) + 1}/{len(run['params'])}){_DOT}step {self.step} / {run['steps']}{value}"  # fmt: skip
        elif self.error is not None:
            state, text = "error", f"error: {self.error}"
        else:
            finals = _DOT.join(f"{p} {fmt(float(r.final.reshape(-1)[0]))}" for p, r in self.results.items())
            state = "stopped" if run["stopped"] else "done"
            text = f"stopped at step {self.step}" if run["stopped"] else f"done{_DOT}{run['steps']} steps"
            text += f"{_DOT}final objective {finals}" if finals else ""
        about = "" if run is None else f'<span class="wb-muted">{html.escape(run["label"])}: </span>'
        return (f'<div class="wb-sae wb-fv-status" data-state="{state}" data-step="{self.step}"'
                f' data-previews="{self.n_previews}">{about}{html.escape(text)}</div>')  # fmt: skip

    def _shown_params(self) -> list[str]:
        if self._run is not None:
            return list(self._run["params"])
        return list(self.compared) if self.compare else [self.parameterization]

    def _tile(self, p: str) -> str:
        size, result = self.display_size, self.results.get(p)
        checker, history = "", ""
        if result is not None:
            mode = self.overlay
            pixels = transparency_overlay(result.image[0], result.transparency[0], mode)
            checker = " wb-fv-checker" if mode == "alpha" else ""
            state = "stopped" if result.stopped else "done"
            steps = int(result.history.shape[0])
            caption = f"final objective {fmt(float(result.final.reshape(-1)[0]))}{_DOT}{steps} steps"
            if mode != "none" and not bool((result.transparency[0] > 0).any()):
                caption += f"{_DOT}no gradient reached the image: transparency 0"
            history = history_svg(result.history[:, 0].tolist(), size)
            body = f'<img src="{png_data_uri(pixels)}" alt="{p} feature visualization ({mode} transparency)" width="{size}">'  # fmt: skip
        elif p == self._running_param and self.preview is not None:
            state, steps = "running", self.step
            caption = f"step {self.step} / {self._run['steps']}{_DOT}objective {fmt(self.value)}"
            history = history_svg(self.history, size)
            body = f'<img src="{png_data_uri(to_rgb_uint8(self.preview))}" alt="{p} preview at step {self.step}" width="{size}">'  # fmt: skip
        else:
            pending = self.running and (p == self._running_param or p not in self.results)
            state, steps = ("waiting" if pending else "empty"), 0
            caption = (
                "starting\u2026" if p == self._running_param else "waiting" if pending else "not run yet"
            )
            body = f'<div class="wb-fv-placeholder" style="width:{size}px;height:{size}px">{caption}</div>'
        return (f'<div class="wb-fv-tile" data-param="{html.escape(p)}" data-state="{state}" data-step="{steps}">'
                f'<span class="wb-fv-name">{html.escape(p)}</span><div class="wb-fv-frame{checker}">{body}</div>'
                f'<span class="wb-cap" style="max-width:{size}px">{caption}</span>{history}</div>')  # fmt: skip

    def _render_canvas(self, *_events: Any) -> None:
        tiles = "".join(self._tile(p) for p in self._shown_params())
        self._canvas.object = f'<div class="wb-sae wb-fv-tiles" data-overlay="{self.overlay}">{tiles}</div>'

    def _render_status(self, *_events: Any) -> None:
        self._status.object = self._status_html()

    def _render_header(self, *_events: Any) -> None:
        self._header.object = self._header_html()

    def _sync(self) -> None:
        """Buttons, status and canvas as a run starts, moves to the next parameterization or ends."""
        if not hasattr(self, "_canvas"):
            return
        self._run_button.disabled, self._stop_button.disabled = self._active, not self._active
        self._render_status()
        self._render_canvas()

    # ------------------------------------------------------------------ callbacks and layout
    def _on_target(self, *_events: Any) -> None:
        layer = self._target_layer()
        n = self.targets.count(self.target, layer)
        if self.param.index.bounds != (0, n - 1):
            self.param.index.bounds = (0, n - 1)
            self.index = min(self.index, n - 1)
        self._index_input.end = n - 1
        _set_label(self._index_input, f"{self.target} (0\u2013{n - 1})")
        self._layer_select.visible = self.target == "channel"
        self._render_header()

    def _on_run_click(self, *_events: Any) -> None:
        try:
            self.run(wait=False)
        except (ValueError, KeyError, RuntimeError) as err:
            self._message.object = f'<span class="wb-fv-message wb-fv-error">{html.escape(str(err))}</span>'

    def _on_export_click(self, *_events: Any) -> None:
        try:
            path = self.export_png(self.export_path)
            self._message.object = f'<span class="wb-fv-message" data-path="{html.escape(str(path))}">wrote {html.escape(str(path))}</span>'  # fmt: skip
        except (ValueError, OSError) as err:
            self._message.object = f'<span class="wb-fv-message wb-fv-error">{html.escape(str(err))}</span>'

    def _build(self) -> None:
        kw = widget_kwargs
        self._header = LiveHTML(object="", stylesheets=[_CSS], margin=(5, 5))
        self._status = LiveHTML(object="", stylesheets=[_CSS], margin=(5, 5), sizing_mode="stretch_width")
        self._canvas = LiveHTML(object="", stylesheets=[_CSS], margin=(5, 5), css_classes=["wb-fv-canvas"])
        self._message = LiveHTML(object="", stylesheets=[_CSS], margin=(5, 5))
        target = pn.widgets.Select.from_param(self.param.target, width=110, css_classes=["wb-fv-target"], **kw(pn.widgets.Select, label="target"))  # fmt: skip
        self._layer_select = pn.widgets.Select.from_param(self.param.layer, width=130, css_classes=["wb-fv-layer"], **kw(pn.widgets.Select, label="layer"))  # fmt: skip
        self._index_input = pn.widgets.IntInput.from_param(self.param.index, width=120, css_classes=["wb-fv-index"], **kw(pn.widgets.IntInput, label="index"))  # fmt: skip
        parameterization = pn.widgets.Select.from_param(self.param.parameterization, width=130, css_classes=["wb-fv-param"], **kw(pn.widgets.Select, label="parameterization"))  # fmt: skip
        steps = pn.widgets.IntInput.from_param(self.param.steps, width=90, css_classes=["wb-fv-steps"], **kw(pn.widgets.IntInput, label="steps"))  # fmt: skip
        self._run_button = pn.widgets.Button(width=80, margin=(22, 5, 5, 5), css_classes=["wb-fv-run"], **kw(pn.widgets.Button, label="\u25b6 Run", color="primary"))  # fmt: skip
        self._stop_button = pn.widgets.Button(width=80, margin=(22, 5, 5, 5), disabled=True, css_classes=["wb-fv-stop"], **kw(pn.widgets.Button, label="\u25a0 Stop", color="danger"))  # fmt: skip
        self._run_button.on_click(self._on_run_click)
        self._stop_button.on_click(lambda _e: self.stop())
        compare = pn.widgets.Checkbox.from_param(self.param.compare, margin=(12, 5, 5, 10), css_classes=["wb-fv-compare"], **kw(pn.widgets.Checkbox, label="side by side:"))  # fmt: skip
        compared = pn.widgets.CheckButtonGroup.from_param(self.param.compared, margin=(5, 5), css_classes=["wb-fv-compared"], **kw(pn.widgets.CheckButtonGroup, label="", color="light", variant="outline"))  # fmt: skip
        overlay = pn.widgets.RadioButtonGroup.from_param(self.param.overlay, margin=(5, 5, 5, 20), css_classes=["wb-fv-overlay"], **kw(pn.widgets.RadioButtonGroup, label="", color="light", variant="outline"))  # fmt: skip
        overlay_label = LiveHTML(object='<span class="wb-fv-message">transparency</span>', stylesheets=[_CSS], margin=(5, 0, 5, 20))  # fmt: skip
        path = pn.widgets.TextInput.from_param(self.param.export_path, width=200, margin=(5, 5, 5, 20), css_classes=["wb-fv-path"], **kw(pn.widgets.TextInput, label=""))  # fmt: skip
        export = pn.widgets.Button(width=110, margin=(5, 5), css_classes=["wb-fv-export"], **kw(pn.widgets.Button, label="Export PNG"))  # fmt: skip
        export.on_click(self._on_export_click)
        self._layout = pn.Column(
            self._header,
            pn.Row(target, self._layer_select, self._index_input, parameterization, steps, self._run_button,
                   self._stop_button, margin=0),
            pn.Row(compare, compared, overlay_label, overlay, path, export, self._message, margin=0),
            self._status,
            self._canvas,
            sizing_mode="stretch_width", css_classes=["wb-featviz-canvas"],
        )  # fmt: skip
        self.param.watch(self._on_target, ["target", "layer"])
        self.param.watch(self._render_header, ["index"])
        self.param.watch(self._render_canvas, ["overlay", "compare", "compared", "parameterization"])
        self._on_target()
        self._sync()

    def __repr__(self) -> str:
        state = "running" if self.running else "error" if self.error else "done" if self.results else "idle"
        return (f"FeatureVizCanvas(target={self.target_label!r}, parameterization={self.parameterization!r},"
                f" compare={self.compare}, steps={self.steps}, {state}, results={list(self.results)})")  # fmt: skip
