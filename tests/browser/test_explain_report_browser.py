"""The `workbench explain` HTML report opened offline in headless Chromium: nothing leaves the file, every
image is inline, and the report shows each part the issue asks for (overview, metrics board, sanity line,
per-class concepts with MACO images and crops, clusters, maps per image).

A small run (8 PlantedShapes images, saliency and FORGrad-filtered saliency, 2 concepts, 2 classes) is
rendered by the same code as `workbench explain` (papermill on workbench/explain/report.ipynb, then the
offline exporter of `workbench run`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import open_offline

pytestmark = [pytest.mark.browser, pytest.mark.slow]

URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']?(https?:)?//""", re.I)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    import workbench

    out = tmp_path_factory.mktemp("explain_report")
    res = workbench.explain("zoo:resnet_textures", planted=8, methods=["saliency", "forgrad_saliency"], concepts=2,
                            classes=["solid", "dots"], out=out, block_images=4, scale="tiny", progress=False)  # fmt: skip
    assert res.report.exists() and res.notebook.exists()
    return res.report


def test_explain_report_is_self_contained_and_complete(page, report, screenshot_dir):
    page, requests, errors = page
    source = report.read_text(encoding="utf-8")
    assert not URL_ATTR.search(source), URL_ATTR.search(source)  # no src/href to load from a server
    blocked = open_offline(page, report)
    assert blocked == [], f"the report asked the network for {blocked}"
    assert [u for u in requests.urls if not u.startswith(("file:", "data:"))] == [], requests.urls

    text = page.inner_text("body")
    for needle in ("Overview", "accuracy over the 8 images", "deletion AUC", "MuFidelity",
                   "saliency: depends on the weights", "forgrad_saliency:", "Strategic clusters",
                   "share of logit", "solid", "dots"):  # fmt: skip
        assert needle in text, needle
    # a document, not a notebook: code cells show their outputs only (the executed report.ipynb beside it
    # keeps the code); markdown cells keep their .jp-InputArea, which is where Lab renders prose
    assert page.locator(".jp-CodeCell").count() > 0
    assert page.locator(".jp-CodeCell .jp-InputArea, .jp-InputArea-editor").count() == 0
    assert "load_results(" not in text
    images = page.locator(".wb-x img")
    # per class: 2 MACO images + up to 2 x 3 crops + per image 1 + 2 maps; plus the curves figure
    assert images.count() >= 2 * (2 + 3) + 1
    assert all(
        src.startswith("data:image/png;base64,") for src in images.evaluate_all("els => els.map(e => e.src)")
    )
    assert images.evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 0)")
    page.locator("h3", has_text="solid").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "explain_report_class.png"), full_page=False)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshot_dir / "explain_report_top.png"), full_page=False)
    assert not [e for e in errors if "net::" in e or "Failed to load" in e], errors
