"""The AttributionViewer in a real browser: `panel serve` + headless Chromium.

Hover a map -> the readout shows the value under the mouse (checked against the map itself);
click a row -> the detail view shows that image with every method side by side and the mask
contour; the opacity slider and the method checkboxes round-trip through the server.
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def expected(attribution_viewer_server, app_module):
    """The model-free maps the app shows, regenerated here (same data, same seed)."""
    import torch

    from workbench.data.planted import planted_shapes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does: the same maps
    try:
        app = app_module("attribution_viewer_app")
        data = planted_shapes(attribution_viewer_server["n"], seed=attribution_viewer_server["seed"])
        maps = app.make_maps(data, model=None, seed=attribution_viewer_server["seed"])
    finally:
        torch.set_num_threads(threads)
    return {"app": app, "data": data, "maps": maps}


def test_panel_serve_hover_click_opacity(page, attribution_viewer_server, screenshot_dir, expected):
    from playwright.sync_api import expect

    page, requests, errors = page
    app = expected["app"]
    methods = [app.BLUR, app.NOISE, app.GRAD]
    n = attribution_viewer_server["n"]
    t0 = time.monotonic()
    page.goto(attribution_viewer_server["url"], wait_until="domcontentloaded", timeout=120_000)

    # Playwright's CSS selectors pierce the open shadow roots Panel renders into.
    grid = page.locator(".wb-attr-grid")
    rows = grid.locator(".wb-row.wb-item")
    rows.first.wait_for(state="visible", timeout=120_000)
    assert rows.count() == n, "all images fit on the first page"
    assert grid.get_attribute("data-methods") == ",".join(methods)
    assert grid.locator("canvas.wb-map").count() == n * len(methods)
    detail = page.locator(".wb-attr-detail")
    detail.wait_for(state="visible", timeout=30_000)
    assert detail.get_attribute("data-index") == "0"
    t_loaded = time.monotonic() - t0

    # Hover: the noise map is on an 8x8 grid; the mouse over cell (2, 5) of image 1 must read that value.
    readout = grid.locator(".wb-readout")
    stack = grid.locator(f'.wb-map-cell[data-index="1"][data-method="{app.NOISE}"] .wb-stack')
    box = stack.bounding_box()
    stack.hover(position={"x": box["width"] * 5.5 / 8, "y": box["height"] * 2.5 / 8})
    expect(readout).to_have_text(re.compile(r"= -?\d"), timeout=10_000)
    text = readout.inner_text()
    assert text.startswith(f"{app.NOISE} \u00b7 image 1 \u00b7 (") and "cell (2, 5) of 8\u00d78" in text, text
    want = float(expected["maps"][app.NOISE][1, 2, 5])
    assert float(readout.get_attribute("data-value")) == pytest.approx(want, rel=1e-6)
    assert f"= {float(f'{want:.3g}'):g}" in text, (text, want)
    tip = grid.locator(".wb-tip")
    assert tip.is_visible() and re.fullmatch(r"-?[\d.]+(e\u2212?\d+)?", tip.inner_text())

    # ... and a pixel-resolution map reads the pixel (row, col) under the mouse.
    stack = grid.locator(f'.wb-map-cell[data-index="0"][data-method="{app.BLUR}"] .wb-stack')
    box = stack.bounding_box()
    r, c = 40, 21  # image pixel; 64x64 images
    stack.hover(position={"x": box["width"] * (c + 0.5) / 64, "y": box["height"] * (r + 0.5) / 64})
    expect(readout).to_have_text(re.compile(rf"image 0 \u00b7 \({r}, {c}\) = "), timeout=10_000)
    assert float(readout.get_attribute("data-value")) == pytest.approx(
        float(expected["maps"][app.BLUR][0, r, c]), rel=1e-6
    )
    # The signed map reads a signed number too.
    grid.locator(f'.wb-map-cell[data-index="2"][data-method="{app.GRAD}"] .wb-stack').hover()
    expect(readout).to_have_text(
        re.compile(rf"^{re.escape(app.GRAD)} \u00b7 image 2 .* = -?\d"), timeout=10_000
    )

    # Click: any cell of row 3 selects image 3; the detail view shows it with all methods and contours.
    grid.locator(f'.wb-map-cell[data-index="3"][data-method="{app.NOISE}"]').click()
    page.locator('.wb-attr-detail[data-index="3"]').wait_for(state="visible", timeout=30_000)
    assert detail.get_attribute("data-methods") == ",".join(methods)
    assert detail.locator(".wb-map-cell").count() == len(methods)
    titles = detail.locator(".wb-map-cell .wb-col-title").all_inner_texts()
    assert titles == methods, titles
    assert detail.locator("img.wb-contour").count() == 1 + len(methods), "mask contour over every panel"
    assert detail.locator(".wb-ticks").count() == len(methods), "a colorbar with ticks under each map"
    info = page.locator('.wb-detail-info[data-index="3"]')
    info.wait_for(state="visible", timeout=30_000)
    assert "Image #3" in info.inner_text()
    label = expected["data"].class_names[int(expected["data"].labels[3])]
    assert label in info.inner_text()
    metrics = page.locator('.wb-metrics[data-index="3"]')
    metrics.wait_for(state="visible", timeout=30_000)
    assert metrics.locator("tbody tr").count() == len(methods)
    assert "pointing game" in metrics.inner_text()
    assert grid.locator('.wb-row.wb-item[data-index="3"]').get_attribute("aria-pressed") == "true"
    assert grid.locator('.wb-row.wb-item[data-index="0"]').get_attribute("aria-pressed") == "false"
    # hover works in the detail view as well
    detail.locator(f'.wb-map-cell[data-method="{app.GRAD}"] .wb-stack').hover()
    expect(detail.locator(".wb-readout")).to_have_text(re.compile(r"image 3 .* = -?\d"), timeout=10_000)

    # Keyboard: the clicked row has focus; ArrowDown selects the next image.
    grid.locator('.wb-row.wb-item[data-index="3"]').focus()
    page.keyboard.press("ArrowDown")
    page.locator('.wb-attr-detail[data-index="4"]').wait_for(state="visible", timeout=30_000)
    grid.locator('.wb-row.wb-item[data-index="3"] .wb-image-cell').click()
    page.locator('.wb-attr-detail[data-index="3"]').wait_for(state="visible", timeout=30_000)

    # Opacity: the slider's value goes to the server and back into every map's canvas.
    canvas = grid.locator("canvas.wb-map").first
    assert canvas.evaluate("c => getComputedStyle(c).opacity") == "0.6"
    handle = page.locator(".wb-opacity .noUi-handle")
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.locator('.wb-attr-grid:not([data-opacity="0.6"])').wait_for(state="attached", timeout=30_000)
    opacity = float(grid.get_attribute("data-opacity"))
    assert opacity == pytest.approx(0.75, abs=1e-6)
    # The attribute and the canvas style are set in separate renders: wait for the style, do not race it.
    expect(canvas).to_have_css("opacity", "0.75", timeout=30_000)
    assert float(detail.get_attribute("data-opacity")) == pytest.approx(0.75, abs=1e-6)

    # Methods: unticking one removes its column from the grid and the detail view.
    page.locator(".wb-methods").get_by_text(app.NOISE, exact=True).click()
    page.locator(f'.wb-attr-grid[data-methods="{app.BLUR},{app.GRAD}"]').wait_for(
        state="attached", timeout=30_000
    )
    page.locator(f'.wb-attr-detail[data-methods="{app.BLUR},{app.GRAD}"]').wait_for(
        state="attached", timeout=30_000
    )
    assert grid.locator("canvas.wb-map").count() == n * 2
    page.locator(".wb-methods").get_by_text(app.NOISE, exact=True).click()
    page.locator(f'.wb-attr-grid[data-methods="{",".join(methods)}"]').wait_for(
        state="attached", timeout=30_000
    )

    # Fade: the canvases get per-pixel alpha (transparent where the blurred mask is 0).
    alpha_min = "c => Math.min(...c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 === 3))"
    blur = grid.locator(f'.wb-map-cell[data-index="0"][data-method="{app.BLUR}"] canvas.wb-map')
    assert blur.evaluate(alpha_min) == 255
    page.locator(".wb-fade input[type=checkbox]").check()
    page.locator('.wb-attr-grid[data-fade="true"]').wait_for(state="attached", timeout=30_000)
    assert blur.evaluate(alpha_min) == 0
    page.locator(".wb-fade input[type=checkbox]").uncheck()
    page.locator('.wb-attr-grid[data-fade="false"]').wait_for(state="attached", timeout=30_000)
    elapsed = time.monotonic() - t0

    stack = grid.locator(f'.wb-map-cell[data-index="3"][data-method="{app.GRAD}"] .wb-stack')
    box = stack.bounding_box()
    stack.hover(position={"x": box["width"] * 0.55, "y": box["height"] * 0.45})  # a readout in the picture
    page.wait_for_timeout(300)  # let the last paint settle
    page.screenshot(path=str(screenshot_dir / "attribution_viewer.png"), full_page=True)

    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert any("/static/" in u for u in requests.urls), "resources should come from the local Panel server"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
    print(
        f"panel serve: loaded in {t_loaded:.1f}s; hover, click, keys, opacity and methods checked in {elapsed:.1f}s"
    )


LAB_CELLS = [
    "import torch\n"
    "from workbench.data.planted import planted_shapes\n"
    "from workbench.widgets import AttributionViewer\n"
    "\n"
    "torch.set_num_threads(1)\n"
    "data = planted_shapes(6, seed=0)\n"
    "g = torch.Generator().manual_seed(0)\n"
    "maps = {'mask': data.object_masks.float(), 'noise 8x8': torch.rand(6, 8, 8, generator=g),\n"
    "        'signed': torch.randn(6, 64, 64, generator=g)}\n"
    "viewer = AttributionViewer(data.images, maps, masks=data.object_masks, labels=data.labels,\n"
    "                           class_names=data.class_names, metrics={'mask': {'score': 1.0}},\n"
    "                           title='AttributionViewer in JupyterLab')\n"
    "viewer",
]


def test_jupyterlab_hover_and_click(page, lab_notebook, screenshot_dir):
    """The same widget in a notebook: updates after display must not fetch anything from a CDN."""
    url = lab_notebook("attribution.ipynb", LAB_CELLS)  # its kernel is shut down after the test
    page, requests, _errors = page
    _lab_checks(page, url, screenshot_dir)
    assert not requests.external(), f"requests left the machine: {requests.external()}"


def _lab_checks(page, url: str, screenshot_dir) -> None:
    from playwright.sync_api import expect

    t0 = time.monotonic()
    # A workspace of its own (lab_notebook's URL): the default one (the DatasetViewer's Lab test) must not reopen
    # this notebook.
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=180_000)
    page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(state="visible", timeout=180_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # focus the notebook, so the Run menu targets it
    rows = page.locator(".jp-OutputArea .wb-attr-grid .wb-row.wb-item")
    for attempt in range(2):  # a second try if the first menu click raced the notebook becoming current
        page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-content").get_by_text("Run All Cells", exact=True).click()
        try:
            rows.first.wait_for(state="visible", timeout=150_000 if attempt else 90_000)
            break
        except Exception:
            if attempt:
                page.screenshot(path=str(screenshot_dir / "attribution_viewer_lab_failure.png"))
                raise
    assert rows.count() == 6

    grid = page.locator(".jp-OutputArea .wb-attr-grid")
    grid.locator('.wb-map-cell[data-index="1"][data-method="signed"] .wb-stack').hover()
    expect(grid.locator(".wb-readout")).to_have_text(
        re.compile(r"signed \u00b7 image 1 .* = -?\d"), timeout=30_000
    )
    grid.locator('.wb-row.wb-item[data-index="3"]').click()  # a round trip through the kernel
    detail = page.locator('.jp-OutputArea .wb-attr-detail[data-index="3"]')
    detail.wait_for(state="visible", timeout=60_000)
    assert detail.locator("img.wb-contour").count() == 4
    page.locator('.jp-OutputArea .wb-detail-info[data-index="3"]').wait_for(state="visible", timeout=60_000)
    page.locator('.jp-OutputArea .wb-metrics[data-index="3"]').wait_for(state="visible", timeout=60_000)
    page.locator(".jp-OutputArea .wb-opacity .noUi-handle").focus()
    page.keyboard.press("ArrowLeft")
    page.locator('.jp-OutputArea .wb-attr-grid[data-opacity="0.55"]').wait_for(
        state="attached", timeout=60_000
    )
    elapsed = time.monotonic() - t0

    page.locator(".jp-OutputArea .wb-attribution-viewer").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "attribution_viewer_lab.png"))
    print(f"jupyterlab: notebook run, hover, click and opacity checked in {elapsed:.1f}s")
