"""The FeatureVizCanvas in a real browser, on the real core: `panel serve` + headless Chromium, and JupyterLab.

panel serve (tests/browser/apps/featviz_canvas_app.py, zoo:resnet_textures): picking a channel target
updates the heading; Run shows live previews that change as the steps go by (the optimization runs in a
thread while the page stays responsive); Stop ends it early; the side-by-side mode runs MACO, Fourier and
pixel to completion and shows each with its final objective; the alpha overlay draws over a checkerboard;
Export writes a PNG that decodes to the image's size. JupyterLab: the same canvas in a notebook; while it
runs, another cell executes (the kernel is not blocked) and sees it running; Stop stops it.
Screenshots: tests/browser/screenshots/featviz_canvas.png (the end), featviz_canvas_running.png (a live preview)
and featviz_canvas_lab.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

APPS = Path(__file__).resolve().parent / "apps"


def _wait(page, selector: str, timeout: int = 60_000) -> None:
    page.locator(selector).first.wait_for(state="attached", timeout=timeout)


def _wait_step(tile, at_least: int, timeout: float = 120.0) -> int:
    """Poll a tile's ``data-step`` until it reaches ``at_least``; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = tile.get_attribute("data-step")
        if step is not None and int(step) >= at_least:
            return int(step)
        time.sleep(0.2)
    raise AssertionError(f"the preview did not reach step {at_least} within {timeout:.0f}s (at {step})")


def test_panel_serve_run_preview_stop_compare_export(page, featviz_canvas_server, screenshot_dir, tmp_path):
    page, requests, errors = page
    t0 = time.monotonic()
    page.goto(featviz_canvas_server["url"], wait_until="domcontentloaded", timeout=120_000)
    _wait(page, '.wb-fv-status[data-state="idle"]', 120_000)
    assert page.locator(".wb-fv-head").inner_text().count("class 1 (stripes)") == 1

    # A channel target: the layer menu appears, the heading follows.
    page.locator(".wb-fv-target select").select_option("channel")
    _wait(page, '.wb-fv-head[data-target="channel"]')
    page.locator(".wb-fv-layer select").select_option("layer3")
    index = page.locator(".wb-fv-index input")
    index.fill("5")
    index.press("Enter")
    _wait(page, '.wb-fv-head[data-index="5"]')
    assert "channel 5 of layer3" in page.locator(".wb-fv-head").inner_text()

    # Run: live previews, each a new image; then Stop.
    page.locator(".wb-fv-run button").click()
    tile = page.locator('.wb-fv-tile[data-param="maco"]')
    _wait(page, '.wb-fv-tile[data-param="maco"][data-state="running"]')
    first = _wait_step(tile, 4)
    src_first = tile.locator("img").get_attribute("src")
    later = _wait_step(tile, first + 8)
    assert tile.locator("img").get_attribute("src") != src_first, "the preview image did not change"
    assert page.locator('.wb-fv-status[data-state="running"]').count() == 1
    page.screenshot(path=str(screenshot_dir / "featviz_canvas_running.png"))
    page.locator(".wb-fv-stop button").click()
    _wait(page, '.wb-fv-status[data-state="stopped"]')
    # the status line and the tile are two patches from the server: the tile may follow a moment later
    _wait(page, '.wb-fv-tile[data-param="maco"][data-state="stopped"]')
    stopped_at = int(page.locator(".wb-fv-status").get_attribute("data-step"))
    assert later <= stopped_at < 100_000

    # Side by side, 16 steps each, to completion; then the alpha overlay.
    page.locator(".wb-fv-compare input").check()
    steps = page.locator(".wb-fv-steps input")
    steps.fill("16")
    steps.press("Enter")
    page.wait_for_timeout(300)
    page.locator(".wb-fv-run button").click()
    _wait(page, '.wb-fv-status[data-state="done"]', 180_000)
    tiles = page.locator(".wb-fv-tile")
    assert [tiles.nth(k).get_attribute("data-param") for k in range(3)] == ["maco", "fourier", "pixel"]
    assert page.locator('.wb-fv-tile[data-state="done"][data-step="16"]').count() == 3
    for k in range(3):
        assert "final objective" in tiles.nth(k).inner_text()
    page.locator(".wb-fv-overlay button", has_text="alpha").click()
    _wait(page, '.wb-fv-tiles[data-overlay="alpha"]')
    assert page.locator(".wb-fv-frame.wb-fv-checker").count() == 3

    # Export the shown image (MACO's, with its transparency as alpha).
    target = tmp_path / "canvas.png"
    path = page.locator(".wb-fv-path input")
    path.fill(str(target))
    path.press("Enter")
    page.wait_for_timeout(300)
    page.locator(".wb-fv-export button").click()
    _wait(page, ".wb-fv-message[data-path]")
    from PIL import Image

    with Image.open(target) as im:
        assert im.size == (64, 64) and im.mode == "RGBA"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    elapsed = time.monotonic() - t0

    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    shot = screenshot_dir / "featviz_canvas.png"
    page.screenshot(path=str(shot), full_page=True)
    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
    print(f"panel serve: stopped at step {stopped_at}; target, run, stop, compare, overlay and export in"
          f" {elapsed:.1f}s; screenshot {shot}")  # fmt: skip


def test_jupyterlab_run_does_not_block_the_kernel_and_stops(page, lab_notebook, screenshot_dir):
    cells = [
        "import sys\n"
        f"sys.path.insert(0, {str(APPS)!r})\n"
        "import torch\n"
        "from featviz_canvas_app import build\n"
        "\n"
        "torch.set_num_threads(1)\n"
        "canvas = build(steps=100_000, preview_every=4)\n"
        "canvas",
        "print(f'kernel free: running={canvas.running}, step>0={canvas.step > 0}')",
    ]
    url = lab_notebook("featviz_canvas.ipynb", cells)
    page, requests, _errors = page
    t0 = time.monotonic()
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=180_000)
    page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(state="visible", timeout=180_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # focus the notebook, so the Run menu targets it
    status = page.locator('.jp-OutputArea .wb-fv-status[data-state="idle"]')
    for attempt in range(2):  # a second try if the first menu click raced the notebook becoming current
        page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-content").get_by_text("Run All Cells", exact=True).click()
        try:
            status.wait_for(state="visible", timeout=150_000 if attempt else 90_000)
            break
        except Exception:
            if attempt:
                page.screenshot(path=str(screenshot_dir / "featviz_canvas_lab_failure.png"))
                raise
    page.get_by_text("kernel free: running=False").wait_for(state="visible", timeout=60_000)

    page.locator(".jp-OutputArea .wb-fv-run button").click()  # returns at once: the run is in a thread
    tile = page.locator('.jp-OutputArea .wb-fv-tile[data-param="maco"]')
    first = _wait_step(tile, 4)
    src_first = tile.locator("img").get_attribute("src")
    _wait_step(tile, first + 8)
    assert tile.locator("img").get_attribute("src") != src_first, "the preview image did not change"
    # The kernel answers another cell while the optimization runs.
    page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    page.get_by_text("kernel free: running=True, step>0=True").wait_for(state="visible", timeout=60_000)
    page.locator(".jp-OutputArea .wb-fv-stop button").click()
    page.locator('.jp-OutputArea .wb-fv-status[data-state="stopped"]').wait_for(
        state="attached", timeout=60_000
    )
    assert tile.get_attribute("data-state") == "stopped"
    elapsed = time.monotonic() - t0

    page.locator(".jp-OutputArea .wb-featviz-canvas").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    shot = screenshot_dir / "featviz_canvas_lab.png"
    page.screenshot(path=str(shot))
    assert not requests.external(), f"requests left the machine: {requests.external()}"
    print(f"jupyterlab: run, live preview, a cell while running, stop in {elapsed:.1f}s; screenshot {shot}")
