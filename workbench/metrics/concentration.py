"""How concentrated is a map? Two summaries of the magnitudes ``|map|`` of each map, batched.

- :func:`sparseness`: the Gini index (Chalasani, Chen, Chowdhury, Wu & Jha, "Concise Explanations of
  Neural Networks using Adversarial Training", ICML 2020). 0 for a uniform map, ``1 - 1/n`` for a
  map with a single non-zero pixel: **higher is sparser**.
- :func:`complexity`: the entropy of the fractional contributions ``|a_i| / sum |a|`` (Bhatt, Weller &
  Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020). 0 for a single
  pixel, ``log n`` for a uniform map: **lower is simpler**.

A map that is zero everywhere says nothing is important, which both conventions treat as no
concentration at all: sparseness 0 and complexity ``log n`` (the uniform case), never NaN.
"""

from __future__ import annotations

import math

import torch

from workbench._core.validation import check_maps
from workbench.metrics.registry import METRICS

__all__ = ["complexity", "sparseness"]


def _magnitudes(maps: torch.Tensor) -> torch.Tensor:
    return check_maps(maps, dtype=torch.float64).flatten(1).abs()  # float64: sums over every pixel


@METRICS.register(
    "sparseness",
    paper="Chalasani, Chen, Chowdhury, Wu & Jha, Concise Explanations of Neural Networks using Adversarial Training, ICML 2020 (Gini index)",
)
def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of each map's magnitudes (Chalasani et al., ICML 2020); higher is sparser.

    ``G = sum_i (2 i - n - 1) a_(i) / (n sum_i a_(i))`` with ``a_(1) <= ... <= a_(n)`` sorted
    magnitudes (channels averaged first).

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) maps.

    Returns
    -------
    torch.Tensor
        (N,) float32 values in [0, 1 - 1/n]; 0 for a uniform or an all-zero map.
    """
    a = _magnitudes(maps).sort(dim=1).values
    n = a.shape[1]
    i = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    total = a.sum(1)
    gini = ((2 * i - n - 1) * a).sum(1) / (n * total.clamp_min(1e-300))
    return torch.where(total > 0, gini, torch.zeros_like(gini)).float()


@METRICS.register(
    "complexity",
    paper="Bhatt, Weller & Moura, Evaluating and Aggregating Feature-based Model Explanations, IJCAI 2020",
)
def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy (natural log) of each map's fractional contributions (Bhatt et al., IJCAI 2020); lower is
    simpler.

    ``-sum_i p_i log p_i`` with ``p_i = |a_i| / sum_j |a_j|`` (channels averaged first; ``0 log 0 = 0``).

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) maps.

    Returns
    -------
    torch.Tensor
        (N,) float32 values in [0, log n]; ``log n`` for a uniform or an all-zero map.
    """
    a = _magnitudes(maps)
    total = a.sum(1, keepdim=True)
    p = a / total.clamp_min(1e-300)
    entropy = -(torch.special.xlogy(p, p)).sum(1)
    uniform = torch.full_like(entropy, math.log(a.shape[1]))
    return torch.where(total[:, 0] > 0, entropy, uniform).float()
