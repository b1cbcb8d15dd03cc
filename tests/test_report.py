"""Offline HTML reports (workbench.cli.report): math to MathML, no script from a CDN.

The browser test (tests/browser/test_report_offline_browser.py) opens a report with the network
blocked; these are the cheap checks of the same promises, without a kernel or a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from workbench.cli.report import _math_to_placeholders, latex_to_mathml, notebook_to_html

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_math_spans_are_found_and_code_and_prices_are_left_alone():
    text, rendered = _math_to_placeholders(
        "costs $5 and $6; `$x$` stays code; $a_i$ and \\$ money; $$x^2$$ and \\(y\\) and \\[z\\]\n"
        "```python\nprint('$HOME $PATH')\n```\n"
    )
    assert len(rendered) == 4, rendered  # a_i, x^2, y, z
    assert "costs $5 and $6" in text and "`$x$`" in text and "\\$ money" in text
    assert "print('$HOME $PATH')" in text
    assert [m.split(">")[0] for m in rendered] == [
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"',
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"',
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"',
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"',
    ]
    assert "<msub><mi>a</mi><mi>i</mi></msub>" in rendered[0]


def test_unrenderable_math_shows_as_code_not_dollars():
    with pytest.raises(ValueError, match="cannot render"):
        latex_to_mathml(r"\frac{1}{")
    text, rendered = _math_to_placeholders(r"broken $\frac{1}{$ here")
    assert rendered == ['<code class="wb-math-raw">\\frac{1}{</code>'] and "$" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_equation_renders_to_mathml(path):
    nb = nbformat.read(str(path), as_version=4)
    failed, leftover = [], []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text, rendered = _math_to_placeholders(cell.source)
        failed += [m for m in rendered if "wb-math-raw" in m]
        # outside code spans no "$" is left (an escaped "\$" is a literal dollar)
        prose = re.sub(r"```.*?```|`[^`\n]+`", "", text, flags=re.S).replace("\\$", "")
        leftover += [line for line in prose.splitlines() if "$" in line]
    assert not failed and not leftover, (failed, leftover)


def test_exported_page_loads_nothing_from_the_network():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title\n\nThe index $S_{T_i}$ and\n\n$$\\frac{a}{b}$$"),
            nbformat.v4.new_code_cell("1 + 1", outputs=[]),
        ]
    )
    html = notebook_to_html(nb)
    assert html.count("<math") == 2 and "$" not in re.sub(r"<style.*?</style>", "", html, flags=re.S)
    # no script or stylesheet from anywhere but the file itself
    assert not re.findall(r"<script[^>]+src=", html), re.findall(r"<script[^>]+src=[^>]*>", html)
    assert not re.findall(r"<link[^>]+href=\"http", html)
    assert "mathjax" not in html.lower() and "require.js" not in html and "require.min.js" not in html
    assert not re.findall(r"import\(\s*\"http", html)  # no module loaded at run time either
