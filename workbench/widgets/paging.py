"""Paging: the Prev / Next buttons and page info the paged widgets share."""

from __future__ import annotations

from workbench.widgets.html import LiveHTML, widget_kwargs


def paging_controls(previous_page, next_page, css: str):
    """The Prev / Next buttons and the page-info pane both viewers share, wired to their callbacks."""
    import panel as pn

    buttons = []
    for text, cls, callback in (
        ("\u25c0 Prev", "wb-prev", previous_page),
        ("Next \u25b6", "wb-next", next_page),
    ):
        button = pn.widgets.Button(
            **widget_kwargs(pn.widgets.Button, label=text), width=80, margin=(5, 5), css_classes=[cls]
        )
        button.on_click(lambda _e, callback=callback: callback())
        buttons.append(button)
    info = LiveHTML(object="", stylesheets=[css], margin=(5, 8), css_classes=["wb-pageinfo-pane"])
    return buttons[0], buttons[1], info
