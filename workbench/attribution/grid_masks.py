"""The front end shared by the grid methods (Sobol, HSIC, HSIC interactions): checks, masks, scores.

Each method describes its design as ``design(d, device) -> (P, d)`` mask values in [0, 1] for the
``d = grid_size**2`` cells; :func:`grid_scores` validates the inputs, builds the design, applies each
row (nearest-upsampled to the image, then perturbed) to every image and returns the scores of the
target class. :func:`upsample_scores` resizes the per-cell estimates back to the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.batching import default_batch_size
from workbench._core.progress import auto_progress
from workbench._core.validation import check_int
from workbench.attribution._base import Forward, prepare
from workbench.attribution.perturbations import Perturbation, masked_scores, resolve_perturbation
from workbench.models.model import Model

Design = Callable[[int, torch.device], torch.Tensor]


def check_grid(grid_size: int, size: tuple[int, int]) -> int:
    """Validate ``grid_size`` (an integer in [2, min(H, W)]) and return it as an int."""
    grid_size = check_int(grid_size, "grid_size", minimum=2)
    if grid_size > min(size):
        raise ValueError(f"grid_size: expected at most the image side {min(size)}, got {grid_size}")
    return grid_size


def check_nb_design(nb_design: int) -> int:
    """Validate a design size: an integer >= 2 (a variance needs two points)."""
    return check_int(nb_design, "nb_design", minimum=2)


@dataclass(frozen=True)
class GridScores:
    """What :func:`grid_scores` returns.

    Attributes
    ----------
    masks : torch.Tensor
        (P, d) the design rows, one value per cell, on the images' device.
    scores : torch.Tensor
        (N, P) the target score of each image under each row.
    grid_size : int
        ``g``; cell ``i`` is row ``i // g``, column ``i % g``.
    size : tuple[int, int]
        The image size (H, W).
    device : torch.device
        The images' (and the model's) device.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    grid_size: int
    size: tuple[int, int]
    device: torch.device


def grid_scores(
    model: Model | nn.Module | Forward,
    x,
    y,
    design: Design,
    *,
    grid_size: int,
    perturbation: str | Perturbation,
    perturbation_size: float | None,
    batch_size: int | None,
    progress: bool | None,
    desc: str,
) -> GridScores:
    """Validate, build the design, and score every image under every row.

    Parameters
    ----------
    model, x, y
        As the methods take them (numpy arrays are converted at the boundary by ``prepare``).
    design
        ``design(d, device) -> (P, d)`` in [0, 1].
    grid_size, perturbation, perturbation_size
        See the methods.
    batch_size
        Perturbed images per forward pass; None for :func:`workbench._core.batching.default_batch_size`
        of the image size.
    progress
        True/False, or None: a bar (ticking per batch) when the call needs more than about 1,000
        forward passes.
    desc
        The bar's label.
    """
    forward, x, y = prepare(model, x, y)  # NumPy images and targets are converted there
    size = (int(x.shape[-2]), int(x.shape[-1]))
    g = check_grid(grid_size, size)
    perturb = resolve_perturbation(perturbation, perturbation_size)
    masks = design(g * g, x.device)
    bs = default_batch_size(size, x.device) if batch_size is None else batch_size
    show = auto_progress(progress, len(x) * len(masks))
    f = masked_scores(forward, x, y, masks.view(-1, g, g), perturb, bs, progress=show, desc=desc)
    return GridScores(masks=masks, scores=f, grid_size=g, size=size, device=x.device)


def upsample_scores(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-cell estimates (N, g, g) -> maps (N, H, W): bicubic, then clamped to each map's grid range.

    Bicubic interpolation (the Sobol reference's resize) overshoots next to a strong cell: its kernel
    has negative lobes, so a non-negative grid (Jansen indices, HSIC) gets negative pixels around a
    peak, which any method ranking ``|map|`` (FORGrad, deletion on ``|map|``) would read as importance.
    Clamping every upsampled map to ``[min, max]`` of its own grid removes that ringing and only it:
    inside the range the values are the bicubic ones, a non-negative grid gives a non-negative map,
    and the peak is not inflated beyond the largest cell.
    """
    up = F.interpolate(grid[:, None].float(), size=size, mode="bicubic", align_corners=False)[:, 0]
    flat = grid.reshape(len(grid), -1).float()
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return torch.minimum(torch.maximum(up, lo), hi)
