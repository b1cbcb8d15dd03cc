"""The metrics panel of the AttributionViewer: a table per method and deletion / insertion curves.

The viewer receives the scores and the curves (it computes neither): ``metrics={method: {metric:
value}}`` (one number, or one per image) and ``curves={method: {kind: curves}}``, with ``kind``
usually "deletion" and "insertion" and the curves a
:class:`~workbench.metrics.causal_fidelity.CausalFidelity` (or ``(fractions, curve[, auc])``).
The panel is one HTML fragment, rendered here in Python (so it is testable without a browser) and
drawn by :class:`~workbench.widgets.html.ActionHTML`: the curves are inline SVG polylines, one small plot per kind for the
selected image and one for the mean over the images. Clicking a method (its row, its legend entry or
its curve) sends an action back to Python, which highlights that method's curves.

:class:`~workbench.widgets.html.ActionHTML` is also what :class:`~workbench.widgets.metrics_board.MetricsBoard` draws with.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.widgets.checks import float_array, method_dicts
from workbench.widgets.html import asset, fmt

#: Colours of the methods (d3's category10), by position in the viewer's methods.
METHOD_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
#: Curve kinds whose area under the curve is better when lower (deletion: the score should fall fast).
LOWER_IS_BETTER = frozenset({"deletion"})
_KIND_ORDER = ("deletion", "insertion")
_X_LABEL = {"deletion": "fraction of pixels removed", "insertion": "fraction of pixels inserted"}
_PLOT_W, _PLOT_H = 250, 150  # _PLOT_W is also the column width in assets/metrics_panel.css
#: The y axes of the curves (see :func:`curves_html`).
CURVE_AXES = ("data", "relative", "fixed")
_AXIS_NOTE = {"data": "", "relative": " \u00b7 y: score \u00f7 clean score", "fixed": ""}
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 34, 8, 8, 30

METRICS_CSS = asset("metrics_panel.css")


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Curves:
    """Validated curves of one method and one kind, as float64 NumPy arrays.

    Attributes
    ----------
    fractions : np.ndarray
        (P,) x values in [0, 1], non-decreasing: the fraction of pixels removed or inserted.
    curve : np.ndarray
        (N, P) score of each image at each fraction.
    auc : np.ndarray or None
        (N,) area under each curve as the metric computed it (``CausalFidelity.auc``, or the ``auc``
        given with the curve); None when none was given: the panel shows no AUC then, rather than
        computing one itself (the one AUC of the workbench is the metric's).
    """

    fractions: np.ndarray
    curve: np.ndarray
    auc: np.ndarray | None

    @property
    def mean(self) -> np.ndarray:
        """(P,) the mean curve over the images."""
        return self.curve.mean(0)

    @property
    def sem(self) -> np.ndarray:
        """(P,) standard error of the mean curve (zeros for a single image)."""
        n = self.curve.shape[0]
        return self.curve.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(self.curve.shape[1])


def _array(value: Any, where: str) -> np.ndarray:
    return float_array(value, where, "numbers", got=lambda v: type(v).__name__)


def _nonfinite(arr: np.ndarray, where: str, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.nonzero(bad.reshape(len(arr), -1).any(1) if arr.ndim > 1 else bad)[0].tolist()
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
        raise ValueError(f"{where}: {kind} values in the {what} [{shown}]")


def _check_one(value: Any, where: str, n: int) -> Curves:
    auc = None
    if all(hasattr(value, a) for a in ("fractions", "curve")):  # CausalFidelity, or alike
        fractions, curve, auc = value.fractions, value.curve, getattr(value, "auc", None)
    elif isinstance(value, Mapping):
        missing = [k for k in ("fractions", "curve") if k not in value]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; expected {{'fractions', 'curve'[, 'auc']}}")
        fractions, curve, auc = value["fractions"], value["curve"], value.get("auc")
    elif isinstance(value, tuple | list) and len(value) in (2, 3):
        fractions, curve = value[0], value[1]
        auc = value[2] if len(value) == 3 else None
    else:
        raise ValueError(
            f"{where}: expected a CausalFidelity (deletion / insertion result), a tuple (fractions, curve"
            f"[, auc]) or a dict with those keys, got {type(value).__name__}"
        )
    f = _array(fractions, f"{where} fractions")
    c = _array(curve, f"{where} curve")
    if f.ndim != 1 or f.size < 2:
        raise ValueError(f"{where}: fractions must be 1-D with at least 2 points, got shape {f.shape}")
    _nonfinite(f, where, "fractions at points")
    if f[0] < 0 or f[-1] > 1 or (np.diff(f) < 0).any():
        raise ValueError(
            f"{where}: fractions must be non-decreasing values in [0, 1], got {np.round(f, 4).tolist()}"
        )
    if c.ndim != 2:
        hint = " (one image? add a batch dimension with curve[None])" if c.ndim == 1 else ""
        raise ValueError(f"{where}: expected curve of shape ({n}, {f.size}), got {c.shape}{hint}")
    if c.shape[0] != n:
        raise ValueError(f"{where}: expected {n} curves (one per image), got curve of shape {c.shape}")
    if c.shape[1] != f.size:
        raise ValueError(
            f"{where}: mismatched lengths: each curve has {c.shape[1]} points but fractions has {f.size}"
        )
    _nonfinite(c, where, "curves of images")
    a = None
    if auc is not None:
        a = _array(auc, f"{where} auc")
        if a.shape != (n,):
            raise ValueError(f"{where}: expected auc of shape ({n},) (one per image), got {a.shape}")
        _nonfinite(a, where, "auc of images")
    return Curves(fractions=f, curve=c, auc=a)


def check_curves(curves: Any, methods: Sequence[str], n: int) -> dict[str, dict[str, Curves]]:
    """Validate ``{method: {kind: curves}}`` (see :class:`~workbench.widgets.AttributionViewer`):
    known methods, ``(N, P)`` finite curves matching their ``(P,)`` fractions in [0, 1]."""
    if curves is None:
        return {}
    out: dict[str, dict[str, Curves]] = {}
    outer = "{method: {'deletion': CausalFidelity or (fractions, curve), ...}}"
    for method, kinds in method_dicts(
        curves, "curves", outer, "{'deletion': ..., 'insertion': ...}", methods
    ):
        out[method] = {}
        for kind, value in kinds.items():
            if not isinstance(kind, str) or not kind:
                raise ValueError(f"curves[{method!r}]: curve kinds must be non-empty strings, got {kind!r}")
            out[method][kind] = _check_one(value, f"curves[{method!r}][{kind!r}]", n)
    return out


def check_metrics(metrics: Any, methods: Sequence[str], n: int) -> dict[str, dict[str, Any]]:
    """``{method: {metric: float or (N,) per-image values}}`` -> the same with floats / float arrays."""
    if metrics is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for method, scores in method_dicts(
        metrics, "metrics", "{method: {metric: value}}", "{metric name: value}", methods
    ):
        out[method] = {}
        for metric, value in scores.items():
            where = f"metrics[{method!r}][{metric!r}]"
            arr = float_array(value, where, f"a number or {n} per-image numbers")
            if arr.ndim == 0:
                out[method][str(metric)] = float(arr)
            elif arr.shape == (n,):
                out[method][str(metric)] = arr
            else:
                raise ValueError(
                    f"{where}: expected a number or shape ({n},) (one per image), got shape {arr.shape}"
                )
    return out


# ---------------------------------------------------------------- rendering


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A colour per method, by position (cycling through :data:`METHOD_COLORS`)."""
    return {m: METHOD_COLORS[k % len(METHOD_COLORS)] for k, m in enumerate(methods)}


def curve_kinds(curves: Mapping[str, Mapping[str, Curves]], methods: Sequence[str]) -> list[str]:
    """The curve kinds of ``methods``: deletion, insertion, then any other, in order of appearance."""
    seen: list[str] = []
    for m in methods:
        seen += [k for k in curves.get(m, {}) if k not in seen]
    return [k for k in _KIND_ORDER if k in seen] + [k for k in seen if k not in _KIND_ORDER]


def plots_width(n_kinds: int) -> int:
    """Width in screen pixels of the curves section with ``n_kinds`` plots side by side."""
    return n_kinds * _PLOT_W + max(0, n_kinds - 1) * 16


def _direction(kind: str) -> str:
    return "lower is better" if kind in LOWER_IS_BETTER else "higher is better"


def clean_score(c: Curves, kind: str) -> np.ndarray:
    """(N,) the model's score on the unperturbed images: the first point of a deletion curve (nothing
    removed yet), the last of an insertion curve (everything inserted; with ``max_fraction < 1`` that
    point is the most inserted, not the clean image), the first point of any other kind."""
    return c.curve[:, -1] if kind == "insertion" else c.curve[:, 0]


def scaled_curves(c: Curves, kind: str, axis: str = "data") -> np.ndarray:
    """(N, P) the curves as plotted: as given, or with ``axis="relative"`` each divided by its image's
    :func:`clean_score` (a score of exactly 0 leaves that image's curve as given)."""
    if axis not in CURVE_AXES:
        raise ValueError(f"curve_axis: expected one of {list(CURVE_AXES)}, got {axis!r}")
    if axis != "relative":
        return c.curve
    clean = clean_score(c, kind)
    return c.curve / np.where(clean != 0, clean, 1.0)[:, None]


def _nice_step(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``x`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= x * (1 - 1e-9))


def _y_range(values: list[np.ndarray], axis: str = "data") -> tuple[float, float]:
    """The y range of one plot: ``"fixed"`` keeps [0, 1] for probabilities (so plots compare, but a
    low-confidence model's curves lie flat along the bottom); ``"data"`` and ``"relative"`` fit the
    plotted curves: their range widened to multiples of a round step (a quarter of the range or
    more), so the ticks read as round numbers and the curves fill at least two thirds of the plot."""
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if axis == "fixed" and lo >= 0 and hi <= 1:
        return 0.0, 1.0
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi)):  # flat (up to float noise): half its value either side
        half = 0.5 * abs(hi) or 0.5
        lo, hi = lo - half, hi + half
    step = _nice_step((hi - lo) / 4)
    return round(math.floor(lo / step + 1e-9) * step, 12), round(math.ceil(hi / step - 1e-9) * step, 12)


def _points(x: np.ndarray, y: np.ndarray, ylim: tuple[float, float]) -> list[tuple[float, float]]:
    w, h = _PLOT_W - _PAD_L - _PAD_R, _PLOT_H - _PAD_T - _PAD_B
    lo, hi = ylim
    px = _PAD_L + np.clip(x, 0, 1) * w
    py = _PAD_T + (1 - (y - lo) / (hi - lo)) * h
    return [(round(float(a), 1), round(float(b), 1)) for a, b in zip(px, py, strict=True)]


def _pts(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{a:g},{b:g}" for a, b in points)


def _auc_text(auc: float | None, prefix: str) -> str:
    return "" if auc is None else f"{prefix}{fmt(auc)}"


def _plot(
    kind: str,
    scope: str,
    caption: str,
    series: list[dict[str, Any]],
    ylim: tuple[float, float],
    focus: str | None,
    axis: str = "data",
) -> str:
    """One SVG plot: ``series`` of ``{"method", "color", "x", "y", "auc", "band"}``."""
    esc = html.escape
    w, h = _PLOT_W, _PLOT_H
    x0, x1, y0, y1 = _PAD_L, w - _PAD_R, _PAD_T, h - _PAD_B
    lo, hi = ylim
    parts = [
        f'<svg class="wb-svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"'
        f' aria-label="{esc(kind)} curves, {esc(scope)}">'
    ]
    for t in (0.0, 0.5, 1.0):  # y rules and ticks
        yv = lo + t * (hi - lo)
        py = y1 - t * (y1 - y0)
        parts.append(f'<line class="wb-rule" x1="{x0}" x2="{x1}" y1="{py:g}" y2="{py:g}"/>')
        parts.append(f'<text x="{x0 - 4}" y="{py + 3:g}" text-anchor="end">{fmt(yv)}</text>')
    for t in (0.0, 0.5, 1.0):  # x ticks
        px = x0 + t * (x1 - x0)
        parts.append(f'<text x="{px:g}" y="{y1 + 12}" text-anchor="middle">{fmt(t)}</text>')
    parts.append(f'<line class="wb-axis" x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}"/>')
    parts.append(f'<line class="wb-axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
    parts.append(
        f'<text x="{(x0 + x1) / 2:g}" y="{h - 3}" text-anchor="middle">{esc(_X_LABEL.get(kind, "fraction"))}</text>'
    )
    ordered = sorted(series, key=lambda s: s["method"] == focus)  # the focused method on top
    for s in ordered:
        on = focus is None or s["method"] == focus
        pts = _points(s["x"], s["y"], ylim)
        if s["method"] == focus:
            base = _points(s["x"][::-1], np.full(len(s["x"]), max(lo, min(hi, 0.0))), ylim)
            if s.get("band") is not None and np.any(s["band"] > 0):  # mean +- standard error
                upper = _points(s["x"], np.clip(s["y"] + s["band"], lo, hi), ylim)
                lower = _points(s["x"][::-1], np.clip(s["y"][::-1] - s["band"][::-1], lo, hi), ylim)
                parts.append(
                    f'<polygon class="wb-band" points="{_pts(upper + lower)}" fill="{s["color"]}"'
                    ' fill-opacity="0.22" stroke="none"/>'
                )
            else:
                parts.append(
                    f'<polygon class="wb-area" points="{_pts(pts + base)}" fill="{s["color"]}"'
                    ' fill-opacity="0.12" stroke="none"/>'
                )
        width, opacity = (3.0, 1.0) if s["method"] == focus else ((1.6, 0.9) if on else (1.2, 0.28))
        cls = "wb-curve" + (" wb-focus" if s["method"] == focus else ("" if on else " wb-faded"))
        m = esc(s["method"])
        parts.append(
            f'<polyline class="{cls}" data-method="{m}" data-kind="{esc(kind)}" data-scope="{esc(scope)}"'
            f' data-action="method" data-value="{m}" points="{_pts(pts)}" stroke="{s["color"]}"'
            f' stroke-width="{width:g}" stroke-opacity="{opacity:g}">'
            f"<title>{m} \u00b7 {esc(kind)}{_auc_text(s['auc'], ' AUC ')}</title></polyline>"
        )
    parts.append("</svg>")
    legend = []
    for s in series:
        state = "" if focus is None else (" wb-focus" if s["method"] == focus else " wb-faded")
        m = esc(s["method"])
        legend.append(
            f'<div class="wb-leg{state}" data-action="method" data-value="{m}" data-method="{m}" role="button"'
            f' tabindex="0" title="click to highlight {m}"><span class="wb-swatch" style="background:{s["color"]}">'
            f'</span><span class="wb-leg-name">{m}</span><span class="wb-auc">{_auc_text(s["auc"], "AUC ")}</span></div>'
        )
    return (
        f'<figure class="wb-plot" data-kind="{esc(kind)}" data-scope="{esc(scope)}" data-ylim="{lo:.6g},{hi:.6g}">'
        f'<figcaption>{caption} <span class="wb-dir">AUC: {_direction(kind)}{_AXIS_NOTE[axis]}</span></figcaption>'
        f'{"".join(parts)}<div class="wb-legend">{"".join(legend)}</div></figure>'
    )


def curves_html(
    curves: Mapping[str, Mapping[str, Curves]],
    methods: Sequence[str],
    colors: Mapping[str, str],
    index: int,
    n: int,
    focus: str | None,
    axis: str = "data",
    label: int | None = None,
) -> str:
    """The curves section: per kind, a plot for image ``index`` and one of the mean over ``n`` images (none
    when ``n`` is 1).

    ``axis`` sets the y axis of each plot: ``"data"`` fits the plotted curves, ``"relative"`` divides
    each curve by its image's clean score (:func:`clean_score`) and fits those, ``"fixed"`` is [0, 1]
    for probabilities. The AUCs shown are always the metric's, of the curves as given. ``label`` is the
    number the image goes by in the captions (default ``index``).
    """
    shown = [m for m in methods if m in curves]
    kinds = curve_kinds(curves, shown)
    if not kinds:
        return ""
    focus = focus if focus in shown else None
    esc = html.escape
    figures = []
    for scope in ("image", "mean") if n > 1 else ("image",):  # the mean of one image is that image
        for kind in kinds:
            series = []
            for m in shown:
                c = curves[m].get(kind)
                if c is None:
                    continue
                ys = scaled_curves(c, kind, axis)
                if scope == "image":
                    y, auc, band = ys[index], None if c.auc is None else float(c.auc[index]), None
                else:
                    band = ys.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(ys.shape[1])
                    y, auc = ys.mean(0), None if c.auc is None else float(c.auc.mean())
                series.append(
                    {"method": m, "color": colors[m], "x": c.fractions, "y": y, "auc": auc, "band": band}
                )
            # the plotted values (the mean's band too) set the axis of this plot
            ylim = _y_range(
                [s["y"] for s in series], axis
            )  # the curves set the axis; bands are clipped to it
            title = esc(kind.capitalize())
            caption = (
                f"{title} \u00b7 image #{index if label is None else label}"
                if scope == "image"
                else f"{title} \u00b7 mean of {n} images"
            )
            figures.append(_plot(kind, scope, caption, series, ylim, focus, axis))
    hint = "click a method (row, legend, curve or column title) to highlight it"
    if focus is not None:
        hint = f"{esc(focus)} highlighted \u00b7 click it again to show all alike"
    return (
        f'<div class="wb-curves" data-index="{index}" data-selected-method="{esc(focus or "")}" data-axis="{axis}"'
        f' data-kinds="{esc(",".join(kinds))}" style="--wb-kinds: {len(kinds)}">'
        f'<div class="wb-section">Curves<span class="wb-hint">{hint}</span></div>'
        f'<div class="wb-plots">{"".join(figures)}</div></div>'
    )


def metrics_html(
    metrics: Mapping[str, Mapping[str, Any]],
    curves: Mapping[str, Mapping[str, Curves]],
    methods: Sequence[str],
    colors: Mapping[str, str],
    index: int,
    n: int,
    focus: str | None,
    axis: str = "data",
    label: int | None = None,
) -> str:
    """The whole panel for image ``index``: the table of ``methods`` with metrics (their values, and
    each curve kind's AUC), then the curves; "" when no shown method has either. ``label`` is the
    number the image goes by in the text (default ``index``)."""
    label = index if label is None else label
    rows = [m for m in methods if m in metrics or m in curves]
    if not rows:
        return ""
    focus = focus if focus in rows else None
    names: list[str] = []
    for m in rows:
        names += [k for k in metrics.get(m, {}) if k not in names]
    kinds = curve_kinds(curves, rows)
    with_auc = [k for k in kinds if any(curves[m][k].auc is not None for m in rows if k in curves.get(m, {}))]
    auc_cols = [(k, f"{k} AUC") for k in with_auc if f"{k} AUC" not in names]
    esc = html.escape
    per_image = False

    def cell(v: Any) -> str:
        nonlocal per_image
        if v is None:
            return "<td>\u2013</td>"
        if isinstance(v, np.ndarray) and n == 1:
            return f"<td>{fmt(float(v[index]))}</td>"
        if isinstance(v, np.ndarray):
            per_image = True
            mean = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            return (
                f'<td title="image #{label}; mean over the {n} images in grey">{fmt(float(v[index]))}'
                f'<span class="wb-mean">({fmt(mean)})</span></td>'
            )
        return f"<td>{fmt(v)}</td>"

    arrow = {True: " \u2193", False: " \u2191"}
    head = '<th class="wb-method">method</th>' + "".join(f"<th>{esc(k)}</th>" for k in names)
    head += "".join(
        f'<th title="area under the {esc(k)} curve; {_direction(k)}">{esc(label)}{arrow[k in LOWER_IS_BETTER]}</th>'
        for k, label in auc_cols
    )
    body = []
    for m in rows:
        on = " wb-focus" if m == focus else ""
        cells = [
            f'<td class="wb-method{on}" data-action="method" data-value="{esc(m)}" role="button" tabindex="0"'
            f' aria-pressed="{"true" if m == focus else "false"}" title="click to highlight its curves">'
            f'<span class="wb-swatch" style="background:{colors[m]}"></span>{esc(m)}</td>'
        ]
        cells += [cell(metrics.get(m, {}).get(k)) for k in names]
        cells += [cell(curves[m][k].auc if k in curves.get(m, {}) else None) for k, _ in auc_cols]
        body.append(f'<tr data-method="{esc(m)}">{"".join(cells)}</tr>')
    note = (
        f'<div class="wb-note">Per-image metrics: image #{label}, mean over all {n} images in brackets.</div>'
        if per_image
        else ""
    )
    table = (
        f'<div class="wb-metrics" data-index="{index}" data-selected-method="{esc(focus or "")}">'
        '<div class="wb-section">Metrics</div>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}</div>"
    )
    return table + curves_html(curves, rows, colors, index, n, focus, axis, label)
