"""The Explorer's own small panes, as HTML built in Python: the progress line, the filter banner, the atoms
that fire on the selected image, and the strip of feature visualizations. The big views are the existing
widgets (see :mod:`workbench.widgets.explorer`)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from workbench.widgets.atom_browser import CSS as _ATOM_CSS
from workbench.widgets.html import asset, fmt
from workbench.widgets.images import heat_tile, png_data_uri

CSS = _ATOM_CSS + asset("explorer.css")
_DOT = " \u00b7 "


def status_html(tasks: Sequence[Any]) -> str:
    """The progress line: one bar per queued or running background job (``JobProgress``), or "idle"."""
    running = [t for t in tasks if t.state == "running"]
    if not tasks:
        return '<div class="wb-sae wb-ex-status" data-busy="0"><span class="wb-ex-idle">\u2713 idle: every view is up to date</span></div>'  # fmt: skip
    rows = []
    for t in sorted(tasks, key=lambda t: t.state != "running"):
        pct = 100 * t.fraction
        amount = f"{t.done}/{t.total}" if t.total else ""
        rows.append(f'<span class="wb-ex-task wb-ex-{t.state}" data-state="{t.state}"><span class="wb-ex-name">'
                    f'{html.escape(t.task)}</span><span class="wb-ex-track"><span class="wb-ex-fill" style="width:'
                    f'{pct:.0f}%"></span></span><span class="wb-muted">{t.state} {amount}</span></span>')  # fmt: skip
    queued = len(tasks) - len(running)
    head = f'<span class="wb-ex-busy">\u23f3 computing in the background ({len(running)} running, {queued} queued)</span>'
    return f'<div class="wb-sae wb-ex-status" data-busy="1">{head}{"".join(rows)}</div>'


def banner_html(text: str | None, shown: int, total: int) -> str:
    """The filter banner: what the grid is filtered by and a button that clears it (empty without a filter)."""
    if text is None:
        return '<div class="wb-sae wb-ex-banner" data-filter=""></div>'
    return (f'<div class="wb-sae wb-ex-banner wb-ex-on" data-filter="{html.escape(text)}">Images filtered to where'
            f' <b>{html.escape(text)}</b> matters most: {shown} of {total}<button class="wb-ex-clear"'
            ' data-action="clear" data-value="1" type="button">show all images</button></div>')  # fmt: skip


def section_html(title: str, hint: str, kind: str) -> str:
    """The heading of one section of the Explorer (a question it answers, and what it shows)."""
    return (f'<div class="wb-sae wb-ex-section" data-section="{kind}"><span class="wb-title">{html.escape(title)}</span>'
            f'<span class="wb-muted">{html.escape(hint)}</span></div>')  # fmt: skip


def message_html(text: str, kind: str, index: int | None, error: bool = False) -> str:
    """A placeholder while a view is computed (or the error it raised)."""
    cls = "wb-ex-error" if error else "wb-ex-wait"
    i = "" if index is None else index
    return f'<div class="wb-sae {cls}" data-view="{kind}" data-image="{i}">{html.escape(text)}</div>'


def atoms_html(
    image: Any, index: int, atoms: Sequence[tuple[int, float]], heatmaps: Sequence[Any], selected: int | None
) -> str:
    """The atoms that fire most on image ``index``: a clickable tile per atom with its heatmap over the image."""
    if not atoms:
        return (f'<div class="wb-sae wb-ex-atoms" data-image="{index}" data-atoms=""><span class="wb-muted">no atom'
                " fires on this image</span></div>")  # fmt: skip
    top = max(v for _a, v in atoms)
    tiles = []
    for (a, v), amap in zip(atoms, heatmaps, strict=True):
        on = " wb-on" if a == selected else ""
        src = heat_tile(image, amap, 0.7, float(amap.max()) if amap is not None else top, 72)
        tiles.append(f'<div class="wb-ex wb-ex-atom{on}" data-action="atom" data-value="{a}" data-atom="{a}" role="button"'
                     f' tabindex="0"><img src="{src}" alt="atom {a} on image {index}" width="72"><div class="wb-cap">'
                     f"atom {a}{_DOT}{fmt(v)}</div></div>")  # fmt: skip
    ids = ",".join(str(a) for a, _ in atoms)
    return (f'<div class="wb-sae wb-ex-atoms" data-image="{index}" data-atoms="{ids}"><div class="wb-section">Atoms'
            f' that fire most on image #{index}<span class="wb-hint">largest code; click one to filter the images'
            f'</span></div><div class="wb-examples">{"".join(tiles)}</div></div>')  # fmt: skip


def featviz_html(
    index: int, concepts: Sequence[tuple[int, str, Any]], atoms: Sequence[tuple[int, Any]]
) -> str:
    """The feature visualizations of the selected image's top concepts and atoms (None: still computing)."""

    def tile(kind: str, k: int, label: str, image: Any) -> str:
        if image is None:
            body = '<div class="wb-fv-slot wb-fv-empty" data-featviz="empty" style="width:96px;height:96px">computing\u2026</div>'
        else:
            body = (f'<div class="wb-fv-slot" data-featviz="filled"><img src="{png_data_uri(image, size=96)}"'
                    f' alt="feature visualization of {html.escape(label)}" width="96"></div>')  # fmt: skip
        return (f'<div class="wb-ex wb-ex-fv" data-kind="{kind}" data-item="{k}">{body}<div class="wb-cap">'
                f"{html.escape(label)}</div></div>")  # fmt: skip

    parts = [tile("concept", k, label, img) for k, label, img in concepts]
    parts += [tile("atom", a, f"atom {a}", img) for a, img in atoms]
    done = sum(img is not None for *_x, img in [*concepts, *atoms])
    return (f'<div class="wb-sae wb-ex-featviz" data-image="{index}" data-filled="{done}"><div class="wb-section">'
            f"MACO images of image #{index}'s top concepts and atoms<span class=\"wb-hint\">what each direction of the"
            f' layer looks like at its strongest</span></div><div class="wb-examples">{"".join(parts)}</div></div>')  # fmt: skip
