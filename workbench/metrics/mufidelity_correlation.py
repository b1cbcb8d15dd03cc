"""MuFidelity: does the attribution of a set of features predict the score drop when they are removed?

Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020:

    mu_F(f, g, x) = corr_{S in random subsets of size |S|} ( sum_{i in S} g(f, x)_i ,  f(x) - f(x_[x_S = b]) )

Features are the cells of a ``grid x grid`` grid (Xplique's default: grid 9, subsets of 20 % of the
cells, 200 samples, baseline 0). Bhatt et al. use the Pearson correlation (the default here); Xplique
uses Spearman's (``correlation="spearman"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.seeding import make_generator
from workbench._core.validation import check_fraction, check_int
from workbench.metrics.baselines import Baseline
from workbench.metrics.causal_fidelity import maps_for
from workbench.metrics.map_similarity import pearson, spearman
from workbench.metrics.registry import METRICS
from workbench.metrics.removal import remover
from workbench.models.model import Model
from workbench.models.scoring import Forward, class_scores, prepare, score_fn

__all__ = ["mufidelity"]

CORRELATIONS = ("pearson", "spearman")


def check_correlation(correlation: str) -> str:
    """``correlation`` if it names one of :data:`CORRELATIONS`, else a ValueError listing them."""
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation: expected one of {CORRELATIONS}, got {correlation!r}")
    return correlation


def random_subsets(n_samples: int, d: int, k: int, seed: int | torch.Generator | None = 0) -> torch.Tensor:
    """(n_samples, d) float 0/1 indicators on the CPU: row ``s`` marks a uniformly random subset of
    exactly ``k`` of the ``d`` features (the first ``k`` of a random permutation), drawn from ``seed``.

    The subsets of MuFidelity (grid cells) and of C-MuFidelity (concepts).
    """
    order = torch.argsort(torch.rand(n_samples, d, generator=make_generator(seed)), dim=1)
    return torch.zeros(n_samples, d).scatter_(1, order[:, :k], 1.0)


def correlate(attributed: torch.Tensor, drops: torch.Tensor, correlation: str) -> torch.Tensor:
    """Per-row correlation (N,) float32 of the attributed sums and the score drops, both (N, samples)."""
    corr = pearson if check_correlation(correlation) == "pearson" else spearman
    return corr(attributed.double(), drops.double())


@METRICS.register(
    "mufidelity",
    paper="Bhatt, Weller & Moura, Evaluating and Aggregating Feature-based Model Explanations, IJCAI 2020",
)
@torch.inference_mode()
def mufidelity(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    maps: torch.Tensor,
    *,
    grid_size: int = 9,
    subset_fraction: float = 0.2,
    n_samples: int = 200,
    baseline: Baseline = 0.0,
    correlation: str = "pearson",
    score: str = "logit",
    batch_size: int = 64,
    seed: int | None = 0,
) -> torch.Tensor:
    """MuFidelity (Bhatt et al., IJCAI 2020): correlation between the attribution a subset of grid cells
    receives and the score drop when those cells take the baseline's value. **Higher is better** (1:
    the map predicts every drop exactly, up to an affine map for Pearson).

    Each sample removes a random subset of exactly ``round(subset_fraction * grid_size**2)`` cells (at
    least 1); the same subsets serve every image (drawn from ``seed``). The cells are nearest-upsampled
    to the image, so sizes that ``grid_size`` does not divide give cells that differ by one pixel.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) or one int.
    maps
        (N, H, W) or (N, C, H, W) attribution maps at the image size (channels averaged), signed.
    grid_size
        Cells per side (default 9, as Xplique).
    subset_fraction
        Fraction of the cells removed per sample, in (0, 1) (default 0.2, as Xplique).
    n_samples
        Random subsets per image (default 200); ``N * n_samples`` forward passes plus N.
    baseline
        What a removed cell becomes: a number, a tensor, a name ("zero", "blur", "road", ...), a
        callable of ``x`` or a mask-aware fill such as ROAD's, called per batch (see
        :mod:`workbench.metrics.baselines`).
    correlation
        "pearson" (default, Bhatt et al.) or "spearman" (Xplique).
    score
        "logit" (default: attributions such as gradient x input and integrated gradients add up in
        logit space, so that is where their sums should match the drops) or "probability".
    batch_size
        Perturbed images per forward pass, built lazily on the model's device.
    seed
        Seed of the subsets (same seed, same result).

    Returns
    -------
    torch.Tensor
        (N,) float32 correlations in [-1, 1]; 0 for a map whose subset sums do not vary (a constant
        map) or a model whose score does not move.
    """
    grid_size = check_int(grid_size, "grid_size")
    n_samples = check_int(n_samples, "n_samples", 2)
    batch_size = check_int(batch_size, "batch_size")
    subset_fraction = check_fraction(subset_fraction, "subset_fraction", inclusive=(False, False))
    check_correlation(correlation)
    forward, x, y = prepare(model, x, y)
    forward = score_fn(forward, score)
    maps = maps_for(maps, x)
    removed_forward, remove = remover(model, x, baseline)
    removed_forward = score_fn(removed_forward, score)
    n, _, h, w = x.shape
    if grid_size > min(h, w):
        raise ValueError(
            f"grid_size: expected at most min(H, W) = {min(h, w)} cells per side, got {grid_size}"
        )
    d = grid_size * grid_size
    k = max(1, round(subset_fraction * d))
    removed = random_subsets(n_samples, d, k, seed).to(x.device)
    pixels = F.interpolate(removed.view(n_samples, 1, grid_size, grid_size), size=(h, w), mode="nearest")[
        :, 0
    ]
    # attribution of each subset: sum of the map over its pixels, (N, n_samples)
    attributed = torch.einsum("nhw,shw->ns", maps.double(), pixels.double())
    reference = torch.cat([class_scores(forward(x[sl]), y[sl]).float() for sl in iter_batches(n, batch_size)])
    drops = torch.empty(n * n_samples, device=x.device)
    for sl in iter_batches(n * n_samples, batch_size):
        idx = torch.arange(sl.start, sl.stop, device=x.device)
        img, sample = idx // n_samples, idx % n_samples
        inputs = remove(img, pixels.index_select(0, sample)[:, None].bool())
        drops[sl] = reference.index_select(0, img) - class_scores(
            removed_forward(inputs), y.index_select(0, img)
        )
    return correlate(attributed, drops.view(n, n_samples), correlation)
