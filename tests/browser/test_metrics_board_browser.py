"""The MetricsBoard in a real browser: `panel serve` + headless Chromium.

The table shows mean \u00b1 standard error per cell with the best per column marked (checked against
the app's own scores); clicking a header sorts the rows (best first, then the other way), clicking
the "method" header restores the order, and clicking a row selects the method in Python (the app
prints the selection its ``on_select`` callback received).
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sort_highlight_and_select(page, metrics_board_server, screenshot_dir, app_module):
    import numpy as np

    from workbench.widgets import MetricsBoard

    page, requests, errors = page
    app = app_module("metrics_board_app")
    table = app.make_table(metrics_board_server["n"], metrics_board_server["seed"])
    expected = MetricsBoard(table, lower_is_better=["deletion AUC", "seconds / image"])
    methods = list(app.METHODS)
    t0 = time.monotonic()
    page.goto(metrics_board_server["url"], wait_until="domcontentloaded", timeout=120_000)

    board = page.locator(".wb-board")
    rows = board.locator("tbody tr")
    rows.first.wait_for(state="visible", timeout=120_000)
    t_loaded = time.monotonic() - t0
    assert rows.count() == len(methods)
    assert board.get_attribute("data-order") == ",".join(methods)
    headers = board.locator("thead th").all_inner_texts()
    assert [h.split("\u2191")[0].split("\u2193")[0].strip() for h in headers] == [
        "method",
        *expected.metric_names,
    ]
    assert "\u2193" in headers[1] and "\u2191" in headers[2], (
        "direction marks: deletion lower, insertion higher"
    )

    # Each cell: mean \u00b1 standard error of the app's values; the best per column marked.
    cell = board.locator('tr[data-method="RISE"] td[data-metric="insertion AUC"]')
    values = np.asarray(table["RISE"]["insertion AUC"])
    mean, sem = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    assert float(cell.get_attribute("data-mean")) == pytest.approx(mean, rel=1e-12)
    text = cell.inner_text()
    assert f"{float(f'{mean:.3g}'):g}" in text and f"\u00b1 {float(f'{sem:.3g}'):g}" in text, text
    for metric, best in expected.best.items():
        marked = board.locator(f'td.wb-best[data-metric="{metric}"]')
        got = [marked.nth(i).evaluate("td => td.parentElement.dataset.method") for i in range(marked.count())]
        assert sorted(got) == sorted(best), (metric, got, best)
    best_cell = board.locator(
        f'tr[data-method="{expected.best["deletion AUC"][0]}"] td[data-metric="deletion AUC"]'
    )
    assert best_cell.evaluate("td => getComputedStyle(td).fontWeight") == "700"
    assert (
        board.locator('tr[data-method="random"] td[data-metric="seconds / image"]').inner_text() == "\u2013"
    )

    # Sort: first click on a header sorts best first; the second reverses.
    def order() -> list[str]:
        return board.get_attribute("data-order").split(",")

    def click_header(metric: str, sort: str) -> None:
        board.locator(f'th[data-metric="{metric}"]').click()
        page.locator(f'.wb-board[data-sort-by="{metric}"][data-ascending="{sort}"]').wait_for(
            state="attached", timeout=30_000
        )

    click_header("insertion AUC", "false")
    expected.sort("insertion AUC")
    assert order() == expected.order and order()[-1] == "random"
    means = [
        float(
            board.locator(f'tr[data-method="{m}"] td[data-metric="insertion AUC"]').get_attribute("data-mean")
        )
        for m in order()
    ]
    assert means == sorted(means, reverse=True)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.method)") == order(), (
        "the DOM rows are in that order"
    )
    assert board.locator('th[data-metric="insertion AUC"]').get_attribute("aria-sort") == "descending"
    click_header("insertion AUC", "true")
    assert order() == list(reversed(expected.order))
    click_header("deletion AUC", "true")  # lower is better: ascending first
    expected.sort("deletion AUC")
    assert order() == expected.order and order()[0] == expected.best["deletion AUC"][0]
    board.locator("th.wb-method").click()
    page.locator('.wb-board[data-sort-by=""]').wait_for(state="attached", timeout=30_000)
    assert order() == methods

    # Select: a row click reaches Python (the app's on_select callback prints it); again: unselect.
    board.locator('tr[data-method="Sobol"] td').nth(2).click()
    page.locator('.wb-status[data-selected="Sobol"]').wait_for(state="attached", timeout=30_000)
    row = board.locator('tr[data-method="Sobol"]')
    assert row.get_attribute("aria-selected") == "true" and "wb-selected" in row.get_attribute("class")
    board.locator('tr[data-method="RISE"]').click()
    page.locator('.wb-status[data-selected="RISE"]').wait_for(state="attached", timeout=30_000)
    assert board.locator("tr.wb-selected").count() == 1
    board.locator('tr[data-method="RISE"]').click()
    page.locator('.wb-status[data-selected=""]').wait_for(state="attached", timeout=30_000)
    # keyboard: Enter on a focused header sorts
    board.locator('th[data-metric="energy in mask"]').focus()
    page.keyboard.press("Enter")
    page.locator('.wb-board[data-sort-by="energy in mask"]').wait_for(state="attached", timeout=30_000)
    elapsed = time.monotonic() - t0

    # The picture: sorted by insertion (best first), Sobol selected.
    click_header("insertion AUC", "false")
    board.locator('tr[data-method="Sobol"]').click()
    page.locator('.wb-status[data-selected="Sobol"]').wait_for(state="attached", timeout=30_000)
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "metrics_board.png"), full_page=True)

    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
    print(
        f"panel serve: board loaded in {t_loaded:.1f}s; sort, highlight and select checked in {elapsed:.1f}s"
    )
