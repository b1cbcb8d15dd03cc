"""MetricsBoard: methods x metrics over a dataset, mean +- standard error, best per column, sortable.

The board receives scores; it computes none. Each cell is the mean of a method's per-image values
for one metric, with its standard error (``std(ddof=1) / sqrt(N)``), or a single number given as
is. The best mean of each column is highlighted, lower or higher depending on the metric (deletion
AUC: lower is better). Clicking a column header sorts the rows by it (best first, then toggles
ascending / descending); clicking a row selects that method: ``selected`` is a ``param`` parameter,
and :meth:`MetricsBoard.on_select` registers a callback, so a notebook can react (for instance
``board.on_select(viewer.select_method)`` to show that method's curves in an AttributionViewer).

It renders as one HTML table (:class:`~workbench.widgets.metrics_panel.ActionHTML`), built here in
Python: the state and the HTML are testable without a browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import param

from workbench.widgets.checks import float_array, method_dicts
from workbench.widgets.html import ActionHTML, asset, ensure_extension, fmt
from workbench.widgets.viewer import LayoutViewer

_CSS = asset("metrics_board.css")


@dataclass(frozen=True)
class CellStats:
    """Summary of one method's values for one metric.

    Attributes
    ----------
    mean : float
        The mean over the images (or the single value given).
    sem : float
        Standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN for a single value.
    n : int
        Number of values (1 for a single number).
    """

    mean: float
    sem: float
    n: int


def _auto_lower(metric: str) -> bool:
    return "deletion" in metric.lower()


def _check_table(table: Any) -> tuple[dict[str, dict[str, np.ndarray]], list[str], int | None]:
    """``{method: {metric: scalar or (N,)}}`` -> float64 arrays (0-d or (N,)), the metric names, N."""
    rows = method_dicts(
        table, "table", "{method: {metric: per-image values (N,) or a number}}", "{metric name: values}"
    )
    if not table:
        raise ValueError("table: expected at least one method, got an empty dict")
    out: dict[str, dict[str, np.ndarray]] = {}
    metrics: list[str] = []
    n: int | None = None
    first: str = ""
    for method, scores in rows:
        out[method] = {}
        for metric, value in scores.items():
            where = f"table[{method!r}][{metric!r}]"
            if not isinstance(metric, str) or not metric:
                raise ValueError(f"table[{method!r}]: metric names must be non-empty strings, got {metric!r}")
            arr = float_array(value, where, "a number or per-image numbers (N,)")
            if arr.ndim > 1 or arr.size == 0:
                raise ValueError(
                    f"{where}: expected a number or per-image values of shape (N,), got shape {arr.shape}"
                )
            bad = ~np.isfinite(arr)
            if bad.any():
                kind = "NaN" if np.isnan(arr).any() else "infinite"
                at = np.nonzero(np.atleast_1d(bad))[0].tolist()
                shown = ", ".join(map(str, at[:8])) + (", ..." if len(at) > 8 else "")
                where_bad = f" at images [{shown}]" if arr.ndim else ""
                raise ValueError(f"{where}: {kind} values{where_bad}; drop or impute them first")
            if arr.ndim == 1:
                if n is None:
                    n, first = arr.size, where
                elif arr.size != n:
                    raise ValueError(
                        f"{where}: {arr.size} values, but {first} has {n}: per-image values must cover the"
                        " same images (one per image)"
                    )
            out[method][metric] = arr
            if metric not in metrics:
                metrics.append(metric)
    if not metrics:
        raise ValueError("table: expected at least one metric, got none")
    return out, metrics, n


class MetricsBoard(LayoutViewer):
    """A methods x metrics table over a dataset: mean +- standard error, the best per column, sortable.

    Parameters
    ----------
    table
        ``{method: {metric: values}}``; ``values`` is (N,) per-image numbers (a tensor, array or
        list, finite; the same N everywhere) or one number (a dataset-level score, shown as is). A
        method may lack a metric (shown as "–").
    lower_is_better
        Names of the metrics where lower is better. Default (None): the metrics whose name contains
        "deletion" (deletion AUC); all others are higher-is-better.
    title
        Heading shown above the table.
    **params
        Initial values of ``sort_by``, ``ascending`` and ``selected``.

    Attributes
    ----------
    sort_by : str or None
        The metric the rows are sorted by (None: the order of ``table``).
    ascending : bool
        Sort direction.
    selected : str or None
        The selected method (a row click selects it, a second click unselects it).
    """

    sort_by = param.Selector(
        default=None, objects=[None], allow_None=True, doc="Metric the rows are sorted by."
    )
    ascending = param.Boolean(default=False, doc="Sort ascending (True) or descending (False).")
    selected = param.Selector(default=None, objects=[None], allow_None=True, doc="The selected method.")

    def __init__(
        self,
        table: Mapping[str, Mapping[str, Any]],
        lower_is_better: Collection[str] | str | None = None,
        title: str = "Metrics",
        **params: Any,
    ):
        ensure_extension()
        self._values, self.metric_names, self.n = _check_table(table)
        self.methods = list(self._values)
        if lower_is_better is None:
            lower = {m for m in self.metric_names if _auto_lower(m)}
        else:
            names = [lower_is_better] if isinstance(lower_is_better, str) else list(lower_is_better)
            unknown = [m for m in names if m not in self.metric_names]
            if unknown:
                raise ValueError(
                    f"lower_is_better: unknown metric(s) {unknown}; the metrics are {self.metric_names}"
                )
            lower = set(names)
        self.lower_is_better = frozenset(lower)
        self.title = str(title)
        self._stats = {
            method: {k: self._summarize(v) for k, v in scores.items()}
            for method, scores in self._values.items()
        }
        sort_by, selected = params.pop("sort_by", None), params.pop("selected", None)
        super().__init__(**params)
        for p, objects in ((self.param.sort_by, self.metric_names), (self.param.selected, self.methods)):
            p.objects = [None, *objects]
            p.check_on_set = True
        self.sort_by = self._check_name(sort_by, self.metric_names, "sort_by")
        self.selected = self._check_name(selected, self.methods, "selected")
        self._table = ActionHTML(
            object="", stylesheets=[_CSS], margin=(5, 5), css_classes=["wb-metrics-board"]
        )
        self._table.on_action(self._on_action)
        self._layout = self._table
        self._render()
        self.param.watch(self._render, ["sort_by", "ascending", "selected"])

    # ------------------------------------------------------------------ state
    @staticmethod
    def _summarize(arr: np.ndarray) -> CellStats:
        if arr.ndim == 0:
            return CellStats(float(arr), float("nan"), 1)
        n = arr.size
        sem = float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return CellStats(float(arr.mean()), sem, n)

    @staticmethod
    def _check_name(name: Any, names: list[str], what: str) -> str | None:
        if name is not None and name not in names:
            raise ValueError(f"{what}: unknown name {name!r}; expected one of {names} (or None)")
        return name

    @property
    def stats(self) -> dict[str, dict[str, CellStats]]:
        """``{method: {metric: CellStats(mean, sem, n)}}`` (methods without a metric lack its key)."""
        return {m: dict(s) for m, s in self._stats.items()}

    def higher_is_better(self, metric: str) -> bool:
        """Whether a higher value of ``metric`` is better."""
        self._check_name(metric, self.metric_names, "metric")
        return metric not in self.lower_is_better

    @property
    def best(self) -> dict[str, list[str]]:
        """``{metric: [best methods]}``: the best mean of each column (ties: all of them), by the
        metric's direction; empty for a column with fewer than two values."""
        out: dict[str, list[str]] = {}
        for k in self.metric_names:
            means = {m: s[k].mean for m, s in self._stats.items() if k in s}
            if len(means) < 2:
                out[k] = []
                continue
            top = (max if self.higher_is_better(k) else min)(means.values())
            out[k] = [m for m, v in means.items() if math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-15)]
        return out

    @property
    def order(self) -> list[str]:
        """The methods in the order the table shows them (methods without the sorted metric last)."""
        if self.sort_by is None:
            return list(self.methods)
        k = self.sort_by
        have = [m for m in self.methods if k in self._stats[m]]
        missing = [m for m in self.methods if k not in self._stats[m]]
        have.sort(key=lambda m: self._stats[m][k].mean, reverse=not self.ascending)  # stable: ties keep order
        return have + missing

    def sort(self, metric: str | None, ascending: bool | None = None) -> None:
        """Sort the rows by ``metric`` (None: the input order).

        With ``ascending=None``, a new metric sorts best first (ascending when lower is better) and
        the current one toggles the direction: what clicking its header does.
        """
        self._check_name(metric, self.metric_names, "sort")
        if ascending is None:
            if metric is not None and metric == self.sort_by:
                ascending = not self.ascending
            else:
                ascending = metric is not None and not self.higher_is_better(metric)
        self.param.update(sort_by=metric, ascending=bool(ascending))

    def select(self, method: str | None) -> None:
        """Select ``method`` (None: none); :meth:`on_select` callbacks are called with it."""
        self.selected = self._check_name(method, self.methods, "select")

    def on_select(self, callback: Callable[[str | None], Any]) -> param.parameterized.Watcher:
        """Call ``callback(method or None)`` whenever the selection changes (a row click or :meth:`select`).

        Returns the ``param`` watcher (``board.param.unwatch(watcher)`` removes it).
        """
        return self.param.watch(lambda event: callback(event.new), ["selected"])

    def to_frame(self):
        """The board as a pandas DataFrame: rows in the shown order, columns ``(metric, "mean" | "sem" | "n")``.

        ``df.attrs["lower_is_better"]`` lists the lower-is-better metrics. Raises ImportError without pandas.
        """
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - pandas is a dependency of the test environment
            raise ImportError("MetricsBoard.to_frame needs pandas: pip install pandas") from err
        columns = pd.MultiIndex.from_product(
            [self.metric_names, ["mean", "sem", "n"]], names=["metric", "stat"]
        )
        rows = []
        for m in self.order:
            row = []
            for k in self.metric_names:
                s = self._stats[m].get(k)
                row += [np.nan, np.nan, 0] if s is None else [s.mean, s.sem, s.n]
            rows.append(row)
        df = pd.DataFrame(rows, index=pd.Index(self.order, name="method"), columns=columns)
        for k in self.metric_names:
            df[(k, "n")] = df[(k, "n")].astype(int)
        df.attrs["lower_is_better"] = sorted(self.lower_is_better)
        return df

    # ------------------------------------------------------------------ rendering
    def _on_action(self, action: str, value: str) -> None:
        if action == "sort":
            self.sort(value or None)
        elif action == "select" and value in self.methods:
            self.select(None if value == self.selected else value)

    def _html(self) -> str:
        esc = html.escape
        best = self.best
        order = self.order
        arrows = {True: "\u25b2", False: "\u25bc"}
        head = [
            '<th class="wb-method" data-action="sort" data-value="" role="button" tabindex="0"'
            ' title="click to restore the original order">method</th>'
        ]
        for k in self.metric_names:
            on = k == self.sort_by
            hib = self.higher_is_better(k)
            direction = "\u2191" if hib else "\u2193"
            sort = ("ascending" if self.ascending else "descending") if on else "none"
            head.append(
                f'<th class="wb-sortable{" wb-sorted" if on else ""}" data-action="sort" data-value="{esc(k)}"'
                f' data-metric="{esc(k)}" role="button" tabindex="0" aria-sort="{sort}"'
                f' title="{"higher" if hib else "lower"} is better \u00b7 click to sort">{esc(k)}'
                f'<span class="wb-dir">{direction}</span>'
                f'<span class="wb-arrow">{arrows[self.ascending] if on else ""}</span></th>'
            )
        body = []
        for m in order:
            sel = m == self.selected
            selected = ' class="wb-selected"' if sel else ""
            cells = [f'<td class="wb-method">{esc(m)}</td>']
            for k in self.metric_names:
                s = self._stats[m].get(k)
                if s is None:
                    cells.append(f'<td class="wb-missing" data-metric="{esc(k)}">\u2013</td>')
                    continue
                cls = ' class="wb-best"' if m in best[k] else ""
                se = f'<span class="wb-se">\u00b1 {fmt(s.sem)}</span>' if math.isfinite(s.sem) else ""
                tip = f"mean \u00b1 standard error over {s.n} images" if s.n > 1 else "one value"
                cells.append(
                    f'<td{cls} data-metric="{esc(k)}" data-mean="{s.mean!r}" title="{tip}">{fmt(s.mean)}{se}</td>'
                )
            body.append(
                f'<tr data-method="{esc(m)}" data-action="select" data-value="{esc(m)}" tabindex="0"'
                f' aria-selected="{"true" if sel else "false"}"{selected}>'
                f"{''.join(cells)}</tr>"
            )
        n = f"{self.n} images" if self.n is not None else "dataset-level scores"
        summary = f"{len(self.methods)} methods \u00b7 {len(self.metric_names)} metrics \u00b7 {n}"
        note = (
            "Mean \u00b1 standard error over the images; \u2605 the best per column (\u2191 higher is better,"
            " \u2193 lower is better). Click a header to sort, a row to select a method."
        )
        return (
            f'<div class="wb-board" data-sort-by="{esc(self.sort_by or "")}"'
            f' data-ascending="{str(self.ascending).lower()}" data-selected="{esc(self.selected or "")}"'
            f' data-order="{esc(",".join(order))}">'
            f'<div class="wb-head"><span class="wb-title">{esc(self.title)}</span>'
            f'<span class="wb-summary">{esc(summary)}</span></div>'
            f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f'<div class="wb-note">{note}</div></div>'
        )

    def _render(self, *_events: Any) -> None:
        self._table.object = self._html()

    def __repr__(self) -> str:
        return (
            f"MetricsBoard(methods={self.methods}, metrics={self.metric_names}, n={self.n},"
            f" sort_by={self.sort_by!r}, ascending={self.ascending}, selected={self.selected!r})"
        )
