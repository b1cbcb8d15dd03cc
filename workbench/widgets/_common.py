"""Activation rows of the sparse-dictionary widgets (AtomBrowser, BlindspotComparer).

What this module held before is split along its ideas: :mod:`workbench.widgets.images` (tensors to
pixels), :mod:`~workbench.widgets.colormaps`, :mod:`~workbench.widgets.html` (Panel resources, live HTML,
assets), :mod:`~workbench.widgets.paging` and :mod:`~workbench.widgets.checks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


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


def module_device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def encode_rows(sae: torch.nn.Module, rows: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Codes (R, n_atoms) of rows (R, d), in eval mode (the module's mode is restored), on the CPU."""
    was_training, device = sae.training, module_device_of(sae)
    sae.eval()
    try:
        out = [
            sae.encode(rows[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(rows), batch_size)
        ]
    finally:
        sae.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, sae.n_atoms)


def token_map(values: torch.Tensor | np.ndarray, grid: tuple[int, int], skip: int = 0) -> np.ndarray:
    """One image's per-row values (rows_per_image,) laid out as its (h, w) grid (a class token skipped)."""
    v = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return v[skip:].reshape(grid).astype(np.float32)


def crop_box(
    token: int, grid: tuple[int, int], hw: tuple[int, int], frac: float = 0.5
) -> tuple[int, int, int, int]:
    """A square box ``(y0, x0, y1, x1)`` of side ``frac`` of the image around the centre of a grid cell,
    moved inside the image."""
    (gh, gw), (h, w) = grid, hw
    r, c = divmod(int(token), gw)
    cy, cx = (r + 0.5) * h / gh, (c + 0.5) * w / gw
    sh, sw = max(1, round(frac * h)), max(1, round(frac * w))
    y0 = int(min(max(0, round(cy - sh / 2)), h - sh))
    x0 = int(min(max(0, round(cx - sw / 2)), w - sw))
    return y0, x0, y0 + sh, x0 + sw
