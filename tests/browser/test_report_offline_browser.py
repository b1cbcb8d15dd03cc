"""`workbench run`'s HTML report opened offline in headless Chromium: nothing leaves the file, and the
equations are typeset (MathML), not shown as raw LaTeX.

The report is that of a small notebook holding the markdown cells of notebook 10 (Sobol; 45 math
expressions, display and inline, with fractions, \\mathbb, \\operatorname, \\tfrac, \\big) and a cell
that draws a matplotlib figure, executed by the same `run_notebook` that `workbench run` calls.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import open_offline

from workbench.cli.main import run_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "notebooks" / "10_sobol_attribution.ipynb"
RAW_LATEX = re.compile(r"\$[^$\n]+\$|\\(frac|operatorname|mathbb|tfrac|big|times|sum)\b")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, int]:
    """(HTML report path, number of math expressions in its markdown)."""
    tmp = tmp_path_factory.mktemp("report")
    source = nbformat.read(str(SOURCE), as_version=4)
    markdown = [c for c in source.cells if c.cell_type == "markdown"]
    plot = nbformat.v4.new_code_cell(
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "%matplotlib inline\nplt.plot([0, 1, 4, 9]); plt.title('a figure, inlined as a PNG'); plt.show()"
    )
    nb = nbformat.v4.new_notebook(cells=[*markdown, plot])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp / "offline_report.ipynb"
    nbformat.write(nb, str(path))
    _, html = run_notebook(path, {}, tmp / "reports", progress=False)
    from workbench.cli.report import _math_to_placeholders

    n_math = sum(len(_math_to_placeholders(c.source)[1]) for c in markdown)
    return html, n_math


def test_report_is_offline_and_typesets_math(page, report, screenshot_dir):
    page, requests, errors = page
    html, n_math = report
    blocked = open_offline(page, html)

    assert blocked == [], f"the report asked the network for {blocked}"
    assert [u for u in requests.urls if not u.startswith(("file:", "data:"))] == [], requests.urls

    text = page.inner_text("body")
    raw = sorted({m.group(0) for m in RAW_LATEX.finditer(text)})
    assert not raw, f"raw LaTeX visible: {raw[:10]}"
    assert "Look at the Variance" in text

    # Every expression became MathML, and Chromium lays it out as math: the displayed formula with a
    # fraction is taller than a line of text (plain inline text would be one line high).
    assert page.locator("math").count() == n_math >= 40
    fraction = page.locator('math[display="block"]').filter(has=page.locator("mfrac")).first
    fraction.scroll_into_view_if_needed()
    box = fraction.bounding_box()
    line = page.locator(".jp-RenderedMarkdown p").first.evaluate(
        "p => parseFloat(getComputedStyle(p).lineHeight)"
    )
    assert box is not None and box["height"] > 1.5 * line, (box, line)

    figure = page.locator(".jp-OutputArea-output img").first
    assert figure.get_attribute("src").startswith("data:image/png;base64,")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 0")

    page.screenshot(path=str(screenshot_dir / "report_offline_math.png"), full_page=False)
    assert not [e for e in errors if "net::" in e or "Failed to load" in e], errors
