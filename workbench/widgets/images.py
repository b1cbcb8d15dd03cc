"""Tensors to pixels: image encoding (PNG, data URIs), mask contours, map overlays and atom tiles.

Everything that turns tensors into pixels for display lives here, so every widget shows images the
same way. Images are (3, H, W) float in [0, 1], tensors or NumPy arrays.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import torch

from workbench.widgets.colormaps import ATOM_CMAP, colorize, map_range, map_strength


def to_rgb_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image (3, H, W) float in [0, 1] -> (H, W, 3) uint8 (values outside [0, 1] are clipped)."""
    arr = (
        image.detach().float().cpu().numpy()
        if isinstance(image, torch.Tensor)
        else np.asarray(image, np.float32)
    )
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"image: expected shape (3, H, W) or (1, H, W), got {arr.shape}")
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return (np.clip(arr.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_rgba(image: torch.Tensor | np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """One image (3, H, W) float in [0, 1] -> (H, W, 4) uint8 RGBA (opaque unless ``alpha`` (H, W) in [0, 1])."""
    rgb = to_rgb_uint8(image)
    a = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    if alpha is not None:
        a = (np.clip(np.asarray(alpha, np.float32), 0, 1)[..., None] * 255 + 0.5).astype(np.uint8)
    return np.concatenate([rgb, a], axis=-1)


def rgba_to_uint32(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W) uint32, flipped vertically: the layout of Bokeh's ``image_rgba``."""
    return np.ascontiguousarray(np.flipud(rgba)).view(np.uint32)[..., 0]


def _as_pixels(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Accept (3, H, W) float [0, 1] tensors/arrays or already converted (H, W, 3|4) uint8 arrays."""
    if (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[-1] in (3, 4)
    ):
        return image
    return to_rgb_uint8(image)


def png_bytes(image: torch.Tensor | np.ndarray, size: int | None = None, smooth: bool | None = None) -> bytes:
    """Encode an image as PNG, optionally resized so that its longer side is ``size`` pixels.

    ``image`` is (3, H, W) float in [0, 1] or (H, W, 3|4) uint8. Upscaling uses nearest neighbour
    (pixels stay crisp, which matters for small synthetic images) unless ``smooth=True``;
    downscaling uses a Lanczos filter.
    """
    from PIL import Image

    pixels = _as_pixels(image)
    pil = Image.fromarray(pixels)
    if size is not None:
        h, w = pixels.shape[:2]
        scale = size / max(h, w)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        if new != (w, h):
            up = scale > 1
            resample = Image.Resampling.LANCZOS if not up or smooth else Image.Resampling.NEAREST
            pil = pil.resize(new, resample)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def png_data_uri(
    image: torch.Tensor | np.ndarray, size: int | None = None, smooth: bool | None = None
) -> str:
    """``data:image/png;base64,...`` for an ``<img src>`` (see :func:`png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, size, smooth)).decode("ascii")


# ---------------------------------------------------------------- masks


def _shift_or(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1) square, by shifted ORs (no SciPy needed)."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            out[yd, xd] |= mask[ys, xs]
    return out


def mask_contour(mask: np.ndarray, thickness: int = 1, inside: bool = True) -> np.ndarray:
    """The boundary of a boolean mask (H, W): pixels of the mask next to the outside (``inside=True``)
    or pixels outside next to the mask (``inside=False``), ``thickness`` pixels wide."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), got {mask.shape}")
    if inside:
        return mask & _shift_or(~mask, thickness)  # the mask minus its erosion
    return _shift_or(mask, thickness) & ~mask


def contour_overlay(
    image: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None,
    scale: int = 4,
    color: Sequence[int] = (255, 255, 255),
    outline: Sequence[int] | None = (0, 0, 0),
    thickness: int | None = None,
) -> np.ndarray:
    """Draw the contour of ``mask`` on ``image``, upsampled by ``scale`` so the line is thin and crisp.

    Parameters
    ----------
    image
        (3, H, W) float in [0, 1].
    mask
        (H, W) bool; None returns the upsampled image unchanged.
    scale
        Integer upsampling factor (nearest neighbour) applied before drawing.
    color, outline
        The line is ``color`` inside the mask and ``outline`` just outside it, so it stays visible on
        light and dark backgrounds alike (``outline=None`` draws a single line).
    thickness
        Width of each of the two lines in output pixels (default ``max(1, scale // 2)``).

    Returns
    -------
    np.ndarray
        (H * scale, W * scale, 3) uint8.
    """
    rgb = to_rgb_uint8(image)
    scale = max(1, int(scale))
    rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    if mask is None:
        return rgb
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.astype(bool)
    if m.shape != rgb.shape[:2] and (m.shape[0] * scale, m.shape[1] * scale) != rgb.shape[:2]:
        raise ValueError(
            f"mask: expected shape {rgb.shape[0] // scale, rgb.shape[1] // scale}, got {m.shape}"
        )
    if m.shape != rgb.shape[:2]:
        m = m.repeat(scale, 0).repeat(scale, 1)
    t = thickness or max(1, scale // 2)
    out = rgb.copy()
    if outline is not None:
        out[mask_contour(m, t, inside=False)] = np.asarray(outline, np.uint8)
    out[mask_contour(m, t, inside=True)] = np.asarray(color, np.uint8)
    return out


def map_overlay(
    image: torch.Tensor | np.ndarray,
    amap: torch.Tensor | np.ndarray,
    cmap: str = "RdBu_r",
    opacity: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    smooth: bool = False,
    fade: bool = False,
) -> np.ndarray:
    """An attribution map drawn over its image: (H, W, 3) uint8.

    ``image`` is (3, H, W) float in [0, 1]; ``amap`` is (h, w), upsampled to (H, W) when smaller
    (nearest neighbour, or bilinear with ``smooth=True``, before colouring). The colours of
    :func:`colorize` are blended over the image with ``opacity`` (0: image only, 1: map only);
    with ``fade=True`` each pixel's opacity is also scaled by :func:`map_strength`, so the image
    shows through where the map is near its zero.
    """
    rgb = to_rgb_uint8(image).astype(np.float32)
    m = (
        amap.detach().float().cpu()
        if isinstance(amap, torch.Tensor)
        else torch.as_tensor(np.asarray(amap, np.float32))
    )
    if m.ndim != 2:
        raise ValueError(f"map: expected shape (H, W), got {tuple(m.shape)}")
    if vmin is None or vmax is None:
        lo, hi = map_range(m)
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    if tuple(m.shape) != rgb.shape[:2]:
        mode = {"mode": "bilinear", "align_corners": False} if smooth else {"mode": "nearest"}
        m = torch.nn.functional.interpolate(m[None, None], size=rgb.shape[:2], **mode)[0, 0]
    colors = colorize(m, cmap, vmin, vmax).astype(np.float32)
    a = float(np.clip(opacity, 0.0, 1.0))
    if fade:
        a = a * map_strength(m.numpy(), vmin, vmax)[..., None]
    return (rgb * (1 - a) + colors * a + 0.5).astype(np.uint8)


def contour_layer(
    mask: torch.Tensor | np.ndarray,
    scale: int = 4,
    color: Sequence[int] = (255, 255, 255),
    outline: Sequence[int] | None = (0, 0, 0),
    thickness: int | None = None,
) -> np.ndarray:
    """The contour of a mask (H, W) alone, as a transparent (H * scale, W * scale, 4) uint8 RGBA layer
    to stack over an image (same lines as :func:`contour_overlay`: ``color`` inside, ``outline`` outside)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), got {m.shape}")
    scale = max(1, int(scale))
    m = m.astype(bool).repeat(scale, 0).repeat(scale, 1)
    t = thickness or max(1, scale // 2)
    out = np.zeros(m.shape + (4,), np.uint8)
    if outline is not None:
        out[mask_contour(m, t, inside=False)] = (*outline, 255)
    out[mask_contour(m, t, inside=True)] = (*color, 255)
    return out


def draw_box(rgb: np.ndarray, box: tuple[int, int, int, int], scale: int = 1) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) uint8 with a white box and a dark outline (``box`` in unscaled pixels)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    y0, x0, y1, x1 = (v * scale for v in box)
    y1, x1 = min(h, y1) - 1, min(w, x1) - 1
    for t, color in ((0, (255, 255, 255)), (1, (0, 0, 0))):
        a0, b0, a1, b1 = y0 + t, x0 + t, y1 - t, x1 - t
        if a1 <= a0 or b1 <= b0:
            continue
        out[a0, b0 : b1 + 1] = out[a1, b0 : b1 + 1] = color
        out[a0 : a1 + 1, b0] = out[a0 : a1 + 1, b1] = color
    return out


def heat_tile(
    image: torch.Tensor, amap: np.ndarray | torch.Tensor | None, opacity: float, vmax: float, size: int = 96,
    box: tuple[int, int, int, int] | None = None, signed: bool = False,
) -> str:  # fmt: skip
    """Data URI of an image with an atom heatmap over it (:data:`ATOM_CMAP`, range [0, ``vmax``], faded where
    the atom is off) and an optional crop box, resized so its longer side is ``size``. A ``signed`` map is
    drawn in the diverging "RdBu_r" on [-``vmax``, ``vmax``] instead, faded near 0."""
    h, w = image.shape[-2:]
    scale = max(1, int(math.ceil(size / max(h, w))))
    if amap is None:
        rgb = to_rgb_uint8(image)
    else:
        v = max(vmax, 1e-12)
        rgb = map_overlay(
            image, amap, cmap="RdBu_r" if signed else ATOM_CMAP, opacity=opacity, vmin=-v if signed else 0.0,
            vmax=v, fade=True,
        )  # fmt: skip
    rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    if box is not None:
        rgb = draw_box(rgb, box, scale)
    return png_data_uri(rgb, size=size)


def crop_tile(image: torch.Tensor, box: tuple[int, int, int, int], size: int = 96) -> str:
    """Data URI of the region ``box`` of an image (3, H, W), upscaled to ``size`` (nearest neighbour)."""
    y0, x0, y1, x1 = box
    return png_data_uri(to_rgb_uint8(image[:, y0:y1, x0:x1]), size=size)


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


#: How a feature visualization's transparency map can be shown (see :func:`transparency_overlay`).
TRANSPARENCY_MODES = ("none", "alpha", "heat")


def transparency_overlay(
    image: torch.Tensor | np.ndarray, transparency: torch.Tensor | np.ndarray | None, mode: str = "alpha",
    opacity: float = 0.6,
) -> np.ndarray:  # fmt: skip
    """A feature visualization with its transparency map (MACO, Fel et al., NeurIPS 2023): uint8 pixels.

    ``image`` is (3, H, W) in [0, 1]; ``transparency`` (1, H, W) or (H, W) >= 0, the accumulated
    |gradient| of the objective (where the optimization kept acting). ``mode`` is one of
    :data:`TRANSPARENCY_MODES`: ``"none"`` gives the image (H, W, 3); ``"alpha"`` the image with the map
    as its alpha channel (H, W, 4), scaled to [0, 1] over the map's robust range
    (:func:`~workbench.widgets.colormaps.map_range`, 99.5th percentile) as the paper shows it;
    ``"heat"`` the map drawn over the image (H, W, 3) in :data:`ATOM_CMAP`, faded where it is low.
    """
    if mode not in TRANSPARENCY_MODES:
        raise ValueError(f"overlay: expected one of {TRANSPARENCY_MODES}, got {mode!r}")
    if mode == "none" or transparency is None:
        return to_rgb_uint8(image)
    t = transparency.detach().float().cpu().numpy() if isinstance(transparency, torch.Tensor) else np.asarray(transparency, np.float32)  # fmt: skip
    t = t[0] if t.ndim == 3 and t.shape[0] == 1 else t
    if t.shape != tuple(image.shape[-2:]):
        raise ValueError(
            f"transparency: expected shape (1, {image.shape[-2]}, {image.shape[-1]}), got {t.shape}"
        )
    vmin, vmax = map_range(t, signed=False)
    if mode == "alpha":
        return to_rgba(image, map_strength(t, vmin, vmax))
    return map_overlay(image, t, cmap=ATOM_CMAP, opacity=opacity, vmin=vmin, vmax=vmax, fade=True)
