"""Activations of N images as rows, image after image, whatever form they come in.

:class:`ActivationRows` is what every consumer of per-image activation rows reads (the SAE statistics of
:func:`workbench.sae.atom_stats`, the dictionary widgets): an ActivationStore, a CNN map (N, C, H, W),
tokens (N, T, C) or rows (R, d), with the (h, w) layout of an image's rows when they form a map.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["ActivationRows"]


def _square_side(n: int) -> int | None:
    s = int(round(math.sqrt(n)))
    return s if s * s == n and s > 0 else None


class ActivationRows:
    """Activations of N images as rows, image after image: ``(N * rows_per_image, d)``.

    Accepts an :class:`~workbench.data.ActivationStore` (rows read lazily, a few images at a time), a
    CNN map (N, C, H, W) (rows ordered image, h, w: the store's ``pooling="none"`` layout), tokens
    (N, T, C), or rows (R, d) with ``rows_per_image``. ``grid`` is the (h, w) layout of an image's rows
    when they form a map: a square number of rows, or a square after a leading class token (``skip``
    = 1); None otherwise (pooled rows, odd token counts), and heatmaps are then not drawn.

    Parameters
    ----------
    acts
        The activations, as above.
    rows_per_image
        Rows per image for 2-D ``acts`` (default: R / ``n_images`` when that is given, else 1).
    n_images
        Expected number of images (checked).
    name
        Name of the argument in error messages.
    """

    def __init__(self, acts: Any, rows_per_image: int | None = None, n_images: int | None = None,
                 name: str = "acts"):  # fmt: skip
        self.store = None
        grid = None
        if hasattr(acts, "rows_per_image") and hasattr(acts, "shape") and not isinstance(acts, torch.Tensor):
            self.store = acts
            rpi, (rows, d) = int(acts.rows_per_image), acts.shape
            self.tensor = None
        else:
            if isinstance(acts, np.ndarray):
                acts = torch.from_numpy(acts)
            if not isinstance(acts, torch.Tensor) or acts.ndim not in (2, 3, 4):
                shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
                raise ValueError(f"{name}: expected an ActivationStore, a map (N, C, H, W), tokens (N, T, C) or"
                                 f" rows (R, d), got {shape}")  # fmt: skip
            if acts.ndim == 4:
                grid, rpi = (acts.shape[2], acts.shape[3]), acts.shape[2] * acts.shape[3]
                acts = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])
            elif acts.ndim == 3:
                rpi = acts.shape[1]
                acts = acts.reshape(-1, acts.shape[2])
            else:
                if rows_per_image is None:
                    rows_per_image = acts.shape[0] // n_images if n_images else 1
                rpi = int(rows_per_image)
            self.tensor = acts.detach()
            rows, d = acts.shape
        if rpi < 1 or rows % rpi:
            raise ValueError(f"{name}: {rows} rows are not a whole number of images of {rpi} rows each")
        self.rows_per_image, self.d, self.n_images = rpi, int(d), rows // rpi
        if n_images is not None and self.n_images != n_images:
            raise ValueError(f"{name}: activations of {self.n_images} images ({rows} rows of {rpi} per image),"
                             f" but {n_images} images were given")  # fmt: skip
        self.skip = 0
        if grid is None and rpi > 1:
            for skip in (0, 1):
                side = _square_side(rpi - skip)
                if side:
                    grid, self.skip = (side, side), skip
                    break
        self.grid = grid

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """The rows of images ``lo..hi-1`` as float32 (n * rows_per_image, d)."""
        a, b = lo * self.rows_per_image, hi * self.rows_per_image
        rows = self.store[a:b] if self.store is not None else self.tensor[a:b]
        return rows.float()

    def image_batches(self, batch_rows: int = 4096) -> Iterator[tuple[int, int]]:
        """(lo, hi) image ranges of about ``batch_rows`` rows (whole images)."""
        step = max(1, batch_rows // self.rows_per_image)
        for lo in range(0, self.n_images, step):
            yield lo, min(self.n_images, lo + step)
