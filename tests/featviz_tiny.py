"""A tiny CNN the feature-visualization tests optimize (fast: 32 px, 8 channels, 4 classes)."""

import torch
from torch import nn

from workbench.models.model import Model


def tiny_cnn(seed: int = 0) -> Model:
    """conv1 -> ReLU (act1) -> conv2 (stride 2) -> tanh (act2) -> pool -> fc, seeded."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 8, 3, padding=1))
    net.add_module("act1", nn.ReLU())
    net.add_module("conv2", nn.Conv2d(8, 8, 3, stride=2, padding=1))
    net.add_module("act2", nn.Tanh())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 4))
    return Model(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 32, 32))
