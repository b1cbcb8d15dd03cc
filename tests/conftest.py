"""Shared fixtures. Tests never touch the network and never need a GPU."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hub weights are never fetched by tests
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def zoo_cnn():
    from workbench.models import load_model

    return load_model("zoo:resnet_shapes")


@pytest.fixture(scope="session")
def shapes_small():
    from workbench.data import planted_shapes

    return planted_shapes(64, size=64, seed=123)
