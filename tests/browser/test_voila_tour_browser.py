"""Voilà renders the tour (notebooks/00_tour.ipynb) as a web page, as mybinder's ``/voila/render/...`` does.

``python -m voila`` serves the tour on a free local port; opening the page makes Voilà execute the notebook
with its own defaults (``scale="ci"``, the parameters cell as committed) in a kernel that runs this
interpreter, and answer once every cell has run. The test then checks, in headless Chromium, that every
section is there, that the notebook ran to its last cell (its claims hold: it prints "every claim holds"
after asserting them), that each of the five widgets is drawn with its content (thumbnails, maps, table
rows, concept cards, atom cards), and that no resource of the widgets comes from a CDN (they are inlined
by ``pn.extension(inline=True)``). Voilà's own page template links Font Awesome's CSS on a CDN: those two
requests are allowed, and offline they fail without changing what is shown. (Voilà also loads the
@pyviz/jupyterlab_pyviz lab extension, which fails in Voilà's page with "Shared module @jupyterlab/docmanager
doesn't exist"; Panel's inline HTML output draws the widgets without it, which is what this test checks.)
Screenshots of the page and of each widget go to tests/browser/screenshots/voila_tour_*.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import ROOT, free_port, stop, write_kernelspec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOUR = ROOT / "notebooks" / "00_tour.ipynb"
SECTIONS = [
    "1. The data: PlantedShapes, whose right answers are known",
    "2. Where does it look? Attribution in the AttributionViewer",
    "3. Is it right? Fidelity in the MetricsBoard",
    "4. What does it see? The concepts of class 1 in the ConceptGallery",
    "5. What does it see, without supervision? Atoms in the AtomBrowser",
    "6. What the top concept looks like: a MACO image",
    "7. The claims",
]
# Each widget's heading (the titles the tour gives them): the text that shows it was drawn.
WIDGETS = {
    "dataset_viewer": "PlantedShapes · zoo:resnet_shape_color",
    "attribution_viewer": "Where: attribution maps of class 1",
    "metrics_board": "Is it right: fidelity and localization of class 1's maps",
    "concept_gallery": "Concepts of circle_or_red",
    "atom_browser": "Atoms of a TopK SAE at layer3",
}
# Voilà's page template (not the tour, not the widgets) links this; offline it fails harmlessly.
TEMPLATE_CSS = "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@"
WIDGET_CDNS = ("cdn.bokeh.org", "cdn.holoviz.org", "unpkg.com", "/npm/@holoviz", "/npm/@bokeh")


@pytest.fixture(scope="module")
def voila_tour(tmp_path_factory) -> Iterator[dict]:
    """``voila notebooks/00_tour.ipynb`` on a free port, its Jupyter directories temporary, the kernel this
    interpreter; yields ``{"url", "log"}``."""
    pytest.importorskip("voila", reason="voila is not installed (the ui extra)")
    base = tmp_path_factory.mktemp("voila_tour")
    env = {
        "JUPYTER_PATH": os.pathsep.join(
            [str(write_kernelspec(base / "share")), os.environ.get("JUPYTER_PATH", "")]
        ).rstrip(os.pathsep),  # fmt: skip
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    port = free_port()
    cmd = [
        sys.executable, "-m", "voila", str(TOUR.relative_to(ROOT)), "--no-browser",
        f"--port={port}", "--Voila.ip=127.0.0.1", "--VoilaConfiguration.show_tracebacks=True",
    ]  # fmt: skip
    log = base / "voila.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        # Ready when the port accepts connections: any HTTP request to the notebook would execute it.
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with code {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not listen on {port} within 120 s:\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        yield {"url": url, "log": log}
    finally:
        stop(proc)


def test_voila_renders_the_tour(page, voila_tour, screenshot_dir):
    page, requests, errors = page
    start = time.perf_counter()
    # Voilà answers when the last cell has run: the whole tour, about 1 to 3 minutes on 2 loaded cores.
    page.goto(voila_tour["url"] + "/", wait_until="load", timeout=900_000)
    page.get_by_text(WIDGETS["atom_browser"]).first.wait_for(state="visible", timeout=120_000)
    rendered = time.perf_counter() - start
    page.screenshot(path=str(screenshot_dir / "voila_tour_top.png"))

    text = page.inner_text("body")
    log = voila_tour["log"].read_text()[-3000:]
    assert "Traceback" not in text and "Error" not in text.replace("standard error", ""), (text[-3000:], log)
    for section in SECTIONS:
        assert section in text, f"section {section!r} missing from the page"
    # The last cell asserts the claims and then prints this line: the notebook ran to its end.
    assert "every claim holds on zoo:resnet_shape_color" in text, text[-2000:]

    for name, title in WIDGETS.items():
        heading = page.get_by_text(title, exact=False).first
        heading.scroll_into_view_if_needed()
        output = page.locator(".jp-OutputArea-output").filter(has=heading).last
        box = output.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150, (name, box)
        # Every widget draws pictures (thumbnails, maps, crops, atom crops) or a table of scores.
        drawn = output.evaluate(
            """el => {
                const all = [];
                const walk = root => root.querySelectorAll('*').forEach(n => {
                    all.push(n); if (n.shadowRoot) walk(n.shadowRoot); });
                walk(el);
                const images = all.filter(n => (n.tagName === 'IMG' && n.naturalWidth > 0)
                                              || (n.tagName === 'CANVAS' && n.width > 0)).length;
                const cells = all.filter(n => n.tagName === 'TD').length;
                return {images, cells};
            }"""
        )
        assert drawn["images"] >= 4 or drawn["cells"] >= 9, (name, drawn)
        output.screenshot(path=str(screenshot_dir / f"voila_tour_{name}.png"))
    maco = page.locator(".jp-Cell").filter(has_text="P(circle_or_red | MACO image").locator("img").last
    maco.scroll_into_view_if_needed()
    assert maco.evaluate("img => img.naturalWidth") > 100
    maco_cell = page.locator(".jp-Cell").filter(has_text="P(circle_or_red | MACO image")
    maco_cell.last.screenshot(path=str(screenshot_dir / "voila_tour_maco.png"))
    claims = page.locator(".jp-Cell").filter(has_text="every claim holds on")
    claims.last.screenshot(path=str(screenshot_dir / "voila_tour_claims.png"))

    external = requests.external()
    from_widgets = [u for u in external if any(c in u for c in WIDGET_CDNS)]
    assert not from_widgets, f"widget resources requested from a CDN: {from_widgets}"
    others = [u for u in external if not u.startswith(TEMPLATE_CSS)]
    assert not others, f"unexpected external requests: {others}"
    print(
        f"Voila rendered the tour in {rendered:.0f} s; template requests left offline: {sorted(set(external))}"
    )
