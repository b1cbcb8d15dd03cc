"""The viewers' layout, titles, names and curve axes in a real browser: `panel serve` + headless Chromium.

- The AttributionViewer's detail view sits beside the grid on a wide screen (1400 and 1200 px: at 1200
  it used to wrap below the grid) and below it on a narrow one (800 px); the DatasetViewer's too.
- A method key with underscores ("blurred_object_mask") wraps between its words in the grid's column
  title, never inside one (each word is laid out on a single line).
- Rows and the detail title show the images' names (``names=``).
- On a model unsure of itself (logits / 30), the curves fill their plot on the default "data" axis, lie
  flat at the bottom of the "fixed" [0, 1] axis, and start at 1 on the "relative" axis.

Screenshots: tests/browser/screenshots/layout_*.png, curves_*.png.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _boxes(page, first: str, second: str) -> tuple[dict, dict]:
    a, b = page.locator(first).first, page.locator(second).first
    a.wait_for(state="visible", timeout=120_000)
    b.wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(300)  # let the flex layout settle after a resize
    return a.bounding_box(), b.bounding_box()


def test_attribution_viewer_layout_titles_and_names(
    page, attribution_viewer_server, screenshot_dir, app_module
):
    page, requests, errors = page
    app = app_module("attribution_viewer_app")
    page.set_viewport_size({"width": 1200, "height": 1000})
    page.goto(attribution_viewer_server["url"], wait_until="domcontentloaded", timeout=120_000)
    for width, beside in ((1200, True), (1400, True), (800, False)):
        page.set_viewport_size({"width": width, "height": 1000})
        grid, detail = _boxes(page, ".wb-attr-grid", ".wb-detail")
        if beside:
            assert detail["x"] >= grid["x"] + grid["width"] - 1, (width, grid, detail)
            assert abs(detail["y"] - grid["y"]) < 80, (width, grid, detail)  # side by side, tops aligned
            assert detail["x"] + detail["width"] <= width + 1, "the detail fits on the screen"
        else:
            assert detail["y"] >= grid["y"] + grid["height"] - 1, (width, grid, detail)
        page.screenshot(path=str(screenshot_dir / f"layout_attribution_{width}.png"), full_page=True)

    # the title of "blurred_object_mask" wraps at underscores, never inside a word
    page.set_viewport_size({"width": 1400, "height": 1000})
    title = page.locator(f'.wb-attr-grid .wb-head .wb-col-title[data-method="{app.BLUR}"]')
    layout = title.evaluate(
        """(el) => {
          const words = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => {
            const r = document.createRange(); r.selectNodeContents(n);
            const rects = [...r.getClientRects()].filter((b) => b.width > 0);
            return { text: n.textContent, lines: new Set(rects.map((b) => Math.round(b.top))).size };
          });
          return { words, wbr: el.querySelectorAll("wbr").length, height: el.getBoundingClientRect().height };
        }"""
    )
    assert [w["text"] for w in layout["words"]] == ["blurred_", "object_", "mask"] and layout["wbr"] == 2
    assert all(w["lines"] == 1 for w in layout["words"]), layout  # no word split across two lines
    assert layout["height"] > 20, "it does wrap (two lines of 15 px), between words"

    # names: under each image in the grid, and in the detail title
    first_caption = page.locator(
        '.wb-attr-grid .wb-row.wb-item[data-index="1"] .wb-image-cell .wb-caption'
    ).first
    assert first_caption.inner_text().startswith("img_001")
    page.locator('.wb-attr-grid .wb-row.wb-item[data-index="4"]').click()
    page.locator('.wb-detail-info[data-index="4"]').wait_for(timeout=30_000)
    assert "Image #4 \u00b7 img_004" in page.locator(".wb-detail-info").inner_text()
    page.locator(".wb-attr-grid .wb-head").screenshot(path=str(screenshot_dir / "layout_titles.png"))
    assert not requests.external(), requests.external()
    assert not [e for e in errors if "favicon" not in e], errors


def test_dataset_viewer_detail_beside_or_below(page, dataset_viewer_server, screenshot_dir):
    page, requests, errors = page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(dataset_viewer_server["url"], wait_until="domcontentloaded", timeout=120_000)
    for width, beside in ((1400, True), (800, False)):
        page.set_viewport_size({"width": width, "height": 900})
        grid, detail = _boxes(page, ".wb-grid", ".wb-detail-info")
        if beside:
            assert detail["x"] >= grid["x"] + grid["width"] - 1 and detail["y"] < grid["y"] + 300, (
                grid,
                detail,
            )
        else:
            assert detail["y"] >= grid["y"] + grid["height"] - 1, (grid, detail)
        page.screenshot(path=str(screenshot_dir / f"layout_dataset_{width}.png"), full_page=True)
    assert not requests.external(), requests.external()


def test_curve_axis_on_an_unsure_model(page, attribution_viewer_unsure_server, screenshot_dir):
    page, requests, errors = page
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(attribution_viewer_unsure_server["url"], wait_until="domcontentloaded", timeout=120_000)
    curves = page.locator(".wb-curves")
    curves.wait_for(state="visible", timeout=120_000)
    fig = 'figure.wb-plot[data-kind="deletion"][data-scope="image"]'

    def state() -> tuple[str, float, float, float]:
        """(axis, ymin, ymax, height of the drawn curves as a fraction of the plot)"""
        f = page.locator(f".wb-curves {fig}")
        lo, hi = (float(v) for v in f.get_attribute("data-ylim").split(","))
        ys = [float(pt.split(",")[1]) for line in f.locator("polyline").all()
              for pt in line.get_attribute("points").split()]  # fmt: skip
        return (
            page.locator(".wb-curves").get_attribute("data-axis"),
            lo,
            hi,
            (max(ys) - min(ys)) / (150 - 30 - 8),
        )

    axis, lo, hi, spread = state()
    assert axis == "data" and hi < 0.5, (lo, hi)  # every score of this model is below 0.5
    assert spread > 2 / 3, "on the data axis the curves fill the plot (round ends: two thirds or more)"
    page.locator(".wb-detail").screenshot(path=str(screenshot_dir / "curves_unsure_data.png"))

    page.locator(".wb-curve-axis").get_by_text("fixed", exact=True).click()
    page.locator('.wb-curves[data-axis="fixed"]').wait_for(timeout=30_000)
    axis, lo, hi, spread = state()
    assert (lo, hi) == (0.0, 1.0) and spread < 0.5, spread  # squeezed into the bottom of [0, 1]
    page.locator(".wb-detail").screenshot(path=str(screenshot_dir / "curves_unsure_fixed.png"))

    page.locator(".wb-curve-axis").get_by_text("relative", exact=True).click()
    page.locator('.wb-curves[data-axis="relative"]').wait_for(timeout=30_000)
    axis, lo, hi, spread = state()
    assert (
        lo < 1 <= hi
        and "score \u00f7 clean score" in page.locator(f".wb-curves {fig} figcaption").inner_text()
    )
    page.locator(".wb-detail").screenshot(path=str(screenshot_dir / "curves_unsure_relative.png"))
    assert not requests.external(), requests.external()
    assert not [e for e in errors if "favicon" not in e], errors
