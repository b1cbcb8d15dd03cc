"""Perturbations of masked images, shared by the grid-based black-box methods (Sobol, HSIC, RISE).

A perturbation is ``fn(x (1, C, H, W), masks (B, 1, H, W) in [0, 1]) -> (B, C, H, W)``: where a mask is
1 the image is left as it is, where it is 0 the image is replaced by a baseline (black, a blur, the mean
colour). :data:`PERTURBATIONS` (a :class:`workbench._core.registry.Registry`) names them:

- ``"inpainting"``: ``x * M``, a black baseline (the papers' and Xplique's default).
- ``"blurring"``: toward a **box-blurred** copy, ``cv2.blur(x, (10, 10))`` as in the Sobol and HSIC
  reference code (a 10 x 10 mean, spread about 2.9 px; OpenCV's anchor and BORDER_REFLECT_101 borders).
- ``"gaussian_blurring"``: toward a Gaussian-blurred copy (sigma ``max(H, W) / 22.4`` px by default,
  10 px at 224 px; this project's earlier ``"blurring"``; no reference implementation uses it).
- ``"amplitude"``: scales each pixel's deviation from the channel mean (see :func:`amplitude`).

Which one to choose. The explanation depends on the baseline as much as on the model. On the zoo's
texture CNN (notebook 10: Sobol, 16 images), ``"amplitude"`` puts twice as much of the map's energy in
the object mask as ``"inpainting"`` (0.755 vs 0.348): a black cell is itself a texture-free region the
model reacts to, while a flattened cell removes only the texture. Prefer ``"amplitude"`` when the class
lives in texture or contrast; ``"inpainting"`` reproduces the papers.

:func:`masked_scores` applies grid masks to images one batch at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from workbench._core.filters import box_blur, gaussian_blur
from workbench._core.progress import progress as _progress
from workbench._core.registry import Registry
from workbench.attribution._base import Forward, class_scores

Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PERTURBATIONS: Registry[Callable[..., torch.Tensor]] = Registry("perturbation")

_SOBOL_PAPER = "Fel et al., Look at the Variance!, NeurIPS 2021 (Xplique's GSA perturbations)"

# The reference's blur: cv2.blur(x, (10, 10)) in the Sobol and HSIC code, whatever the image size.
BOX_BLUR_SIZE = 10


# ----------------------------------------------------------------------------------------------------------
# Perturbations: fn(x (1, C, H, W), masks (B, 1, H, W) in [0, 1]) -> (B, C, H, W)
# ----------------------------------------------------------------------------------------------------------


@PERTURBATIONS.register("inpainting", paper=_SOBOL_PAPER + "; Petsiuk et al., RISE, BMVC 2018")
def inpainting(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x * M``: each cell fades toward a black (zero) baseline as its mask value goes to 0."""
    return x * masks


@PERTURBATIONS.register("blurring", paper=_SOBOL_PAPER)
def blurring(x: torch.Tensor, masks: torch.Tensor, size: float | None = None) -> torch.Tensor:
    """``x * M + box(x) * (1 - M)``: each cell fades toward a box-blurred copy of the image.

    ``size`` is the side of the box in pixels, 10 by default: the reference code's
    ``cv2.blur(x, (10, 10))`` (a mean over 10 x 10 pixels, standard deviation about 2.9 px), at every
    image size. The window follows OpenCV (anchor at the centre, ``[i - 5, i + 4]`` for 10) and so do
    the borders (BORDER_REFLECT_101); see :func:`workbench._core.filters.box_blur`.
    """
    size = BOX_BLUR_SIZE if size is None else size
    if float(size) < 1 or float(size) != int(size):
        raise ValueError(
            f"perturbation_size: the box blur size must be a positive integer (pixels), got {size}"
        )
    return x * masks + box_blur(x, int(size)) * (1.0 - masks)


@PERTURBATIONS.register("gaussian_blurring", paper="Fong & Vedaldi, Meaningful Perturbation, ICCV 2017")
def gaussian_blurring(x: torch.Tensor, masks: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``x * M + blur(x) * (1 - M)``: each cell fades toward a Gaussian-blurred copy of the image.

    ``sigma`` is the blur's standard deviation in pixels; by default ``max(H, W) / 22.4`` (10 px at
    224 px, a much stronger blur than the reference's 10 x 10 box of ``"blurring"``). Borders are padded
    by replication.
    """
    sigma = max(x.shape[-2:]) / 22.4 if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"perturbation_size: the blur sigma must be > 0 pixels, got {sigma}")
    return x * masks + gaussian_blur(x, sigma) * (1.0 - masks)


@PERTURBATIONS.register("amplitude", paper=_SOBOL_PAPER + " (amplitude modulation, our variant)")
def amplitude(x: torch.Tensor, masks: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Scale each pixel's deviation from the image's channel mean by ``1 + sigma (2 M - 1)``.

    ``x' = c + (x - c) (1 + sigma (2M - 1))`` with ``c`` the per-channel mean of ``x`` and ``sigma = 1``
    by default: ``M = 0`` flattens a cell to the mean colour, ``M = 1/2`` leaves it unchanged and ``M = 1``
    doubles its contrast. The result is clipped to ``[min(0, x.min()), max(1, x.max())]`` so pixel-space
    images stay in [0, 1].

    Xplique's docstring and code disagree on this perturbation; its code computes
    ``x * (M - 0.5) * sigma``, which flips the sign of the image for ``M < 1/2``, is zero at ``M = 1/2``
    and leaves pixel space. We implement a modulation of the amplitude around the image instead, so
    ``"amplitude"`` here does not reproduce Xplique's numbers. On the texture CNN it localizes about
    twice as well as ``"inpainting"`` (see the module notes).
    """
    sigma = 1.0 if sigma is None else float(sigma)
    c = x.mean(dim=(-2, -1), keepdim=True)
    lo, hi = min(0.0, float(x.min())), max(1.0, float(x.max()))
    return (c + (x - c) * (1.0 + sigma * (2.0 * masks - 1.0))).clamp(lo, hi)


def resolve_perturbation(
    perturbation: str | Perturbation, perturbation_size: float | None = None
) -> Perturbation:
    """``fn(x, masks)`` for a name (``perturbation_size`` bound: the box size, the blur sigma or the
    amplitude sigma). A callable is returned as it is (``perturbation_size`` is then ignored).
    """
    if callable(perturbation):
        return perturbation
    if not isinstance(perturbation, str) or perturbation not in PERTURBATIONS:
        raise ValueError(
            f"perturbation: unknown perturbation {perturbation!r}; valid: {PERTURBATIONS.names()} or a callable"
        )
    fn = PERTURBATIONS.get(perturbation)
    if perturbation == "inpainting":
        return fn
    if perturbation_size is not None and not float(perturbation_size) > 0:
        raise ValueError(f"perturbation_size: expected a positive number, got {perturbation_size}")
    return lambda x, masks: fn(x, masks, perturbation_size)


@torch.inference_mode()
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

    Each batch is built lazily from ``masks[sl]`` (nearest upsampling, then ``perturb``) on the model's
    device, so at most ``batch_size`` perturbed images exist at once and no Python loop runs over
    masks. The progress bar ticks once per batch (``N * ceil(P / batch_size)`` ticks).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    n_img, _, h, w = x.shape
    masks = masks.to(device=x.device, dtype=x.dtype).unsqueeze(1)  # (P, 1, g, g)
    n = len(masks)
    out = torch.empty(n_img, n, device=x.device)
    steps = [(i, slice(s, min(s + batch_size, n))) for i in range(n_img) for s in range(0, n, batch_size)]
    total = n_img * math.ceil(n / batch_size)
    for i, sl in _progress(steps, enabled=progress, desc=desc, total=total):
        batch = perturb(x[i : i + 1], F.interpolate(masks[sl], size=(h, w), mode="nearest"))
        target = y[i].view(1).expand(len(batch))
        out[i, sl] = class_scores(forward(batch), target).float()
    return out
