"""The AttributionViewer's metrics panel in a real browser: `panel serve` + headless Chromium.

The app (apps/attribution_viewer_app.py) passes real deletion and insertion curves of its three
methods. Clicking a method in the metrics table highlights its curves (the others fade), for the
selected image and the mean over the images; clicking a method's column title in the grid selects
it as well, and clicking its legend entry again shows all alike. Each click is a round trip through
Python (``selected_method``).
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_click_a_method_shows_its_curves(page, attribution_viewer_server, screenshot_dir, app_module):
    page, requests, errors = page
    app = app_module("attribution_viewer_app")
    methods = [app.BLUR, app.NOISE, app.GRAD]
    t0 = time.monotonic()
    page.goto(attribution_viewer_server["url"], wait_until="domcontentloaded", timeout=120_000)

    curves = page.locator(".wb-curves")
    curves.wait_for(state="visible", timeout=120_000)
    t_loaded = time.monotonic() - t0
    assert curves.get_attribute("data-index") == "0" and curves.get_attribute("data-selected-method") == ""
    assert curves.get_attribute("data-kinds") == "deletion,insertion"
    lines = curves.locator("polyline.wb-curve")
    assert lines.count() == len(methods) * 2 * 2, "each method: deletion and insertion, image #0 and the mean"
    for kind in ("deletion", "insertion"):
        for scope in ("image", "mean"):
            fig = curves.locator(f'figure.wb-plot[data-kind="{kind}"][data-scope="{scope}"]')
            assert fig.locator("polyline").count() == len(methods)
            assert fig.locator(".wb-leg").count() == len(methods)
            assert re.search(r"AUC \d", fig.locator(".wb-legend").inner_text())
    caption = curves.locator('figure[data-kind="deletion"][data-scope="mean"] figcaption').inner_text()
    assert f"mean of {attribution_viewer_server['n']} images" in caption and "lower is better" in caption
    box = lines.first.bounding_box()  # drawn, with a size: 11 points across the plot
    assert box and box["width"] > 150
    assert len(lines.first.get_attribute("points").split()) == 11
    table = page.locator(".wb-metrics")
    heads = table.locator("thead th").all_inner_texts()
    assert "deletion AUC \u2193" in heads and "insertion AUC \u2191" in heads

    def focused(method: str) -> None:
        page.locator(f'.wb-curves[data-selected-method="{method}"]').wait_for(
            state="attached", timeout=30_000
        )

    # Click a method in the table: its 4 curves are prominent, the others faded.
    table.locator(f'td.wb-method[data-value="{app.GRAD}"]').click()
    focused(app.GRAD)
    on = curves.locator(f'polyline.wb-focus[data-method="{app.GRAD}"]')
    assert on.count() == 4
    assert {on.nth(i).get_attribute("data-scope") for i in range(4)} == {"image", "mean"}
    assert curves.locator("polyline.wb-faded").count() == 8
    width = on.first.evaluate("p => getComputedStyle(p).strokeWidth")
    faded = curves.locator("polyline.wb-faded").first.evaluate(
        "p => Number(getComputedStyle(p).strokeOpacity)"
    )
    assert width == "3px" and faded < 0.3, (width, faded)
    assert curves.locator("polygon.wb-band").count() == 2, "mean \u00b1 standard error band, per kind"
    assert table.locator(f'td.wb-method.wb-focus[data-value="{app.GRAD}"]').count() == 1

    # Click a method's column title in the grid: it becomes the selected method.
    grid = page.locator(".wb-attr-grid")
    grid.locator(f'.wb-head .wb-col-title[data-method="{app.NOISE}"]').click()
    focused(app.NOISE)
    page.locator(f'.wb-attr-grid[data-focus="{app.NOISE}"]').wait_for(state="attached", timeout=30_000)
    assert "wb-focus" in grid.locator(f'.wb-head .wb-col-title[data-method="{app.NOISE}"]').get_attribute(
        "class"
    )
    assert curves.locator(f'polyline.wb-focus[data-method="{app.NOISE}"]').count() == 4
    assert page.locator(".wb-attr-detail").get_attribute("data-index") == "0", (
        "a title click selects no image"
    )

    # Its legend entry, clicked again: all methods alike.
    curves.locator(
        f'figure[data-kind="insertion"][data-scope="image"] .wb-leg[data-value="{app.NOISE}"]'
    ).click()
    focused("")
    assert curves.locator("polyline.wb-faded").count() == 0

    # The curves follow the selected image; the highlight stays.
    table.locator(f'tr[data-method="{app.BLUR}"] td').nth(1).click()  # any cell of its row
    focused(app.BLUR)
    page.locator(f'.wb-attr-grid .wb-row.wb-item[data-index="{2}"]').click()
    page.locator(f'.wb-curves[data-index="2"][data-selected-method="{app.BLUR}"]').wait_for(
        state="attached", timeout=30_000
    )
    assert (
        "image #2"
        in curves.locator('figure[data-kind="deletion"][data-scope="image"] figcaption').inner_text()
    )
    elapsed = time.monotonic() - t0

    table.locator(f'td.wb-method[data-value="{app.GRAD}"]').click()
    focused(app.GRAD)
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "attribution_viewer_metrics.png"), full_page=True)
    page.locator(".wb-detail").screenshot(path=str(screenshot_dir / "attribution_viewer_metrics_panel.png"))

    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
    print(
        f"panel serve: curves shown in {t_loaded:.1f}s; clicks on table, titles and legend checked in {elapsed:.1f}s"
    )
