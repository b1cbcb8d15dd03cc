"""A `panel serve` app showing the DatasetViewer on PlantedShapes, for the browser tests (and by hand).

    panel serve tests/browser/apps/dataset_viewer_app.py --address 127.0.0.1 --port 5006

Environment variables (all optional): WB_APP_N (images, default 64), WB_APP_SEED (default 0),
WB_APP_MODEL (default "zoo:resnet_shapes"). When the zoo weights are not trained yet, the app falls
back to a random-init stand-in of the same architecture and says so in the title.
"""

import os

import panel as pn
import torch

from workbench.data.planted import planted_shapes
from workbench.models import load_model
from workbench.widgets import DatasetViewer

N = int(os.environ.get("WB_APP_N", "64"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
MODEL = os.environ.get("WB_APP_MODEL", "zoo:resnet_shapes")

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

viewer = DatasetViewer.from_planted(data, model=model, max_items=32, title=title)
pn.Column(viewer, sizing_mode="stretch_width").servable(title="DatasetViewer")
