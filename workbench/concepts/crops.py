"""Crops of an image batch for concept extraction (CRAFT): a regular grid, as Xplique cuts it, or random.

Every function returns ``(crops (M, C, p, p), positions (M, 3))`` where a position is ``(image index,
top, left)`` (int64), so a crop can always be traced back to its image and its pixels. Cutting is
batched: a strided view (``Tensor.unfold``) for the regular grid, one gather for arbitrary positions.
"""

from __future__ import annotations

import torch

from workbench._core.seeding import make_generator
from workbench._core.validation import check_images, check_int

__all__ = ["crop_at", "grid_crops", "grid_starts", "random_crops"]


def _check(images: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, int]:
    images = check_images(images, "images", channels=None, value_range=None)
    p = check_int(patch_size, "patch_size")
    h, w = images.shape[-2:]
    if p > min(h, w):
        raise ValueError(f"patch_size: {p} does not fit in images of size {h}x{w}; use at most {min(h, w)}")
    return images, p


def grid_starts(size: int, patch_size: int, stride: int, cover_edges: bool = False) -> torch.Tensor:
    """Start offsets of the crops along one side: ``0, stride, 2 stride, ...`` while a crop fits.

    With ``cover_edges`` a last start ``size - patch_size`` is added when the grid stops short of the
    edge (Xplique's unfold leaves those last pixels in no crop).
    """
    starts = list(range(0, size - patch_size + 1, stride))
    if cover_edges and starts[-1] != size - patch_size:
        starts.append(size - patch_size)
    return torch.tensor(starts, dtype=torch.long)


def crop_at(images: torch.Tensor, positions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The crops ``images[n, :, top:top+p, left:left+p]`` for positions (M, 3), in one gather."""
    positions = torch.as_tensor(positions, dtype=torch.long, device=images.device)
    offsets = torch.arange(patch_size, device=images.device)
    rows = (positions[:, 1, None] + offsets)[:, None, :, None]  # (M, 1, p, 1)
    cols = (positions[:, 2, None] + offsets)[:, None, None, :]  # (M, 1, 1, p)
    chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return images[positions[:, 0, None, None, None], chans, rows, cols]


def grid_crops(
    images: torch.Tensor, patch_size: int, stride: int | None = None, cover_edges: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops on a regular grid, ordered per image then row-major, as Xplique's CRAFT cuts them.

    Parameters
    ----------
    images
        (N, C, H, W) float images.
    patch_size
        Side p of the square crops (at most min(H, W)).
    stride
        Step between crops; default ``int(0.8 * patch_size)`` (CRAFT's and Xplique's overlap of 20 %).
    cover_edges
        False (Xplique's ``unfold``): the grid stops where the next crop would not fit, so the last
        ``(H - p) % stride`` rows and columns fall in no crop (rows 57..63 of a 64 px image with p = 32).
        True adds a last row and column of crops flush with the bottom and right edges.

    Returns
    -------
    crops : torch.Tensor
        (M, C, p, p), M = N x rows x cols; crop k of the default grid is image ``k // (rows cols)``.
    positions : torch.Tensor
        (M, 3) int64: image index, top, left.

    References
    ----------
    Fel et al., CRAFT: Concept Recursive Activation FacTorization for Explainability, CVPR 2023.
    """
    images, p = _check(images, patch_size)
    s = check_int(stride, "stride") if stride is not None else max(1, int(0.8 * p))
    n, _, h, w = images.shape
    tops = grid_starts(h, p, s, cover_edges)
    lefts = grid_starts(w, p, s, cover_edges)
    per_image = torch.stack(torch.meshgrid(tops, lefts, indexing="ij"), -1).reshape(-1, 2)
    index = torch.arange(n).repeat_interleave(len(per_image))
    positions = torch.cat([index[:, None], per_image.repeat(n, 1)], 1)
    if not cover_edges:
        # a strided view, then one copy: (N, C, rows, cols, p, p) -> (N rows cols, C, p, p)
        view = images.unfold(2, p, s).unfold(3, p, s)
        crops = view.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1], p, p)
    else:
        crops = crop_at(images, positions, p)
    return crops, positions


def random_crops(
    images: torch.Tensor, patch_size: int, n_per_image: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_image`` crops per image at uniformly drawn positions (every crop inside the image).

    Crops are ordered per image; the same seed gives the same positions. Returns ``(crops, positions)``
    as :func:`grid_crops`.
    """
    images, p = _check(images, patch_size)
    k = check_int(n_per_image, "n_per_image")
    n, _, h, w = images.shape
    gen = make_generator(seed)
    tops = torch.randint(0, h - p + 1, (n * k,), generator=gen)
    lefts = torch.randint(0, w - p + 1, (n * k,), generator=gen)
    positions = torch.stack([torch.arange(n).repeat_interleave(k), tops, lefts], 1)
    return crop_at(images, positions, p), positions
