"""Image filters shared by perturbations, augmentation and metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, ``sigma`` in pixels, replicate-padded borders."""
    radius = max(1, int(3.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2.0 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _reflect101(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source indices of ``range(-before, n + after)`` under OpenCV's BORDER_REFLECT_101
    (``gfedcb|abcdefgh|gfedcba``: the edge pixel is not repeated), for any pad size."""
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Normalized ``size x size`` box filter of (N, C, H, W) images, as OpenCV's ``cv2.blur(x, (size, size))``.

    OpenCV's default anchor is the kernel centre ``size // 2``, so for an even size the window of
    pixel ``i`` is ``[i - size // 2, i + size - 1 - size // 2]`` (``[i - 5, i + 4]`` for 10), and its
    default border is BORDER_REFLECT_101 (``scipy.ndimage.uniform_filter(..., mode="mirror")`` with
    ``origin=0`` is the same filter). Borders reflect however small the image is.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"box blur size: expected a positive integer number of pixels, got {size}")
    if size == 1:
        return x
    before, after = size // 2, size - 1 - size // 2
    h, w = x.shape[-2:]
    x = x.index_select(-2, _reflect101(h, before, after, x.device))
    x = x.index_select(-1, _reflect101(w, before, after, x.device))
    # a running mean along each axis: cumulative sums in float64 keep the 1e-7 relative accuracy
    acc = x.to(torch.float64)
    for dim in (-2, -1):
        c = torch.nn.functional.pad(acc.cumsum(dim), (1, 0) if dim == -1 else (0, 0, 1, 0))
        n = c.shape[dim]
        acc = (c.narrow(dim, size, n - size) - c.narrow(dim, 0, n - size)) / size
    return acc.to(x.dtype)
