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


def test_panel_serve_click_selects_thumbnail(dataset_viewer_server, page, screenshot_dir, expected):
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

    page.locator(f'.wb-detail-info[data-index="{expected["index"]}"]').wait_for(state="visible", timeout=30_000)
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
    print(f"panel serve: page ready, 4 clicks and 2 page turns in {elapsed:.1f}s")
