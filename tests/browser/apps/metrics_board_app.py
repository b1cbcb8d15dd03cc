"""A `panel serve` app showing the MetricsBoard, for the browser tests (and by hand).

    panel serve tests/browser/apps/metrics_board_app.py --address 127.0.0.1 --port 5006

The scores are cheap seeded stand-ins (no model): per-image deletion and insertion AUCs, energy in
the mask and a pointing game for five methods, plus one dataset-level score for some of them. A
line under the board shows the method selected on the Python side (set by the board's
``on_select`` callback), so a test can see that a click in the browser reached Python.
:func:`make_table` is imported by the tests to know the expected values.

Environment variables (all optional): WB_APP_N (images, default 32), WB_APP_SEED (default 0).
"""

import html
import os

import numpy as np

N = int(os.environ.get("WB_APP_N", "32"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
METHODS = ("saliency", "integrated gradients", "RISE", "Sobol", "random")
#: (mean of deletion AUC, insertion AUC, energy in mask, pointing probability) of each method
MEANS = {
    "saliency": (0.32, 0.55, 0.41, 0.70),
    "integrated gradients": (0.27, 0.61, 0.47, 0.78),
    "RISE": (0.22, 0.68, 0.52, 0.84),
    "Sobol": (0.24, 0.70, 0.50, 0.81),
    "random": (0.45, 0.42, 0.25, 0.20),
}


def make_table(n: int = N, seed: int = SEED) -> dict[str, dict[str, np.ndarray | float]]:
    """``{method: {metric: (n,) values or a number}}``, seeded."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray | float]] = {}
    for method in METHODS:
        dele, ins, energy, point = MEANS[method]
        out[method] = {
            "deletion AUC": np.clip(dele + 0.08 * rng.standard_normal(n), 0, 1),
            "insertion AUC": np.clip(ins + 0.08 * rng.standard_normal(n), 0, 1),
            "energy in mask": np.clip(energy + 0.1 * rng.standard_normal(n), 0, 1),
            "pointing game": (rng.random(n) < point).astype(float),
        }
        if method != "random":
            out[method]["seconds / image"] = {
                "saliency": 0.004,
                "integrated gradients": 0.09,
                "RISE": 1.6,
                "Sobol": 0.8,
            }[method]
    return out


if __name__.startswith("bokeh"):  # run by `panel serve`
    import panel as pn

    from workbench.widgets import MetricsBoard
    from workbench.widgets.html import LiveHTML

    board = MetricsBoard(
        make_table(),
        lower_is_better=["deletion AUC", "seconds / image"],
        title=f"Stand-in scores on {N} images",
    )
    status = LiveHTML(object="", css_classes=["wb-status-pane"], margin=(5, 10))

    def show(method):
        text = html.escape(method) if method else "none"
        status.object = (
            f'<div class="wb-status" data-selected="{html.escape(method or "")}" style="font: 13px system-ui,'
            f' sans-serif; color: #5f6368">Selected in Python: <b>{text}</b></div>'
        )

    board.on_select(show)
    show(None)
    pn.Column(board, status, sizing_mode="stretch_width").servable(title="MetricsBoard")
