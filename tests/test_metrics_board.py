"""MetricsBoard, Python side: statistics, best per column with directions, sorting, selection, export.

The browser side (clicks on headers and rows through `panel serve`) is in
tests/browser/test_metrics_board_browser.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.widgets import MetricsBoard  # noqa: E402

N = 10


@pytest.fixture
def table():
    """Three methods with known means: deletion (lower is better), insertion, pointing game, one scalar."""
    base = np.linspace(-1, 1, N)  # mean 0, so each mean is the offset
    return {
        "saliency": {"deletion AUC": 0.40 + 0.1 * base, "insertion AUC": 0.50 + 0.1 * base, "pointing": 0.6},
        "sobol": {"deletion AUC": torch.tensor(0.20 + 0.2 * base), "insertion AUC": 0.70 + 0.1 * base},
        "rise": {
            "deletion AUC": 0.30 + 0.0 * base,
            "insertion AUC": (0.70 + 0.1 * base).tolist(),
            "pointing": 0.9,
        },
    }


def test_stats_mean_and_standard_error(table):
    board = MetricsBoard(table)
    assert board.methods == ["saliency", "sobol", "rise"]
    assert board.metric_names == ["deletion AUC", "insertion AUC", "pointing"] and board.n == N
    s = board.stats["sobol"]["deletion AUC"]
    values = 0.20 + 0.2 * np.linspace(-1, 1, N)
    assert s.mean == pytest.approx(0.20) and s.n == N
    assert s.sem == pytest.approx(values.std(ddof=1) / math.sqrt(N))
    assert board.stats["rise"]["deletion AUC"].sem == pytest.approx(0.0, abs=1e-12)
    scalar = board.stats["saliency"]["pointing"]
    assert scalar.mean == 0.6 and scalar.n == 1 and math.isnan(scalar.sem)
    assert "pointing" not in board.stats["sobol"], "a missing metric stays missing"
    html = board._table.object
    assert f'data-metric="deletion AUC" data-mean="{s.mean!r}"' in html
    assert f"\u00b1 {float(f'{s.sem:.3g}'):g}" in html, "mean \u00b1 standard error in the cell"
    assert '<td class="wb-missing" data-metric="pointing">\u2013</td>' in html


def test_best_per_column_respects_directions(table):
    board = MetricsBoard(table)
    assert board.lower_is_better == {"deletion AUC"}, "names with 'deletion' are lower-is-better by default"
    assert not board.higher_is_better("deletion AUC") and board.higher_is_better("pointing")
    # deletion: lowest mean wins; insertion: a tie of two highest means, both best; pointing: highest
    assert board.best == {"deletion AUC": ["sobol"], "insertion AUC": ["sobol", "rise"], "pointing": ["rise"]}
    html = board._table.object
    assert html.count('class="wb-best"') == 4
    row = html.split('<tr data-method="sobol"')[1].split("</tr>")[0]
    assert '<td class="wb-best" data-metric="deletion AUC"' in row

    flipped = MetricsBoard(table, lower_is_better=["pointing"])
    assert flipped.best["deletion AUC"] == ["saliency"], "deletion now higher-is-better"
    assert flipped.best["pointing"] == ["saliency"]
    assert MetricsBoard(table, lower_is_better="pointing").lower_is_better == {"pointing"}
    assert MetricsBoard(table, lower_is_better=()).best["deletion AUC"] == ["saliency"]
    one = MetricsBoard({"a": {"x": 1.0}, "b": {"y": 2.0}})
    assert one.best == {"x": [], "y": []}, "nothing to compare in a column with one value"


def test_sorting_by_header_clicks(table):
    board = MetricsBoard(table)
    assert board.order == ["saliency", "sobol", "rise"] and board.sort_by is None
    click = board._table._handle_msg  # what the browser sends on a header click
    click({"action": "sort", "value": "insertion AUC"})
    assert board.sort_by == "insertion AUC" and not board.ascending, "higher-is-better: best (highest) first"
    assert board.order == ["sobol", "rise", "saliency"], "ties keep the input order"
    click({"action": "sort", "value": "insertion AUC"})
    assert board.ascending and board.order == ["saliency", "sobol", "rise"]
    click({"action": "sort", "value": "deletion AUC"})
    assert board.ascending, "lower-is-better: best (lowest) first"
    assert board.order == ["sobol", "rise", "saliency"]
    click({"action": "sort", "value": "deletion AUC"})
    assert not board.ascending and board.order == ["saliency", "rise", "sobol"]
    click({"action": "sort", "value": "pointing"})
    assert board.order == ["rise", "saliency", "sobol"], "methods lacking the metric go last"
    html = board._table.object
    assert 'data-sort-by="pointing"' in html and 'data-order="rise,saliency,sobol"' in html
    assert 'aria-sort="descending"' in html and html.index('data-method="rise"') < html.index(
        'data-method="sobol"'
    )
    click({"action": "sort", "value": ""})  # the "method" header: back to the input order
    assert board.sort_by is None and board.order == ["saliency", "sobol", "rise"]

    board.sort("deletion AUC", ascending=False)
    assert board.order == ["saliency", "rise", "sobol"]
    sorted_at_start = MetricsBoard(table, sort_by="deletion AUC", ascending=True)
    assert sorted_at_start.order == ["sobol", "rise", "saliency"]


def test_selection_and_callbacks(table):
    board = MetricsBoard(table)
    seen = []
    watcher = board.on_select(seen.append)
    board._table._handle_msg({"action": "select", "value": "sobol"})  # a row click
    assert board.selected == "sobol" and seen == ["sobol"]
    assert (
        '<tr data-method="sobol" data-action="select" data-value="sobol" tabindex="0" aria-selected="true"'
        in (board._table.object)
    )
    board._table._handle_msg({"action": "select", "value": "sobol"})  # a second click unselects
    assert board.selected is None and seen == ["sobol", None]
    board.select("rise")
    assert seen[-1] == "rise" and 'data-selected="rise"' in board._table.object
    board._table._handle_msg({"action": "select", "value": "unknown"})  # ignored
    board._table._handle_msg({"nothing": 1})  # ignored
    assert board.selected == "rise"
    board.param.unwatch(watcher)
    board.select(None)
    assert seen[-1] == "rise"
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        board.select("nope")
    # param watchers work too, as for every widget
    board.param.watch(lambda e: seen.append(("param", e.new)), "selected")
    board.selected = "saliency"
    assert seen[-1] == ("param", "saliency")
    assert "MetricsBoard(methods=" in repr(board)


def test_to_frame(table):
    pd = pytest.importorskip("pandas")
    board = MetricsBoard(table)
    board.sort("deletion AUC")
    df = board.to_frame()
    assert list(df.index) == board.order == ["sobol", "rise", "saliency"]
    assert df.index.name == "method"
    assert list(df.columns.get_level_values(0).unique()) == board.metric_names
    assert df.loc["sobol", ("deletion AUC", "mean")] == pytest.approx(0.2)
    assert df.loc["sobol", ("deletion AUC", "sem")] == pytest.approx(board.stats["sobol"]["deletion AUC"].sem)
    assert df.loc["sobol", ("deletion AUC", "n")] == N
    assert np.isnan(df.loc["sobol", ("pointing", "mean")]) and df.loc["sobol", ("pointing", "n")] == 0
    assert df.attrs["lower_is_better"] == ["deletion AUC"]
    means = df.xs("mean", axis=1, level="stat")
    assert isinstance(means, pd.DataFrame) and list(means.columns) == board.metric_names


def test_validation(table):
    nan = {"a": {"x": np.array([0.1, np.nan, 0.3])}}
    cases = [
        ([1, 2], "table: expected a dict"),
        ({}, "at least one method"),
        ({"a": {}}, "at least one metric"),
        ({"": {"x": 1.0}}, "non-empty strings"),
        ({"a": 0.5}, r"table\['a'\]: expected a dict"),
        ({"a": {"x": "high"}}, r"table\['a'\]\['x'\]: expected a number"),
        ({"a": {"x": np.zeros((2, 3))}}, r"shape \(2, 3\)"),
        ({"a": {"x": []}}, r"shape \(0,\)"),
        (nan, r"table\['a'\]\['x'\]: NaN values at images \[1\]"),
        ({"a": {"x": float("inf")}}, "infinite values; drop"),
        ({"a": {"x": np.ones(4)}, "b": {"x": np.ones(5)}}, r"table\['b'\]\['x'\]: 5 values, but table\['a'\]\['x'\] has 4"),
    ]  # fmt: skip
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            MetricsBoard(bad)
    with pytest.raises(ValueError, match=r"lower_is_better: unknown metric\(s\) \['deletion'\]"):
        MetricsBoard(table, lower_is_better=["deletion"])
    with pytest.raises(ValueError, match="sort_by: unknown name"):
        MetricsBoard(table, sort_by="nope")
    with pytest.raises(ValueError, match="selected: unknown name"):
        MetricsBoard(table, selected="nope")
    board = MetricsBoard(table)
    with pytest.raises(ValueError, match="sort: unknown name"):
        board.sort("nope")
    with pytest.raises(ValueError):
        board.sort_by = "nope"  # the param itself checks too
    # escaping: names are text, never markup
    weird = MetricsBoard({"<b>x</b>": {"a&b": 1.0}})
    assert "&lt;b&gt;x&lt;/b&gt;" in weird._table.object and "a&amp;b" in weird._table.object
    assert weird.n is None and "dataset-level scores" in weird._table.object
