"""Perturbations of masked images, shared by the grid-based black-box methods (Sobol, HSIC, RISE).

A perturbation is ``fn(x (1, C, H, W), masks (B, 1, H, W) in [0, 1]) -> (B, C, H, W)``: where a mask is
1 the image is left as it is, where it is 0 the image is replaced by a baseline (black, a blur, the mean
colour). :func:`masked_scores` applies grid masks to images one batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from workbench._core.filters import gaussian_blur
from workbench._core.progress import progress as _progress
from workbench.attribution._base import Forward, perturbed_scores

Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------
# Perturbations: fn(x (1, C, H, W), masks (B, 1, H, W) in [0, 1]) -> (B, C, H, W)
# ----------------------------------------------------------------------------------------------------------


def inpainting(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x * M``: each cell fades toward a black (zero) baseline as its mask value goes to 0."""
    return x * masks


def blurring(x: torch.Tensor, masks: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``x * M + blur(x) * (1 - M)``: each cell fades toward a Gaussian-blurred copy of the image.

    ``sigma`` is the blur's standard deviation in pixels; by default ``max(H, W) / 22.4`` (10 px at
    224 px, Xplique's blur size). Borders are padded by replication.
    """
    sigma = max(x.shape[-2:]) / 22.4 if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"perturbation_size: the blur sigma must be > 0 pixels, got {sigma}")
    return x * masks + gaussian_blur(x, sigma) * (1.0 - masks)


def amplitude(x: torch.Tensor, masks: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Scale each pixel's deviation from the image's channel mean by ``1 + sigma (2 M - 1)``.

    ``x' = c + (x - c) (1 + sigma (2M - 1))`` with ``c`` the per-channel mean of ``x`` and ``sigma = 1``
    by default: ``M = 0`` flattens a cell to the mean colour, ``M = 1/2`` leaves it unchanged and ``M = 1``
    doubles its contrast. The result is clipped to ``[min(0, x.min()), max(1, x.max())]`` so pixel-space
    images stay in [0, 1].

    Xplique's docstring and code disagree on this perturbation; its code computes
    ``x * (M - 0.5) * sigma``, which flips the sign of the image for ``M < 1/2``, is zero at ``M = 1/2``
    and leaves pixel space. We implement a modulation of the amplitude around the image instead, so
    ``"amplitude"`` here does not reproduce Xplique's numbers.
    """
    sigma = 1.0 if sigma is None else float(sigma)
    c = x.mean(dim=(-2, -1), keepdim=True)
    lo, hi = min(0.0, float(x.min())), max(1.0, float(x.max()))
    return (c + (x - c) * (1.0 + sigma * (2.0 * masks - 1.0))).clamp(lo, hi)


PERTURBATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "inpainting": inpainting,
    "blurring": blurring,
    "amplitude": amplitude,
}


def resolve_perturbation(
    perturbation: str | Perturbation, perturbation_size: float | None = None
) -> Perturbation:
    """``fn(x, masks)`` for a name (``perturbation_size`` bound: the blur sigma or the amplitude sigma).

    A callable is returned as it is (``perturbation_size`` is then ignored).
    """
    if callable(perturbation):
        return perturbation
    if perturbation not in PERTURBATIONS:
        raise ValueError(
            f"perturbation: unknown perturbation {perturbation!r}; valid: {sorted(PERTURBATIONS)} or a callable"
        )
    fn = PERTURBATIONS[perturbation]
    if perturbation == "inpainting":
        return fn
    if perturbation_size is not None and float(perturbation_size) <= 0:
        raise ValueError(f"perturbation_size: expected a positive number, got {perturbation_size}")
    return lambda x, masks: fn(x, masks, perturbation_size)


def check_grid(grid_size: int, size: tuple[int, int]) -> int:
    """Validate ``grid_size`` (an integer in [2, min(H, W)]) and return it as an int."""
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
        raise ValueError(f"grid_size: expected an integer >= 2, got {grid_size!r}")
    if grid_size > min(size):
        raise ValueError(f"grid_size: expected at most the image side {min(size)}, got {grid_size}")
    return grid_size


def masked_scores(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor,
    perturb: Perturbation,
    batch_size: int,
    progress: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Scores (N, P) of the ``P`` grid masks (P, g, g) applied to each of the ``N`` images.

    Images are handled one at a time (the outer loop); for each, :func:`perturbed_scores` builds the
    perturbed batch lazily from ``masks[sl]`` (nearest upsampling, then ``perturb``) on the model's
    device, so at most ``batch_size`` perturbed images exist at once and no Python loop runs over masks.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    n_img, _, h, w = x.shape
    masks = masks.to(device=x.device, dtype=x.dtype).unsqueeze(1)  # (P, 1, g, g)
    out = torch.empty(n_img, len(masks), device=x.device)
    for i in _progress(range(n_img), enabled=progress, desc=desc, total=n_img):
        xi = x[i : i + 1]

        def make_inputs(sl: slice, xi: torch.Tensor = xi) -> torch.Tensor:
            return perturb(xi, F.interpolate(masks[sl], size=(h, w), mode="nearest"))

        out[i] = perturbed_scores(forward, make_inputs, len(masks), y[i], batch_size, x.device)
    return out
