"""Random occlusion augmentation: train on the perturbations that attribution methods apply.

Perturbation-based attribution (RISE, Sobol, HSIC, occlusion) and the deletion/insertion metrics
replace parts of an image by black, a blur or the mean, and read how the score moves. A network
that never saw such images reacts to the perturbation itself: our first zoo CNN called an all-black
image "triangle" with probability 0.9998, so black cells anywhere moved its score and the maps
spread over the background. Training with the same kind of masks makes them in distribution
(as ROAR retrains on images with pixels removed, Hooker et al., NeurIPS 2019): the score then moves when the evidence is hidden, not when the background changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.attribution.perturbations import gaussian_blurring, inpainting

GRIDS = (2, 3, 4, 6, 7, 8, 11)  # covers RISE (7), Sobol/HSIC (8) and coarser/finer blocks
FILLS = ("black", "black", "blur", "mean")  # black twice: the default baseline of most methods


def random_occlusion(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Occlude random grid cells of a random fraction ``p`` of the images in ``x``.

    Each batch draws one grid size from :data:`GRIDS`, one fill from :data:`FILLS` (black, a
    Gaussian blur of the image, or its per-channel mean) and one upsampling (nearest, or
    bilinear with a random shift as in RISE). Each chosen image keeps its cells with its own
    probability drawn uniformly in [0.1, 0.9]; labels are left unchanged, so an image whose
    object is hidden teaches the network to be unsure rather than to read the fill.

    Parameters
    ----------
    x
        (N, C, H, W) images in [0, 1].
    p
        Fraction of the batch to occlude, in [0, 1].
    generator
        CPU generator all random draws come from (reproducible training).
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    choose = rand(n) < p
    g = GRIDS[int(torch.randint(len(GRIDS), (1,), generator=generator))]
    fill = FILLS[int(torch.randint(len(FILLS), (1,), generator=generator))]
    keep = 0.1 + 0.8 * rand(n, 1, 1, 1)
    cells = (rand(n, 1, g + 1, g + 1) < keep).to(x.dtype)
    ch, cw = -(-h // g), -(-w // g)
    if bool(torch.rand(1, generator=generator) < 0.5):
        up = F.interpolate(cells, size=((g + 1) * ch, (g + 1) * cw), mode="bilinear", align_corners=False)
        dy, dx = (int(v) for v in torch.randint(0, ch, (2,), generator=generator))
        mask = up[:, :, dy : dy + h, dx : dx + w]
    else:
        mask = F.interpolate(cells, size=((g + 1) * ch, (g + 1) * cw), mode="nearest")[:, :, :h, :w]
    # black and blur are the attribution perturbations themselves (Sobol/HSIC/RISE "inpainting" and
    # "blurring"); the mean colour fill has no twin there ("amplitude" also boosts kept cells)
    if fill == "black":
        occluded = inpainting(x, mask)
    elif fill == "blur":
        occluded = gaussian_blurring(x, mask, sigma=max(h, w) / 16)
    else:
        occluded = x * mask + x.mean((2, 3), keepdim=True) * (1 - mask)
    return torch.where(choose[:, None, None, None], occluded, x)
