"""A `panel serve` app showing the AtomBrowser on a tiny RA-SAE, for the browser tests (and by hand).

    panel serve tests/browser/apps/atom_browser_app.py --address 127.0.0.1 --port 5006

The activations are those of ``zoo:resnet_shapes`` at ``layer3`` (8 x 8 tokens per image) on
PlantedShapes images, written to an ActivationStore (``pooling="none"``) in a temporary folder; the
dictionary is an RA-SAE on k-means candidates, fitted here with the package trainer (300 steps), and a
second TopK run gives the stability score. The model gives the class directions of the importance. The
statistics come from ``workbench.sae.atom_stats``, computed once per server and handed to each
session's browser. A line under the browser shows the atom selected on the Python side.

Environment variables (all optional): WB_APP_N (images, default 96), WB_APP_SEED (default 0).
"""

import os
import tempfile

import torch

N = int(os.environ.get("WB_APP_N", "96"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
N_ATOMS = 40


def fit(sae, X, seed=0):
    """300 steps of the package trainer (``workbench.sae.fit``), with TopK-aux on atoms silent for 50 steps
    (the default window, 1,000, is longer than the run): a third of the atoms die otherwise."""
    from workbench.sae import fit as sae_fit

    return sae_fit(sae, X, steps=300, lr=3e-3, seed=seed, dead_window=50)


def prepare(n: int = N, seed: int = SEED, path: str | None = None) -> dict:
    """What the browser shows, computed once: the data, the store, the two SAEs and the atom statistics
    (``workbench.sae.atom_stats``; the widget only displays them)."""
    from workbench.data import extract_activations, planted_shapes
    from workbench.models import load_model
    from workbench.sae import RASAE, TopKSAE, atom_stats, kmeans

    torch.manual_seed(seed)
    model = load_model("zoo:resnet_shapes")
    data = planted_shapes(n, size=64, seed=seed)
    path = path or tempfile.mkdtemp(prefix="wb-atom-browser-")
    store = extract_activations(model, "layer3", data.images, os.path.join(path, "layer3"), pooling="none",
                                labels=data.labels, progress=False)  # fmt: skip
    X = store.to_tensor()
    sae = fit(RASAE(X.shape[1], N_ATOMS, kmeans(X, 2 * N_ATOMS, seed=seed), k=4, seed=seed), X)
    other = fit(TopKSAE(X.shape[1], N_ATOMS, k=4, seed=seed + 1), X, seed=seed + 1)
    stats = atom_stats(
        sae, store, images=data.images, model=model, n_classes=len(data.class_names), runs=[other]
    )
    return {"model": model, "data": data, "store": store, "sae": sae, "stats": stats}


def build(n: int = N, seed: int = SEED, path: str | None = None, prepared: dict | None = None):
    """``(browser, data, store)``: the AtomBrowser of the app, on ``n`` images."""
    from workbench.widgets import AtomBrowser

    p = prepared or prepare(n, seed, path)
    browser = AtomBrowser(p["sae"], p["store"], p["data"].images, model=p["model"], class_names=p["data"].class_names,
                          stats=p["stats"], page_size=12, columns=4, top_k=5, n_quantiles=4,
                          title=f"RA-SAE atoms of layer3 on {n} images")  # fmt: skip
    return browser, p["data"], p["store"]


if __name__.startswith("bokeh"):  # run by `panel serve`
    torch.set_num_threads(1)
    import panel as pn

    from workbench.widgets.html import LiveHTML

    # Computed once per server: every session (the test's readiness probes too) reuses the statistics.
    browser, _data, _store = build(prepared=pn.state.as_cached("atom_browser_app", prepare))
    status = LiveHTML(object="", margin=(5, 10))

    def show(atom):
        status.object = (f'<div class="wb-status" data-selected="{"" if atom is None else atom}" style="font: 13px'
                         f' system-ui, sans-serif; color: #5f6368">Selected in Python: <b>{atom}</b></div>')  # fmt: skip

    browser.on_select(show)
    show(browser.selected)
    pn.Column(browser, status, sizing_mode="stretch_width").servable(title="AtomBrowser")
