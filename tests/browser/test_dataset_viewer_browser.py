"""The DatasetViewer in a real browser: `panel serve` + headless Chromium (and JupyterLab, further down)."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def expected(dataset_viewer_server):
    """What the app shows for image 3: the same PlantedShapes, regenerated here."""
    from workbench.data.planted import planted_shapes

    data = planted_shapes(dataset_viewer_server["n"], seed=dataset_viewer_server["seed"])
    i = 3
    concepts = [name for name, on in zip(data.concept_names, data.concepts[i].tolist()) if on]
    return {"index": i, "label": data.class_names[int(data.labels[i])], "concepts": concepts}


def test_panel_serve_click_selects_thumbnail(page, dataset_viewer_server, screenshot_dir, expected):
    page, requests, errors = page
    t0 = time.monotonic()
    page.goto(dataset_viewer_server["url"], wait_until="domcontentloaded", timeout=120_000)

    # Playwright's CSS selectors pierce the open shadow roots Panel renders into.
    thumbs = page.locator("button.wb-thumb")
    thumbs.first.wait_for(state="visible", timeout=120_000)
    assert thumbs.count() == 32, "max_items=32 thumbnails on the first page"
    detail = page.locator(".wb-detail-info")
    detail.wait_for(state="visible", timeout=30_000)
    assert detail.get_attribute("data-index") == "0", "image 0 is selected initially"
    assert "Image #0" in detail.inner_text()

    # Every thumbnail is an accessible button named after its image.
    target = page.get_by_role("button", name=f"Image {expected['index']}:", exact=False).first
    assert target.get_attribute("data-index") == str(expected["index"])
    target.click()

    page.locator(f'.wb-detail-info[data-index="{expected["index"]}"]').wait_for(
        state="visible", timeout=30_000
    )
    text = detail.inner_text()
    assert f"Image #{expected['index']}" in text
    assert expected["label"] in text
    assert "prediction" in text
    for name in expected["concepts"]:
        group, value = name.split("=", 1)
        assert f"{group}: {value}" in text, f"concept {name} missing from the detail pane: {text!r}"
    assert page.locator('button.wb-thumb[data-index="3"]').get_attribute("aria-pressed") == "true"
    assert page.locator('button.wb-thumb[data-index="0"]').get_attribute("aria-pressed") == "false"
    assert page.locator("img.wb-detail-img").get_attribute("alt").startswith("Image 3")

    # Keyboard: the clicked thumbnail has focus; arrow keys move the selection.
    page.keyboard.press("ArrowRight")
    page.locator('.wb-detail-info[data-index="4"]').wait_for(state="visible", timeout=30_000)
    page.keyboard.press("ArrowDown")
    page.locator('.wb-detail-info[data-index="12"]').wait_for(state="visible", timeout=30_000)

    # Paging: Next shows the thumbnails 32..63.
    page.locator(".wb-next button").click()
    page.locator('button.wb-thumb[data-index="40"]').wait_for(state="visible", timeout=30_000)
    page.locator('button.wb-thumb[data-index="40"]').click()
    page.locator('.wb-detail-info[data-index="40"]').wait_for(state="visible", timeout=30_000)
    page.locator(".wb-prev button").click()
    page.locator('button.wb-thumb[data-index="3"]').wait_for(state="visible", timeout=30_000)
    page.locator('button.wb-thumb[data-index="3"]').click()
    page.locator('.wb-detail-info[data-index="3"]').wait_for(state="visible", timeout=30_000)
    elapsed = time.monotonic() - t0

    page.wait_for_timeout(300)  # let the last paint settle
    page.screenshot(path=str(screenshot_dir / "dataset_viewer.png"), full_page=True)

    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert any("/static/" in u for u in requests.urls), "resources should come from the local Panel server"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
    print(f"panel serve: page loaded, clicks, arrow keys and page turns checked in {elapsed:.1f}s")


def _run_all_cells(page) -> None:
    """Run all cells through JupyterLab's menu (Run > Run All Cells)."""
    page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-content").get_by_text("Run All Cells", exact=True).click()


def test_jupyterlab_click_selects_thumbnail(page, jupyter_lab, screenshot_dir):
    page, requests, errors = page
    t0 = time.monotonic()
    page.goto(f"{jupyter_lab['url']}/lab/tree/viewer.ipynb", wait_until="domcontentloaded", timeout=180_000)
    # Wait until the notebook is open and its kernel is idle (status bar: "Python 3 ... | Idle").
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=180_000)
    page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(state="visible", timeout=180_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # focus the notebook, so the Run menu targets it
    thumbs = page.locator(".jp-OutputArea button.wb-thumb")
    for attempt in range(2):  # a second try if the first menu click raced the notebook becoming current
        _run_all_cells(page)
        try:
            thumbs.first.wait_for(state="visible", timeout=150_000 if attempt else 90_000)
            break
        except Exception:
            if attempt:
                page.screenshot(path=str(screenshot_dir / "dataset_viewer_lab_failure.png"))
                raise
    assert thumbs.count() == 12
    detail = page.locator(".jp-OutputArea .wb-detail-info")
    page.locator('.jp-OutputArea .wb-detail-info[data-index="0"]').wait_for(state="visible", timeout=60_000)

    page.locator('.jp-OutputArea button.wb-thumb[data-index="3"]').click()  # a round trip through the kernel
    page.locator('.jp-OutputArea .wb-detail-info[data-index="3"]').wait_for(state="visible", timeout=60_000)
    assert "Image #3" in detail.inner_text()
    assert "Concepts present (5)" in detail.inner_text()
    assert page.locator('button.wb-thumb[data-index="3"]').get_attribute("aria-pressed") == "true"
    page.locator(".jp-OutputArea .wb-next button").click()
    page.locator('.jp-OutputArea button.wb-thumb[data-index="20"]').wait_for(state="visible", timeout=60_000)
    page.locator(".jp-OutputArea .wb-prev button").click()
    page.locator('.jp-OutputArea button.wb-thumb[data-index="3"]').wait_for(state="visible", timeout=60_000)
    elapsed = time.monotonic() - t0

    page.locator(".jp-OutputArea .wb-dataset-viewer").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "dataset_viewer_lab.png"))

    assert not requests.external(), f"requests left the machine: {requests.external()}"
    print(f"jupyterlab: notebook opened, run, thumbnail clicked and pages turned in {elapsed:.1f}s")
