"""The AtomBrowser and the BlindspotComparer in a real browser: `panel serve` + headless Chromium.

AtomBrowser: the grid shows a page of atom cards; clicking a card selects the atom in Python (the
app prints what its ``on_select`` callback received) and shows its examples, histogram, classes,
neighbours and candidates; Next pages; search by id jumps to the atom's page, search by class ranks
the atoms; a neighbour chip selects that atom; the dead-atoms menu sorts them last or hides them. BlindspotComparer: one point per atom; clicking a point
or a ranked row selects the atom and shows paired examples of both sets; the opacity slider redraws
the heatmaps. Screenshots: tests/browser/screenshots/atom_browser.png, blindspot_comparer.png.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _selected(page, atom: int) -> None:
    page.locator(f'.wb-status[data-selected="{atom}"]').wait_for(state="attached", timeout=60_000)


def test_atom_browser_page_select_search(page, atom_browser_server, screenshot_dir):
    page, requests, errors = page
    page.goto(atom_browser_server["url"], wait_until="domcontentloaded", timeout=300_000)
    grid = page.locator(".wb-atom-grid")
    cards = grid.locator(".wb-card")
    cards.first.wait_for(state="visible", timeout=300_000)
    assert cards.count() == 12 and grid.get_attribute("data-atoms") == ",".join(map(str, range(12)))
    _selected(page, 0)  # atom 0 is selected at start

    # Click a card: Python selects it, the detail shows its examples, histogram and classes.
    cards.nth(3).click()
    _selected(page, 3)
    detail = page.locator('.wb-atom-detail[data-atom="3"]')
    detail.wait_for(state="attached", timeout=30_000)
    assert page.locator('.wb-card[data-atom="3"]').get_attribute("aria-pressed") == "true"
    assert detail.locator("svg.wb-hist rect").count() > 0
    assert detail.locator("tr.wb-class").count() == 5
    assert "importance" in detail.inner_text() and "stability" in detail.inner_text()
    assert detail.locator("[data-candidate]").count() > 0, "RA-SAE: the candidates that build the atom"

    # Paging, then search by id (jumps to its page) and by class (ranks the atoms).
    page.locator(".wb-next button").click()
    page.locator('.wb-atom-grid[data-page="1"]').wait_for(state="attached", timeout=30_000)
    assert grid.get_attribute("data-atoms") == ",".join(map(str, range(12, 24)))
    search = page.locator(".wb-search input")
    search.fill("#30")
    search.press("Enter")
    _selected(page, 30)
    page.locator('.wb-atom-grid[data-page="2"]').wait_for(state="attached", timeout=30_000)
    search.fill("star")
    search.press("Enter")
    page.locator('.wb-atom-grid[data-rank="star"][data-page="0"]').wait_for(state="attached", timeout=30_000)
    search.fill("nonsense")
    search.press("Enter")
    page.locator(".wb-search-error").wait_for(state="attached", timeout=30_000)

    # A nearest-atom chip selects that atom.
    chip = page.locator('.wb-atom-detail .wb-chip[data-kind="nearest"]').first
    target = int(chip.get_attribute("data-value"))
    chip.click()
    _selected(page, target)
    page.locator(f'.wb-atom-detail[data-atom="{target}"]').wait_for(state="attached", timeout=30_000)

    # Dead atoms: sorted last, then hidden (no "dead" card on any page).
    page.locator(".wb-dead-atoms select").select_option("last")
    page.locator('.wb-atom-grid[data-dead="last"]').wait_for(state="attached", timeout=30_000)
    page.locator(".wb-dead-atoms select").select_option("hide")
    page.locator('.wb-atom-grid[data-dead="hide"]').wait_for(state="attached", timeout=30_000)
    for _ in range(4):  # every page of the 40 atoms
        assert grid.locator(".wb-dead").count() == 0
        page.locator(".wb-next button").click()
        page.wait_for_timeout(200)
    page.locator(".wb-dead-atoms select").select_option("show")
    page.locator('.wb-atom-grid[data-dead="show"]').wait_for(state="attached", timeout=30_000)

    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "atom_browser.png"), full_page=True)
    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"


def test_blindspot_comparer_scatter_and_pairs(page, blindspot_server, screenshot_dir):
    page, requests, errors = page
    page.goto(blindspot_server["url"], wait_until="domcontentloaded", timeout=300_000)
    root = page.locator(".wb-blindspots")
    points = root.locator("svg.wb-scatter circle")
    points.first.wait_for(state="attached", timeout=300_000)
    assert points.count() == 48
    sup_rows = root.locator(".wb-table-suppressed tr.wb-rank")
    exa_rows = root.locator(".wb-table-exaggerated tr.wb-rank")
    assert sup_rows.count() > 0 and exa_rows.count() > 0

    # A ranked row selects its atom; paired examples of both sets appear.
    atom = int(sup_rows.first.get_attribute("data-atom"))
    sup_rows.first.click()
    _selected(page, atom)
    page.locator(f'.wb-blindspots[data-selected="{atom}"]').wait_for(state="attached", timeout=30_000)
    assert root.locator('.wb-ex[data-set="a"]').count() > 0, "a suppressed atom fires in the reference set"

    # A point of the scatter selects its atom.
    atom = int(exa_rows.first.get_attribute("data-atom"))
    root.locator(f'circle[data-atom="{atom}"]').click()
    _selected(page, atom)
    page.locator(f'.wb-blindspots[data-selected="{atom}"]').wait_for(state="attached", timeout=30_000)
    assert root.locator(f'circle.wb-sel[data-atom="{atom}"]').count() == 1
    assert root.locator('.wb-ex[data-set="b"]').count() > 0, "an exaggerated atom fires in the compared set"

    # The opacity slider redraws the heatmaps (keyboard on the slider handle: Home = opacity 0).
    img = root.locator('.wb-ex[data-set="b"] img').first
    before = img.get_attribute("src")
    handle = page.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("Home")
    for _ in range(60):
        if img.get_attribute("src") != before:
            break
        page.wait_for_timeout(500)
    assert img.get_attribute("src") != before, "the heatmap did not change with the opacity"
    for _ in range(7):  # back to 0.7 (steps of 0.1)
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(1000)

    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshot_dir / "blindspot_comparer.png"), full_page=True)
    assert not requests.external(), f"requests left the machine: {requests.external()}"
    assert not [e for e in errors if "favicon" not in e], f"browser console errors: {errors}"
