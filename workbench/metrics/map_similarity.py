"""Similarity between two sets of attribution maps, batched: the measures the sanity checks use.

- :func:`pearson` and :func:`spearman` along the last dimension (flatten maps first);
- :func:`map_spearman`: Spearman between paired maps (N, H, W), optionally of their magnitudes
  (Adebayo et al. report both);
- :func:`ssim`: the structural similarity of Wang et al. (IEEE TIP 2004) between paired maps, each
  rescaled to [0, 1] first (as in Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench._core.validation import check_maps
from workbench.metrics.registry import METRICS

__all__ = ["average_ranks", "map_spearman", "pearson", "spearman", "ssim"]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dimension, batched; 0 where either side is constant (a
    constant carries no ranking information, and 0 keeps the result finite)."""
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    norm = a.norm(dim=-1) * b.norm(dim=-1)
    scale = torch.maximum(a.abs().amax(-1), b.abs().amax(-1)).clamp_min(1e-300)
    constant = (a.abs().amax(-1) <= 1e-12 * scale) | (b.abs().amax(-1) <= 1e-12 * scale)
    corr = (a * b).sum(-1) / norm.clamp_min(1e-300)
    return torch.where(constant, torch.zeros_like(corr), corr.clamp(-1, 1)).float()


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last dimension, ties sharing their mean rank (as scipy's rankdata)."""
    ordered = values.sort(dim=-1).values.contiguous()
    values = values.contiguous()
    left = torch.searchsorted(ordered, values, side="left")
    right = torch.searchsorted(ordered, values, side="right")
    return (left + right + 1).double() / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation along the last dimension (Pearson of the average ranks), batched; 0 where
    either side is constant."""
    return pearson(average_ranks(a.double()), average_ranks(b.double()))


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = check_maps(a, "a"), check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(
            f"maps: expected two sets of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b.to(a.device)


@METRICS.register(
    "map_spearman",
    paper="Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (rank correlation of maps)",
)
def map_spearman(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = False) -> torch.Tensor:
    """Spearman rank correlation between paired maps (N,); of ``|a|`` and ``|b|`` with ``absolute``.
    Channels are averaged first; a constant map correlates 0 with anything."""
    a, b = _paired(a, b)
    if absolute:
        a, b = a.abs(), b.abs()
    return spearman(a.flatten(1), b.flatten(1))


def _unit_range(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin((1, 2), keepdim=True)
    span = m.amax((1, 2), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / span.clamp_min(1e-30), torch.zeros_like(m))


@METRICS.register(
    "ssim",
    paper="Wang, Bovik, Sheikh & Simoncelli, Image Quality Assessment: From Error Visibility to Structural Similarity, IEEE TIP 2004",
)
def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) between paired maps, each min-max rescaled to [0, 1]
    (a constant map becomes 0), Gaussian window, ``data_range`` 1, constants K1 = 0.01, K2 = 0.03.

    With the defaults (an 11 x 11 window of sigma 1.5, i.e. scikit-image's truncation at 3.5 sigma) it
    equals scikit-image's ``structural_similarity(a, b, data_range=1, gaussian_weights=True,
    use_sample_covariance=False)`` on the rescaled maps: the mean over the pixels whose window fits
    inside the map (no padding).

    Returns
    -------
    torch.Tensor
        (N,) values in [-1, 1]; 1 for identical maps.
    """
    a, b = _paired(a, b)
    if window < 3 or window % 2 == 0 or window > min(a.shape[-2:]):
        raise ValueError(f"window: expected an odd size in [3, {min(a.shape[-2:])}], got {window}")
    a, b = _unit_range(a).double()[:, None], _unit_range(b).double()[:, None]
    r = window // 2
    coords = torch.arange(-r, r + 1, dtype=torch.float64, device=a.device)
    g1 = torch.exp(-(coords**2) / (2 * sigma**2))
    g1 = g1 / g1.sum()
    kernel = (g1[:, None] * g1[None, :])[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean((1, 2, 3)).float()
