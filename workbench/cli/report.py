"""HTML reports that need no network: math rendered to MathML at export, no script from a CDN.

nbconvert's ``lab`` template loads require.js and MathJax from a CDN, so a report opened offline (or
behind a firewall, or years later) shows every equation as raw LaTeX. Here the LaTeX of markdown
cells (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) is converted to MathML with latex2mathml
(pure Python) while the notebook is exported; browsers render MathML natively (MathML Core: Chromium
109+, Firefox, Safari), so the page needs no script for it. The template drops the require.js,
MathJax and Mermaid script tags and the widget-manager loader: a report is one self-contained file.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat comes with the notebooks extra; the core never imports it
    import nbformat

# Code (fenced blocks, inline spans) is kept verbatim: a `$` there is a dollar, not math.
_CODE = re.compile(r"(^```.*?^```|^~~~.*?^~~~|`[^`\n]+`)", re.S | re.M)
# Display math first, then inline math; a `\$` is an escaped dollar. Inline `$...$` does not span a
# blank line and does not start or end with a space (Pandoc's rule, so "$5 and $6" is not math).
_MATH = re.compile(
    r"(?<!\\)\$\$(?P<d1>.+?)(?<!\\)\$\$"
    r"|\\\[(?P<d2>.+?)\\\]"
    r"|\\\((?P<i2>.+?)\\\)"
    r"|(?<![\\$])\$(?P<i1>[^\s$](?:[^$\n]|\n(?!\s*\n))*?(?<![\s\\]))\$(?!\d)",
    re.S,
)
_PLACEHOLDER = "WBMATHPLACEHOLDER{}X"

TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<style type="text/css">
math[display="block"] { display: block math; margin: 0.8em 0; }
math { font-size: 1.1em; }
.wb-math-raw { font-family: var(--jp-code-font-family); }
</style>
{%- endblock extra_css -%}
"""


def latex_to_mathml(tex: str, display: bool = False) -> str:
    """MathML for one LaTeX expression (no ``$`` delimiters); raises ``ValueError`` if it cannot."""
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises its own exception types
        raise ValueError(f"cannot render {tex!r} as MathML: {err}") from err


def _math_to_placeholders(markdown: str) -> tuple[str, list[str]]:
    """Replace every math span outside code by a placeholder; return the text and the MathML list."""
    rendered: list[str] = []

    def convert(match: re.Match) -> str:
        display = match.group("d1") is not None or match.group("d2") is not None
        tex = next(g for g in match.group("d1", "d2", "i2", "i1") if g is not None)
        try:
            mathml = latex_to_mathml(tex, display)
        except ValueError:
            # Shown as code rather than lost: readable, and never a bare "$...$" to a reader.
            mathml = f'<code class="wb-math-raw">{html.escape(tex)}</code>'
        rendered.append(mathml)
        return _PLACEHOLDER.format(len(rendered) - 1)

    parts = _CODE.split(markdown)
    # split with one capturing group: even indices are prose, odd ones are code
    out = [part if i % 2 else _MATH.sub(convert, part) for i, part in enumerate(parts)]
    return "".join(out), rendered


def _exporter_class():
    from jinja2 import pass_context
    from nbconvert import HTMLExporter

    class OfflineHTMLExporter(HTMLExporter):
        """HTMLExporter whose markdown filter renders math to MathML (see the module docstring)."""

        @pass_context  # jinja passes the template context (the cell's attachments live there)
        def markdown2html(self, context, source):
            text, rendered = _math_to_placeholders(source)
            body = super().markdown2html(context, text)
            for i, mathml in enumerate(rendered):
                body = body.replace(_PLACEHOLDER.format(i), mathml)
            return body

    return OfflineHTMLExporter


def notebook_to_html(nb: nbformat.NotebookNode, exclude_input: bool = False) -> str:
    """An offline HTML page for an executed notebook: the ``lab`` look, math as MathML, and no
    resource outside the file (images are embedded as data URIs by nbconvert already).
    ``exclude_input=True`` leaves the code cells' sources and prompts out: a report that reads as a
    document (the executed notebook beside it keeps the code)."""
    from jinja2 import DictLoader

    exporter = _exporter_class()(
        template_name="lab",
        template_file="workbench_offline.html.j2",
        extra_loaders=[DictLoader({"workbench_offline.html.j2": TEMPLATE})],
        exclude_input=exclude_input,
        exclude_input_prompt=exclude_input,
        exclude_output_prompt=exclude_input,
    )
    body, _ = exporter.from_notebook_node(nb)
    return body
