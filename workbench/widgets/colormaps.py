"""Colormaps and colour ranges of attribution maps and atom heatmaps (no Matplotlib: Bokeh's palettes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Colormaps the widgets offer for attribution maps. "RdBu_r" is diverging (blue < 0 < red), for
#: signed maps centred at 0; the others are sequential, for positive maps.
COLORMAPS = ("RdBu_r", "viridis", "inferno", "turbo", "jet", "gray")
DIVERGING_COLORMAPS = frozenset({"RdBu_r"})

# mpl's jet, as its piecewise-linear segment data (x, value) per channel.
_JET = (
    ((0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)),
    ((0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)),
    ((0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)),
)


def _hex_to_rgb(colors: Sequence[str]) -> np.ndarray:
    return np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors], np.float64)


def _interp_lut(stops: np.ndarray) -> np.ndarray:
    t, x = np.linspace(0, 1, 256), np.linspace(0, 1, len(stops))
    return np.stack([np.interp(t, x, stops[:, k]) for k in range(3)], axis=1)


def colormap_lut(name: str) -> np.ndarray:
    """A colormap as a (256, 3) uint8 lookup table, low values first.

    ``name`` is one of :data:`COLORMAPS`; they match Matplotlib's colormaps of the same names
    (RdBu_r is the linear interpolation of ColorBrewer's 11 RdBu colours, as in Matplotlib) but
    come from Bokeh's palettes, so no Matplotlib is needed.
    """
    from bokeh import palettes

    if name == "RdBu_r":
        lut = _interp_lut(_hex_to_rgb(palettes.RdBu11))  # Bokeh's RdBu11 runs blue -> red
    elif name in ("viridis", "inferno", "turbo"):
        lut = _hex_to_rgb(getattr(palettes, name.capitalize() + "256"))
    elif name == "jet":
        t = np.linspace(0, 1, 256)
        lut = np.stack([np.interp(t, *zip(*seg)) * 255 for seg in _JET], axis=1)
    elif name == "gray":
        lut = np.repeat(np.linspace(0, 255, 256)[:, None], 3, axis=1)
    else:
        raise ValueError(f"colormap: expected one of {list(COLORMAPS)}, got {name!r}")
    return (np.clip(lut, 0, 255) + 0.5).astype(np.uint8)


def map_range(amap: torch.Tensor | np.ndarray, signed: bool | None = None, percentile: float = 99.5):
    """The colour range ``(vmin, vmax)`` of one attribution map.

    Signed maps (``signed=None``: any value < 0) get a range symmetric around 0, ``(-s, s)`` with
    ``s`` the ``percentile``-th percentile of ``|map|``, so 0 sits at the centre of a diverging
    colormap; unsigned maps get ``(0, s)`` with ``s`` the percentile of the map. A robust percentile
    instead of the maximum keeps a few extreme pixels (common in gradient maps) from washing out
    the rest: values beyond the range saturate. ``percentile=100`` uses the maximum. An all-zero
    map gets ``s = 1``.
    """
    arr = amap.detach().float().cpu().numpy() if isinstance(amap, torch.Tensor) else np.asarray(amap)
    arr = arr.astype(np.float64, copy=False)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile: expected a value in (0, 100], got {percentile}")
    if signed is None:
        signed = bool((arr < 0).any())
    s = float(np.percentile(np.abs(arr) if signed else np.maximum(arr, 0), percentile)) if arr.size else 0.0
    if not s > 0:
        s = float(np.abs(arr).max()) if arr.size and np.abs(arr).max() > 0 else 1.0
    return (-s, s) if signed else (0.0, s)


def colorize(
    amap: torch.Tensor | np.ndarray,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """A map (H, W) -> (H, W, 3) uint8 colours; ``vmin``/``vmax`` default to :func:`map_range`."""
    arr = amap.detach().float().cpu().numpy() if isinstance(amap, torch.Tensor) else np.asarray(amap, float)
    if arr.ndim != 2:
        raise ValueError(f"map: expected shape (H, W), got {arr.shape}")
    if vmin is None or vmax is None:
        lo, hi = map_range(arr)
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    span = (vmax - vmin) or 1.0
    idx = np.clip(np.rint((arr - vmin) / span * 255), 0, 255).astype(np.intp)
    return colormap_lut(cmap)[idx]


def map_strength(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """How far each value is from the map's zero, in [0, 1]: ``|v| / max(-vmin, vmax)`` for a range
    around 0 (signed maps), ``(v - vmin) / (vmax - vmin)`` otherwise."""
    arr = np.asarray(amap, np.float32)
    if vmin < 0 < vmax:
        out = np.abs(arr) / max(-vmin, vmax)
    else:
        out = (arr - vmin) / ((vmax - vmin) or 1.0)
    return np.clip(out, 0.0, 1.0)


#: Colormap of atom heatmaps (sequential: codes are >= 0 for every dictionary but matching pursuit).
ATOM_CMAP = "inferno"
