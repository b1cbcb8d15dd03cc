"""A model with closed-form deletion and insertion curves, shared by the metric and FORGrad tests."""

from __future__ import annotations

import torch
from torch import nn


class RegionProbability(nn.Module):
    """p = mean of x over a region R (all channels), returned as logits (log p, log(1 - p)) so the
    softmax probability of class 0 is exactly p. Deleting (zeroing) pixels of R lowers p linearly."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region.float())
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(len(x))
        p = (x * self.region).sum((1, 2, 3)) / (self.region.sum() * x.shape[1])
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def region_setup(n=2, c=3, size=8):
    region = torch.zeros(size, size, dtype=torch.bool)
    region[2:6, 3:7] = True  # r = 16 of P = 64 pixels
    x = torch.ones(n, c, size, size)
    ideal = region.float().expand(n, size, size) + 0.01 * torch.rand(n, size, size)
    reverse = 1.0 - ideal
    return RegionProbability(region), x, region, ideal, reverse
