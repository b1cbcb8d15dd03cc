"""Occlusion (Zeiler & Fergus 2014): slide a patch of baseline over the image, read the score drop.

Conventions (the same as Captum's ``Occlusion``, so the two agree to float precision):

- A window of ``patch_size`` moves by ``stride`` from the top-left corner; per dimension there are
  ``ceil((H - ph) / sh) + 1`` positions, so the last window may stick out of the image and is then
  cut at the border. Every pixel is covered by at least one window (``stride <= patch_size``).
- A window replaces **all channels** of its pixels by the baseline (never one channel alone; see
  Quantus issue 75).
- The drop of window w is ``f(x) - f(x with w occluded)``, with ``f`` the score of class ``y`` (raw
  logits for a workbench Model). The value of a pixel is the **mean** drop over the windows that
  cover it: Captum's sum of drops divided by the count of covering windows.

Defaults follow Xplique: patch 3, stride 3 (non-overlapping windows, so each pixel's value is the
drop of its one window).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workbench._core.progress import progress as _progress
from workbench._core.validation import check_baseline
from workbench.attribution._base import (
    Reduce,
    batched_scores,
    finite_maps,
    perturbed_scores,
    prepare,
    reduce_channels,
)
from workbench.attribution.registry import register


def pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    """An int or (h, w) pair of positive ints, as a (h, w) tuple, with a clear error otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"{name}: expected a positive int or a pair (h, w) of positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def window_grid(size: tuple[int, int], patch: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Number of window positions per dimension, Captum's ``ceil((H - ph) / sh) + 1``."""
    return tuple(math.ceil((s - p) / st) + 1 for s, p, st in zip(size, patch, stride))  # type: ignore[return-value]


def _spread(values: torch.Tensor, patch, stride, size) -> torch.Tensor:
    """Sum of per-window values (N, gh, gw) over the windows that cover each pixel -> (N, H, W)."""
    kernel = torch.ones(1, 1, *patch, dtype=values.dtype, device=values.device)
    out = F.conv_transpose2d(values[:, None], kernel, stride=stride)
    return out[:, 0, : size[0], : size[1]]


@register(
    "occlusion",
    paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
)
def occlusion(
    model,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    patch_size: int | tuple[int, int] = 3,
    stride: int | tuple[int, int] = 3,
    baseline: float | torch.Tensor = 0.0,
    reduce: Reduce = "mean",
    batch_size: int = 64,
    upsample: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Occlusion maps: the mean score drop over the windows of baseline that cover each pixel.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model.
    y
        Target classes (N,) or one int for all images.
    patch_size
        Window size, an int or (h, w). Default 3, as in Xplique.
    stride
        Window step, an int or (h, w), at most ``patch_size`` so every pixel is covered. Default 3
        (Xplique's default: non-overlapping windows; Captum's default is 1).
    baseline
        What an occluded pixel becomes: a number (0 = black in pixel space), a colour (C, 1, 1) or
        (1, C, 1, 1), one image (C, H, W) or (1, C, H, W), or one image per input (N, C, H, W) (a
        blurred copy of ``x``, ...); a tensor or a NumPy array. These are the shapes every baseline
        argument accepts (:func:`workbench._core.validation.check_baseline`); others are refused
        rather than broadcast.
    reduce
        Occlusion removes all channels at once, so the attribution is the same on every channel:
        "mean" (default) gives the score drop itself (for a linear model with patch 1, stride 1:
        ``sum_c w_c x_c`` per pixel); "sum" gives C times it (Captum's map summed over channels);
        "max_abs" its absolute value; "none" returns (N, C, H, W) with the drop on every channel.
    batch_size
        Occluded images per forward pass.
    upsample
        True: pixel maps (N, H, W). False: the raw drop of each window, (N, gh, gw) with
        ``gh = ceil((H - ph) / sh) + 1`` (window (i, j) starts at row ``i*sh``, column ``j*sw``),
        reduced over channels the same way.
    progress
        Show a progress bar over the images.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 maps on the model's device ((N, C, H, W) for ``reduce="none"``).

    Notes
    -----
    Forward passes: ``ceil(N / batch_size)`` for the clean scores, plus ``ceil(gh * gw / batch_size)``
    per image, each with at most ``batch_size`` inputs. Peak memory holds one batch of occluded images.
    """
    forward, x, y = prepare(model, x, y)
    n, c, h, w = x.shape
    patch, step = pair("patch_size", patch_size), pair("stride", stride)
    if patch[0] > h or patch[1] > w:
        raise ValueError(f"patch_size: {patch} is larger than the images ({h}, {w})")
    if step[0] > patch[0] or step[1] > patch[1]:
        raise ValueError(
            f"stride: {step} is larger than patch_size {patch}; some pixels would never be occluded"
        )
    if reduce not in ("sum", "mean", "max_abs", "none"):
        raise ValueError(f"reduce: expected one of ('sum', 'mean', 'max_abs', 'none'), got {reduce!r}")
    base = check_baseline(baseline, x, pixel_range=False)
    gh, gw = window_grid((h, w), patch, step)
    n_windows = gh * gw
    device = x.device
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)

    clean = batched_scores(forward, x, y, batch_size)
    drops = torch.empty(n, n_windows, device=device)
    for i in _progress(range(n), enabled=progress, desc="occlusion", total=n):
        xi, bi = x[i], base[i]

        def make_inputs(sl: slice, xi=xi, bi=bi) -> torch.Tensor:
            idx = torch.arange(sl.start, sl.stop, device=device)
            r0 = (idx // gw * step[0])[:, None]
            c0 = (idx % gw * step[1])[:, None]
            in_rows = (rows >= r0) & (rows < r0 + patch[0])  # (B, H)
            in_cols = (cols >= c0) & (cols < c0 + patch[1])  # (B, W)
            occluded = in_rows[:, :, None] & in_cols[:, None, :]
            return torch.where(occluded[:, None], bi, xi)

        drops[i] = clean[i] - perturbed_scores(forward, make_inputs, n_windows, y[i], batch_size, device)

    grid = drops.view(n, gh, gw)
    if upsample:
        maps = _spread(grid, patch, step, (h, w)) / _spread(torch.ones_like(grid[:1]), patch, step, (h, w))
    else:
        maps = grid
    maps = finite_maps(maps.float())
    return reduce_channels(maps[:, None].expand(-1, c, -1, -1), reduce).contiguous()
