"""The README's structure, read in one place: its sections, its Python blocks and its methods table.

The README is the single source of truth for the methods table (paper -> function -> notebook): the
documentation build (``docs/hooks.py``) renders it per capability and ``tests/test_readme.py`` checks
that it points at real things. Both import these functions, so the two never parse it differently.
Plain functions of the text, no third-party import: the hook and the tests load this file by path.
"""

from __future__ import annotations

import re

METHODS_HEADING = "## Methods: paper, function, file, notebook, test"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def sections(text: str) -> list[tuple[str, str]]:
    """The ``## `` sections of a Markdown text as (title, body) pairs, in order.

    The text before the first ``## `` heading (the title and the introduction) is the pair
    ``("", preamble)``. A ``## `` inside a fenced code block is not a heading.
    """
    out: list[tuple[str, list[str]]] = [("", [])]
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped[:3] in ("```", "~~~"):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        if fence is None and line.startswith("## "):
            out.append((line[3:].strip(), []))
        else:
            out[-1][1].append(line)
    return [(title, "\n".join(lines).strip("\n") + "\n") for title, lines in out]


def markdown_table(lines: list[str]) -> list[dict[str, str]]:
    """Rows of a Markdown table (its ``|`` lines, header first) as dicts keyed by the header's names."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]  # cells[1] is the --- separator
    return [dict(zip(header, row, strict=True)) for row in rows]


def methods_table(text: str) -> list[dict[str, str]]:
    """Rows of the README's methods table as dicts keyed by the header's column names.

    Columns: method, paper, function, file, notebook, test. The table is the first one after
    :data:`METHODS_HEADING` and ends at its first non-table line.
    """
    if METHODS_HEADING not in text:
        raise ValueError(f"the README has no section {METHODS_HEADING!r}")
    section = text.split(METHODS_HEADING, 1)[1].splitlines()
    first = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[first:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    return markdown_table(lines)


def code_names(cell: str) -> list[str]:
    """The `backticked` names of a table cell."""
    return re.findall(r"`([^`]+)`", cell)
