"""Localization: does an attribution map point at the object? Scored against ground-truth masks
(PlantedShapes' ``object_masks``, or any segmentation).

Three views of the same question, each batched over images:

- :func:`energy_in_mask`: the share of the map's positive mass inside the mask (Wang et al.,
  "Score-CAM", CVPR-W 2020, "energy-based pointing game"). A uniform map scores the mask's area.
- :func:`mask_auc`: the ROC-AUC of the map's values as a detector of mask pixels (a ranking measure:
  blind to the map's scale, so a smooth map is not punished for spreading low values outside).
- :func:`pointing_game`: whether the map's maximum falls in the mask (Zhang et al., "Top-down neural
  attention by excitation backprop", ECCV 2016; they allow a 15 px tolerance at 224 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench._core.validation import as_tensor, check_maps
from workbench.metrics.registry import METRICS

__all__ = ["energy_in_mask", "mask_auc", "pointing_game"]


def _check(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) float maps and (N, H, W) bool masks of the same images, or a clear error.

    Masks are never broadcast: a mask set for other images (all 64 of a dataset's masks against the
    maps of 4 of its images) is refused with both shapes, not scored against the wrong objects.
    """
    maps = check_maps(maps)
    masks = as_tensor(masks)
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected a tensor (N, H, W), got {shape}")
    if masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"masks: got {masks.shape[0]} masks, shape {tuple(masks.shape)}, for {maps.shape[0]} maps, shape"
            f" {tuple(maps.shape)}; pass the masks of the same images (for the first {maps.shape[0]} images"
            f" of a dataset: masks[:{maps.shape[0]}])"
        )
    if masks.shape != maps.shape:
        raise ValueError(
            f"masks: expected shape {tuple(maps.shape)} to match the maps, shape {tuple(maps.shape)}, got"
            f" {tuple(masks.shape)} (upsample grid maps to the image size first)"
        )
    if masks.dtype != torch.bool:
        values = masks.unique()
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("masks: expected binary masks (bool or 0/1 values)")
        masks = masks.bool()
    return maps, masks.to(maps.device)


@METRICS.register(
    "energy_in_mask",
    paper="Wang et al., Score-CAM: Score-Weighted Visual Explanations for CNNs, CVPR-W 2020 (energy-based pointing game)",
)
def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive mass inside the mask: ``sum(max(m, 0) * mask) / sum(max(m, 0))``.

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) maps (channels averaged). Negative values count as zero.
    masks
        (N, H, W) binary object masks.

    Returns
    -------
    torch.Tensor
        (N,) values in [0, 1]; 0 for a map with no positive mass (it points nowhere).
    """
    maps, masks = _check(maps, masks)
    pos = maps.clamp(min=0)
    total = pos.sum((1, 2))
    inside = (pos * masks).sum((1, 2))
    return torch.where(
        total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total)
    )


@METRICS.register(
    "mask_auc",
    paper="Hanley & McNeil, The Meaning and Use of the Area under a ROC Curve, Radiology 1982 (map values as a mask-pixel detector)",
)
def mask_auc(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """ROC-AUC of each map's values as a score separating mask pixels from background pixels.

    The Mann-Whitney form: the probability that a random object pixel has a higher value than a random
    background pixel, ties counted one half (so a constant map scores exactly 0.5). Equal to
    scikit-learn's ``roc_auc_score(mask.flatten(), map.flatten())``.

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) maps (channels averaged); signed values are ranked as they are.
    masks
        (N, H, W) binary masks, each with at least one object and one background pixel.

    Returns
    -------
    torch.Tensor
        (N,) AUCs in [0, 1] (1: every object pixel outranks every background pixel).
    """
    maps, masks = _check(maps, masks)
    values = maps.flatten(1).double()
    positive = masks.flatten(1)
    n_pos = positive.sum(1).double()
    n_neg = positive.shape[1] - n_pos
    if bool(((n_pos == 0) | (n_neg == 0)).any()):
        bad = torch.nonzero((n_pos == 0) | (n_neg == 0))[:, 0].tolist()
        raise ValueError(f"masks: images {bad} have an empty or full mask, where the ROC-AUC is undefined")
    ordered = values.sort(dim=1).values
    # mid-ranks (1-based) of tied values: the mean of the first and last position of their run
    left = torch.searchsorted(ordered, values, side="left")
    right = torch.searchsorted(ordered, values, side="right")
    ranks = (left + right + 1).double() / 2
    rank_sum = (ranks * positive).sum(1)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()


@METRICS.register(
    "pointing_game",
    paper="Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, Top-down Neural Attention by Excitation Backprop, ECCV 2016",
)
def pointing_game(maps: torch.Tensor, masks: torch.Tensor, *, tolerance: int = 0) -> torch.Tensor:
    """Whether each map's maximum lies in the mask, or within ``tolerance`` pixels of it.

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) maps (channels averaged). Ties for the maximum: the first in
        row-major order counts (a constant map points at the top-left pixel).
    masks
        (N, H, W) binary masks.
    tolerance
        Radius in pixels of the square dilation of the mask (Zhang et al. use 15 at 224 px); default 0.

    Returns
    -------
    torch.Tensor
        (N,) bool hits; ``.float().mean()`` is the pointing-game accuracy.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance: expected an integer >= 0 (pixels), got {tolerance!r}")
    maps, masks = _check(maps, masks)
    target = masks.float()
    if tolerance:
        target = F.max_pool2d(target[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    peak = maps.flatten(1).argmax(1)
    return target.flatten(1).gather(1, peak[:, None])[:, 0] > 0
