"""A `panel serve` app showing the BlindspotComparer, for the browser tests (and by hand).

    panel serve tests/browser/apps/blindspot_comparer_app.py --address 127.0.0.1 --port 5006

Two PlantedShapes sets: a reference without striped objects (``concept_weights={"texture=stripes":
0.0}``) and a compared set where stripes weigh 5. A TopK SAE is fitted here on ``zoo:resnet_shapes``
``layer3`` activations of both sets (the package trainer, 300 steps), and :func:`workbench.sae.blindspots` gives
the delta: atoms of striped objects come out exaggerated in the compared set. A line under the
comparer shows the atom selected on the Python side.

Environment variables (all optional): WB_APP_N (images per set, default 80), WB_APP_SEED (default 0).
"""

import os

import torch

N = int(os.environ.get("WB_APP_N", "80"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))


def fit(sae, X, seed=0):
    """300 steps of the package trainer (``workbench.sae.training.train``), with TopK-aux on atoms silent
    for 50 steps (the default window, 1,000, is longer than the run): a third of the atoms die otherwise."""
    from workbench.sae.training import train

    train(sae, X, steps=300, batch_size=256, lr=3e-3, seed=seed, progress=False, dead_window=50)
    return sae


def build(n: int = N, seed: int = SEED):
    """``(comparer, result)``: the BlindspotComparer of the app and its Blindspots result."""
    from workbench.data import planted_shapes
    from workbench.models import load_model
    from workbench.sae import TopKSAE, blindspots
    from workbench.widgets import BlindspotComparer

    torch.manual_seed(seed)
    model = load_model("zoo:resnet_shapes")
    real = planted_shapes(n, size=64, seed=seed, concept_weights={"texture=stripes": 0.0})
    gen = planted_shapes(n, size=64, seed=seed + 1, concept_weights={"texture=stripes": 5.0})
    with torch.no_grad():
        acts_a = model.activations(real.images, "layer3")["layer3"]
        acts_b = model.activations(gen.images, "layer3")["layer3"]

    def rows(a):
        return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])

    sae = fit(TopKSAE(acts_a.shape[1], 48, k=4, seed=seed), torch.cat([rows(acts_a), rows(acts_b)]))
    result = blindspots(sae, rows(acts_a), rows(acts_b), top=8)
    comparer = BlindspotComparer(result, real.images, gen.images, sae=sae, acts_a=acts_a, acts_b=acts_b,
                                 names=("no stripes", "stripes x5"), n_examples=5,
                                 title=f"Blindspots: {n} images without vs with many striped objects")  # fmt: skip
    return comparer, result


if __name__.startswith("bokeh"):  # run by `panel serve`
    torch.set_num_threads(1)
    import panel as pn

    from workbench.widgets.html import LiveHTML

    comparer, _result = build()
    status = LiveHTML(object="", margin=(5, 10))

    def show(atom):
        status.object = (f'<div class="wb-status" data-selected="{"" if atom is None else atom}" style="font: 13px'
                         f' system-ui, sans-serif; color: #5f6368">Selected in Python: <b>{atom}</b></div>')  # fmt: skip

    comparer.on_select(show)
    show(None)
    pn.Column(comparer, status, sizing_mode="stretch_width").servable(title="BlindspotComparer")
