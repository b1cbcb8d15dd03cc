"""A `panel serve` app showing the AttributionViewer on PlantedShapes, for the browser tests (and by hand).

    panel serve tests/browser/apps/attribution_viewer_app.py --address 127.0.0.1 --port 5006

The maps come from cheap stand-ins computed here with plain torch (the viewer does not care where
maps come from): the object mask blurred (positive, pixel resolution), uniform noise on an 8x8 grid
(positive, grid resolution, upsampled for display) and gradient x input of the zoo CNN (signed).
A small metrics table (share of positive mass in the object mask, pointing game) goes under the
detail view, with the deletion and insertion curves of each method (:func:`curves_of`: the real
metrics on the app's model, 10 steps, well under a second for 6 images). :func:`make_maps` is
imported by the tests to know the expected values.

Environment variables (all optional): WB_APP_N (images, default 6), WB_APP_SEED (default 0),
WB_APP_MODEL (default "zoo:resnet_shapes"; random-init stand-in when the zoo weights are missing),
WB_APP_TEMPERATURE (default 1: the model's logits are divided by it, so 30 makes a model as unsure
of itself as a 1000-class model on a photo: its deletion / insertion scores stay near 1 / classes).
The images are named ``img_<i>`` (``names=``), as ``sample_images`` names its photos.
"""

import os

import torch
import torch.nn.functional as F

from workbench.data.planted import planted_shapes

N = int(os.environ.get("WB_APP_N", "6"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
MODEL = os.environ.get("WB_APP_MODEL", "zoo:resnet_shapes")
# a method key with underscores, as registry names are: its column title must wrap between words only
BLUR, NOISE, GRAD = "blurred_object_mask", "noise 8\u00d78", "gradient \u00d7 input"
TEMPERATURE = float(os.environ.get("WB_APP_TEMPERATURE", "1"))


class Tempered(torch.nn.Module):
    """``model`` with its logits divided by ``temperature`` (same predictions, lower confidence)."""

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature
        self.labels = getattr(model, "labels", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def make_maps(data, model=None, seed: int = 0) -> dict[str, torch.Tensor]:
    """The maps the app shows; without ``model`` only the two model-free ones."""
    blur = F.avg_pool2d(data.object_masks.float()[:, None], 9, stride=1, padding=4, count_include_pad=False)[
        :, 0
    ]
    noise = torch.rand(len(data), 8, 8, generator=torch.Generator().manual_seed(seed))
    maps = {BLUR: blur, NOISE: noise}
    if model is not None:
        x = data.images.clone().requires_grad_(True)
        logits = model(x)
        logits.gather(1, data.labels[:, None]).sum().backward()
        maps[GRAD] = (x.grad * x).sum(1).detach()
    return maps


def metrics_of(maps: dict[str, torch.Tensor], masks: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Two ground-truth scores per image: positive mass inside the mask, and whether the peak is in it."""
    out = {}
    for name, m in maps.items():
        m = F.interpolate(m[:, None], size=masks.shape[1:], mode="nearest")[:, 0]
        pos = m.clamp(min=0)
        inside = (pos * masks).flatten(1).sum(1) / pos.flatten(1).sum(1).clamp(min=1e-12)
        peak = masks.flatten(1).gather(1, m.flatten(1).argmax(1, keepdim=True))[:, 0].float()
        out[name] = {"mass in mask": inside, "pointing game": peak}
    return out


def curves_of(model, data, maps: dict[str, torch.Tensor]) -> dict[str, dict[str, object]]:
    """Deletion and insertion (workbench.metrics) of each map, upsampled to the image size."""
    from workbench.metrics.causal_fidelity import deletion, insertion

    out = {}
    for name, m in maps.items():
        m = F.interpolate(m[:, None], size=data.images.shape[-2:], mode="nearest")[:, 0]
        out[name] = {
            "deletion": deletion(model, data.images, data.labels, m),
            "insertion": insertion(model, data.images, data.labels, m),
        }
    return out


if __name__.startswith("bokeh"):  # run by `panel serve`
    import panel as pn

    from workbench.models import load_model
    from workbench.widgets import AttributionViewer

    torch.set_num_threads(1)
    data = planted_shapes(N, seed=SEED)
    title = f"PlantedShapes \u00b7 {MODEL}"
    try:
        model = load_model(MODEL, device="cpu")
    except FileNotFoundError:  # zoo weights not trained yet: same architecture, random weights
        torch.manual_seed(SEED)
        model = load_model(
            "timm:test_resnet", num_classes=len(data.class_names), output_stride=8, labels=data.class_names
        )
        title = "PlantedShapes \u00b7 random-init timm:test_resnet (zoo weights missing)"

    if TEMPERATURE != 1:
        model = Tempered(model, TEMPERATURE)
        title += f" \u00b7 logits / {TEMPERATURE:g}"
    maps = make_maps(data, model, seed=SEED)
    viewer = AttributionViewer(
        data.images,
        maps,
        model=model,
        masks=data.object_masks,
        labels=data.labels,
        class_names=data.class_names,
        metrics=metrics_of(maps, data.object_masks),
        curves=curves_of(model, data, maps),
        title=title,
        names=[f"img_{i:03d}" for i in range(len(data))],
    )
    pn.Column(viewer, sizing_mode="stretch_width").servable(title="AttributionViewer")
