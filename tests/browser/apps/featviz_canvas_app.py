"""A `panel serve` app showing the FeatureVizCanvas on the zoo's texture CNN, for the browser tests (and by hand).

    panel serve tests/browser/apps/featviz_canvas_app.py --address 127.0.0.1 --port 5006

The optimizer is the real core, ``functools.partial(workbench.featviz.visualize, model, progress=False)`` on
``zoo:resnet_textures`` (64 px). The canvas offers the channels of layer2..layer4 and the model's four
classes, and, to show every kind of target, stand-in atoms and concepts: seeded random directions of
layer4 (96 channels; random atoms and non-negative concepts, not a trained SAE or CRAFT, which the canvas
does not care about). It opens on class 1 ("stripes").

Environment variables (all optional): WB_APP_STEPS (steps per run, default 100000: the test presses Stop),
WB_APP_PREVIEW (steps between previews, default 4).
"""

import functools
import os

import torch

STEPS = int(os.environ.get("WB_APP_STEPS", "100000"))
PREVIEW = int(os.environ.get("WB_APP_PREVIEW", "4"))


def build(steps: int = STEPS, preview_every: int = PREVIEW):
    """The canvas (its optimizer the real ``visualize`` on the texture CNN)."""
    from workbench.featviz import visualize
    from workbench.models import load_model
    from workbench.widgets import FeatureVizCanvas

    model = load_model("zoo:resnet_textures")
    g = torch.Generator().manual_seed(0)
    optimizer = functools.partial(visualize, model, progress=False)
    return FeatureVizCanvas.from_model(
        optimizer, model, layers=["layer2", "layer3", "layer4"],
        sae=torch.randn(16, 96, generator=g), sae_layer="layer4",
        concepts=torch.rand(4, 96, generator=g), concept_layer="layer4",
        concept_names=["stand-in a", "stand-in b", "stand-in c", "stand-in d"],
        steps=steps, preview_every=preview_every, display_size=192, target="class", index=1,
        title="FeatureVizCanvas (zoo:resnet_textures)",
    )  # fmt: skip


if __name__.startswith("bokeh"):  # run by `panel serve`
    torch.set_num_threads(1)
    build().servable(title="FeatureVizCanvas")
