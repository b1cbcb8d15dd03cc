"""The HTML side of the widgets: Panel's resources (loaded once, inline), the live HTML component, the
JavaScript and CSS assets that ship with the package, and small HTML fragments (images, histograms).

Resources are always inline (``pn.extension(inline=True)``): the widgets render offline, in
JupyterLab, under ``panel serve`` and in an exported HTML file, and nothing is fetched from a CDN.
The browser code of every component (``*.js``) and the stylesheets (``*.css``) live in
``workbench/widgets/assets/`` (package data) and are read with :func:`asset`.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import param
from panel.custom import JSComponent

_EXTENSION_LOADED = False


@functools.cache
def asset(name: str) -> str:
    """The text of ``workbench/widgets/assets/<name>`` (a ``.js`` or ``.css`` file shipped with the package).

    Read with :mod:`importlib.resources`, so it works from a source tree, an installed wheel or a zip.
    """
    path = resources.files("workbench.widgets").joinpath("assets", name)
    if not path.is_file():
        raise FileNotFoundError(f"widget asset {name!r} is missing from workbench/widgets/assets")
    return path.read_text(encoding="utf-8")


def ensure_extension(force: bool = False) -> None:
    """Load Panel's (and HoloViews') JavaScript inline, once per process.

    ``workbench.widgets`` calls this on import, so users never need ``pn.extension()`` themselves.
    In a notebook the resources are published as the output of the cell that imports the widgets
    (several MB, hence only once). Call it with ``force=True`` after reloading the browser page
    of a running kernel, which loses the JavaScript the kernel published before.

    Widget modules never call ``pn.extension()`` or ``hv.extension()`` themselves (the latter loads
    from a CDN unless told otherwise); HoloViews is imported here first, so its resources are
    inlined by the same call.
    """
    global _EXTENSION_LOADED
    if _EXTENSION_LOADED and not force:
        return
    import holoviews  # noqa: F401  (imported first so pn.extension loads its resources inline too)
    import panel as pn

    pn.extension(inline=True)
    _EXTENSION_LOADED = True


class LiveHTML(JSComponent):
    """An HTML fragment whose ``object`` can change while it is displayed.

    Use it instead of ``pn.pane.HTML`` for content that updates. In a notebook, Panel inlines the
    stylesheets of a pane when it is first displayed but sends their CDN URLs again with every
    later update of the pane (Panel 1.9), so an updated ``pn.pane.HTML`` makes the browser fetch
    CSS from cdn.holoviz.org. A component like this one only sends the changed ``object``.
    The HTML is inserted as is: escape any text that does not come from the widget itself.
    """

    object = param.String(default="", doc="The HTML to show.")

    _esm = asset("live_html.js")


class ActionHTML(JSComponent):
    """An HTML fragment (like :class:`LiveHTML`) whose clicks come back to Python.

    A click (or Enter / Space) on an element with ``data-action="<name>"`` and ``data-value="<v>"``,
    or on a table row ``<tr data-method="<m>">`` (action "method", value ``m``), sends
    ``{"action": name, "value": v}`` to Python, where the callbacks registered with
    :meth:`on_action` receive it. The HTML is inserted as is: escape text that does not come from
    the widget itself.
    """

    object = param.String(default="", doc="The HTML to show.")

    _esm = asset("action_html.js")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._action_callbacks: list[Callable[[str, str], None]] = []

    def on_action(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(action, value)`` on every click of an element with a ``data-action``."""
        self._action_callbacks.append(callback)

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, Mapping) or "action" not in data:
            return
        action, value = str(data["action"]), str(data.get("value", ""))
        for callback in list(self._action_callbacks):
            callback(action, value)


def widget_kwargs(widget_type: type, **kwargs):
    """Panel widget keywords across versions: ``label``/``color``/``variant`` (Panel >= 1.8)
    fall back to ``name``/``button_type``/``button_style`` where the widget lacks the new names."""
    old = {"label": "name", "color": "button_type", "variant": "button_style"}
    return {k if k in widget_type.param else old.get(k, k): v for k, v in kwargs.items()}


def img_tag(uri: str, alt: str, width: int | None = None, css_class: str = "", pixelated: bool = True) -> str:
    """An ``<img>`` element for a data URI; the alt text names the image for screen readers and tests."""
    style = "image-rendering: pixelated;" if pixelated else ""
    w = f' width="{int(width)}"' if width else ""
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{w}{cls} style="{style} display:block;">'


def fmt(v: float) -> str:
    """Numbers as the browser shows them: 3 significant digits, exponent outside [1e-3, 1e4)."""
    if not math.isfinite(v):
        return "\u2013" if math.isnan(v) else str(v)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{float(f'{v:.3g}'):g}"
    return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+").replace("e-", "e\u2212")


def svg_histogram(
    counts: Sequence[float], lo: float, hi: float, width: int = 300, height: int = 110, label: str = "",
    color: str = "#1565c0",
) -> str:  # fmt: skip
    """An inline SVG bar chart of ``counts`` over equal bins of [lo, hi], with the axis ends and max count."""
    c = np.asarray(counts, np.float64)
    pl, pr, pt, pb = 34, 8, 6, 30
    iw, ih = width - pl - pr, height - pt - pb
    top = c.max() if c.size and c.max() > 0 else 1.0
    bw = iw / max(1, c.size)
    bars = "".join(
        f'<rect x="{pl + k * bw + 0.5:.1f}" y="{pt + ih - v / top * ih:.1f}" width="{max(0.5, bw - 1):.1f}"'
        f' height="{v / top * ih:.1f}" fill="{color}"><title>{fmt(lo + k * (hi - lo) / c.size)}'
        f"\u2013{fmt(lo + (k + 1) * (hi - lo) / c.size)}: {int(v)}</title></rect>"
        for k, v in enumerate(c)
    )
    return (
        f'<svg class="wb-hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{html.escape(label or "histogram")}">'
        f'<line x1="{pl}" y1="{pt + ih}" x2="{pl + iw}" y2="{pt + ih}" stroke="#9aa0a6"/>'
        f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ih}" stroke="#9aa0a6"/>{bars}'
        f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end">{int(top)}</text>'
        f'<text x="{pl - 4}" y="{pt + ih}" text-anchor="end">0</text>'
        f'<text x="{pl}" y="{pt + ih + 13}" text-anchor="start">{fmt(lo)}</text>'
        f'<text x="{pl + iw}" y="{pt + ih + 13}" text-anchor="end">{fmt(hi)}</text>'
        f'<text x="{pl + iw / 2}" y="{pt + ih + 26}" text-anchor="middle">{html.escape(label)}</text></svg>'
    )


def image_captions(
    index: int,
    label: str | None = None,
    prediction: str | None = None,
    correct: bool | None = None,
    confidence: float | None = None,
    name: str | None = None,
) -> dict[str, str]:
    """The caption lines and accessible name of one image, as both viewers show them.

    Returns ``{"caption", "sub", "status", "alt"}``: ``caption`` is the image's name (``#index``
    without one) and its label, ``sub`` the prediction ("\u2192 cat 0.93"), ``status`` "ok", "bad" or
    "" (``correct`` unknown), ``alt`` the accessible name ("Image 3 (chelsea): label cat, prediction
    dog (mistake)").
    """
    caption = (f"#{index}" if name is None else name) + (f" {label}" if label is not None else "")
    alt = f"Image {index}" + (f" ({name})" if name is not None else "")
    alt += f": label {label}" if label is not None else ""
    sub = ""
    if prediction is not None:
        conf = "" if confidence is None else f" {confidence:.2f}"
        sub = ("\u2192 " if label is not None else "pred ") + prediction + conf
        alt += f"{',' if label is not None else ':'} prediction {prediction}"
        alt += " (mistake)" if correct is False else ""
    status = {True: "ok", False: "bad", None: ""}[correct]
    return {"caption": caption, "sub": sub, "status": status, "alt": alt}


def header_html(title: str, summary: str, hint: str) -> str:
    """The heading line of a viewer: its title, a summary of the data and a hint of what to click."""
    esc = html.escape
    return (
        f'<div class="wb-header"><span class="wb-title">{esc(title)}</span>'
        f'<span class="wb-summary">{esc(summary)}</span><span class="wb-hint"> \u00b7 {esc(hint)}</span></div>'
    )


def prediction_html(prediction: str, confidence: float | None, correct: bool | None) -> str:
    """A prediction (escaped) with its confidence and a mark: "cat (0.93) \u2713" or "dog (0.51) \u2717 mistake"."""
    conf = "" if confidence is None else f" ({confidence:.2f})"
    return html.escape(prediction) + conf + {True: " \u2713", False: " \u2717 mistake", None: ""}[correct]
