"""A `panel serve` app showing the ConceptGallery linked to an AttributionViewer, for the browser tests (and by hand).

    panel serve tests/browser/apps/concept_gallery_app.py --address 127.0.0.1 --port 5006

The concepts are stand-ins built here with plain torch from PlantedShapes (the gallery does not care
where concepts come from, and CRAFT is not needed to display them): five pixel features of the images,
"object", "background", "red", "green" and "blue" (the mask, its complement and each channel's excess
over the other two). The crops are a 3 x 3 grid of 32 px windows (stride 16) of each 64 px image; a
crop's code is the mean of each feature over it, its concept maps the features pooled to 4 x 4. The
images' concept maps are the features pooled to 8 x 8 (a CRAFT-like resolution), their importances the
maps' means times the class-level importances, which are fixed numbers out of order (so the gallery
has to sort them). The recursion tree splits "object" into two sub-concepts at an earlier layer; "red"
has a stand-in feature visualization (its top crops averaged), the other slots stay empty. The
AttributionViewer shows two maps of the same images. :func:`make_data` is imported by the tests.

Environment variables (all optional): WB_APP_N (images, default 6), WB_APP_SEED (default 0).
"""

import os

import torch
import torch.nn.functional as F

N = int(os.environ.get("WB_APP_N", "6"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
NAMES = ["object", "background", "red", "green", "blue"]
IMPORTANCES = [0.35, 0.05, 0.25, 0.1, 0.2]  # sorted: object, red, blue, green, background


def make_data(n: int = N, seed: int = SEED) -> dict:
    """The gallery's arguments (crops, codes, maps, importances, tree, names) and the images' data."""
    from workbench.data.planted import planted_shapes

    data = planted_shapes(n, size=64, seed=seed)
    x, mask = data.images, data.object_masks.float()
    rgb = x.unbind(1)
    excess = [(c - (rgb[(k + 1) % 3] + rgb[(k + 2) % 3]) / 2).clamp(min=0) for k, c in enumerate(rgb)]
    features = torch.stack([mask, 1 - mask, *excess], 1)  # (n, 5, 64, 64)
    windows = [(y, x0) for y in (0, 16, 32) for x0 in (0, 16, 32)]
    crops = torch.stack([x[i, :, y : y + 32, x0 : x0 + 32] for i in range(n) for y, x0 in windows])
    crop_features = torch.stack(
        [features[i, :, y : y + 32, x0 : x0 + 32] for i in range(n) for y, x0 in windows]
    )
    importances = torch.tensor(IMPORTANCES)
    image_maps = F.avg_pool2d(features, 8)  # (n, 5, 8, 8)
    obj = [k for k in range(len(crops)) if crop_features[k, 0].mean() > 0.3]
    tree = {
        "concept": None, "layer": "layer4", "children": [
            {"concept": 0, "layer": "layer4", "importance": 0.35, "crops": obj[:12], "children": [
                {"concept": 0, "layer": "layer2", "importance": 0.2, "crops": obj[:12:2]},
                {"concept": 1, "layer": "layer2", "importance": 0.15, "crops": obj[1:12:2]},
            ]},
            *({"concept": c, "layer": "layer4", "importance": IMPORTANCES[c]} for c in (2, 4, 3, 1)),
        ],
    }  # fmt: skip
    return {
        "data": data,
        "crops": crops,
        "crop_codes": crop_features.mean((2, 3)),
        "crop_maps": F.avg_pool2d(crop_features, 8),
        "importances": importances,
        "image_importances": image_maps.mean((2, 3)) * importances,
        "image_maps": image_maps,
        "tree": tree,
        "concept_names": NAMES,
        # A stand-in "feature visualization" for "red" only (the mean of its 8 top crops): one slot filled,
        # the others empty.
        "featviz": {2: crops[crop_features.mean((2, 3))[:, 2].argsort(descending=True)[:8]].mean(0)},
    }


def build(n: int = N, seed: int = SEED):
    """``(gallery, viewer, data)``: the gallery linked to an AttributionViewer of the same images."""
    from workbench.widgets import AttributionViewer, ConceptGallery

    d = make_data(n, seed)
    data = d.pop("data")
    maps = {"object mask": data.object_masks.float(), "red excess": d["image_maps"][:, 2]}
    viewer = AttributionViewer(data.images, maps, labels=data.labels, class_names=data.class_names,
                               title="AttributionViewer (linked)")  # fmt: skip
    gallery = ConceptGallery(**d, images=data.images, class_name="planted shapes", attribution_viewer=viewer,
                             top_k=8, page_size=3, n_top_images=4)  # fmt: skip
    return gallery, viewer, data


if __name__.startswith("bokeh"):  # run by `panel serve`
    torch.set_num_threads(1)
    import panel as pn

    from workbench.widgets.html import LiveHTML

    gallery, viewer, _data = build()
    status = LiveHTML(object="", margin=(5, 10))

    def show(image):
        status.object = (f'<div class="wb-status" data-image="{"" if image is None else image}" style="font: 13px'
                         f' system-ui, sans-serif; color: #5f6368">Image selected in Python: <b>{image}</b></div>')  # fmt: skip

    gallery.on_select_image(show)
    show(None)
    pn.Column(gallery, status, viewer, sizing_mode="stretch_width").servable(title="ConceptGallery")
