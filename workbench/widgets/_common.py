"""Helpers shared by the widgets: image encoding, mask contours, and the one Panel extension call.

Everything that turns tensors into pixels for display lives here, so every widget shows images the
same way. Only ``workbench.widgets`` imports this module (it imports Panel).

Resources are always inline (``pn.extension(inline=True)``): the widgets render offline, in
JupyterLab, under ``panel serve`` and in an exported HTML file, and nothing is fetched from a CDN.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import param
import torch
from panel.custom import JSComponent

_EXTENSION_LOADED = False


def ensure_extension(force: bool = False) -> None:
    """Load Panel's (and HoloViews') JavaScript inline, once per process.

    ``workbench.widgets`` calls this on import, so users never need ``pn.extension()`` themselves.
    In a notebook the resources are published as the output of the cell that imports the widgets
    (several MB, hence only once). Call it with ``force=True`` after reloading the browser page
    of a running kernel, which loses the JavaScript the kernel published before.

    Widget modules never call ``pn.extension()`` or ``hv.extension()`` themselves (the latter loads
    from a CDN unless told otherwise); HoloViews is imported here first, so its resources are
    inlined by the same call.
    """
    global _EXTENSION_LOADED
    if _EXTENSION_LOADED and not force:
        return
    import holoviews  # noqa: F401  (imported first so pn.extension loads its resources inline too)
    import panel as pn

    pn.extension(inline=True)
    _EXTENSION_LOADED = True


class LiveHTML(JSComponent):
    """An HTML fragment whose ``object`` can change while it is displayed.

    Use it instead of ``pn.pane.HTML`` for content that updates. In a notebook, Panel inlines the
    stylesheets of a pane when it is first displayed but sends their CDN URLs again with every
    later update of the pane (Panel 1.9), so an updated ``pn.pane.HTML`` makes the browser fetch
    CSS from cdn.holoviz.org. A component like this one only sends the changed ``object``.
    The HTML is inserted as is: escape any text that does not come from the widget itself.
    """

    object = param.String(default="", doc="The HTML to show.")

    _esm = """
    export function render({ model, el }) {
      const root = document.createElement("div");
      root.className = "wb-live-html";
      const draw = () => { root.innerHTML = model.object; };
      draw();
      model.on("object", draw);
      el.appendChild(root);
    }
    """


def widget_kwargs(widget_type: type, **kwargs):
    """Panel widget keywords across versions: ``label``/``color``/``variant`` (Panel >= 1.8)
    fall back to ``name``/``button_type``/``button_style`` where the widget lacks the new names."""
    old = {"label": "name", "color": "button_type", "variant": "button_style"}
    return {k if k in widget_type.param else old.get(k, k): v for k, v in kwargs.items()}


# ---------------------------------------------------------------- tensors -> pixels


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


def img_tag(uri: str, alt: str, width: int | None = None, css_class: str = "", pixelated: bool = True) -> str:
    """An ``<img>`` element for a data URI; the alt text names the image for screen readers and tests."""
    style = "image-rendering: pixelated;" if pixelated else ""
    w = f' width="{int(width)}"' if width else ""
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{w}{cls} style="{style} display:block;">'


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


# ---------------------------------------------------------------- colormaps and map overlays

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


def map_strength(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """How far each value is from the map's zero, in [0, 1]: ``|v| / max(-vmin, vmax)`` for a range
    around 0 (signed maps), ``(v - vmin) / (vmax - vmin)`` otherwise."""
    arr = np.asarray(amap, np.float32)
    if vmin < 0 < vmax:
        out = np.abs(arr) / max(-vmin, vmax)
    else:
        out = (arr - vmin) / ((vmax - vmin) or 1.0)
    return np.clip(out, 0.0, 1.0)


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


def check_atom(atom: Any, n_atoms: int) -> int | None:
    """An atom id for a dictionary widget's ``select``: None, or an int in [0, n_atoms); clear errors otherwise."""
    if atom is None:
        return None
    if isinstance(atom, bool) or not isinstance(atom, int | np.integer):
        raise ValueError(f"atom: expected an integer atom id, got {atom!r}")
    if not 0 <= int(atom) < n_atoms:
        raise IndexError(f"atom {atom} is out of range: the dictionary has atoms 0..{n_atoms - 1}")
    return int(atom)


def check_index(index: Any, n: int) -> int:
    """An image index for ``select``: an int (or 1-element integer tensor) in [0, n); clear errors otherwise."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer | torch.Tensor):
        raise ValueError(f"select: expected an integer index, got {type(index).__name__} {index!r}")
    if isinstance(index, torch.Tensor):
        if index.numel() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(
                f"select: expected an integer index, got a tensor of shape {tuple(index.shape)}"
                f" and dtype {index.dtype}"
            )
        index = int(index.item())
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"select: index {index} is out of range for {n} images (valid: 0..{n - 1})")
    return index


def paging_controls(previous_page, next_page, css: str):
    """The Prev / Next buttons and the page-info pane both viewers share, wired to their callbacks."""
    import panel as pn

    buttons = []
    for text, cls, callback in (
        ("\u25c0 Prev", "wb-prev", previous_page),
        ("Next \u25b6", "wb-next", next_page),
    ):
        button = pn.widgets.Button(
            **widget_kwargs(pn.widgets.Button, label=text), width=80, margin=(5, 5), css_classes=[cls]
        )
        button.on_click(lambda _e, callback=callback: callback())
        buttons.append(button)
    info = LiveHTML(object="", stylesheets=[css], margin=(5, 8), css_classes=["wb-pageinfo-pane"])
    return buttons[0], buttons[1], info


# ---------------------------------------------------------------- sparse dictionaries (AtomBrowser, BlindspotComparer)

#: Colormap of atom heatmaps (sequential: codes are >= 0 for every dictionary but matching pursuit).
ATOM_CMAP = "inferno"


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
    image: torch.Tensor, amap: np.ndarray | None, opacity: float, vmax: float, size: int = 96,
    box: tuple[int, int, int, int] | None = None,
) -> str:  # fmt: skip
    """Data URI of an image with an atom heatmap over it (:data:`ATOM_CMAP`, range [0, ``vmax``], faded where
    the atom is off) and an optional crop box, resized so its longer side is ``size``."""
    h, w = image.shape[-2:]
    scale = max(1, int(math.ceil(size / max(h, w))))
    if amap is None:
        rgb = to_rgb_uint8(image)
    else:
        rgb = map_overlay(
            image, amap, cmap=ATOM_CMAP, opacity=opacity, vmin=0.0, vmax=max(vmax, 1e-12), fade=True
        )
    rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    if box is not None:
        rgb = draw_box(rgb, box, scale)
    return png_data_uri(rgb, size=size)


def crop_tile(image: torch.Tensor, box: tuple[int, int, int, int], size: int = 96) -> str:
    """Data URI of the region ``box`` of an image (3, H, W), upscaled to ``size`` (nearest neighbour)."""
    y0, x0, y1, x1 = box
    return png_data_uri(to_rgb_uint8(image[:, y0:y1, x0:x1]), size=size)


def svg_histogram(
    counts: Sequence[float], lo: float, hi: float, width: int = 300, height: int = 110, label: str = "",
    color: str = "#1565c0",
) -> str:  # fmt: skip
    """An inline SVG bar chart of ``counts`` over equal bins of [lo, hi], with the axis ends and max count."""
    from workbench.widgets.metrics_panel import fmt

    c = np.asarray(counts, np.float64)
    pl, pr, pt, pb = 34, 8, 6, 30
    iw, ih = width - pl - pr, height - pt - pb
    top = c.max() if c.size and c.max() > 0 else 1.0
    bw = iw / max(1, c.size)
    bars = "".join(
        f'<rect x="{pl + k * bw + 0.5:.1f}" y="{pt + ih - v / top * ih:.1f}" width="{max(0.5, bw - 1):.1f}"'
        f' height="{v / top * ih:.1f}" fill="{color}"><title>{fmt(lo + k * (hi - lo) / c.size)}'
        f"\u2013{fmt(lo + (k + 1) * (hi - lo) / c.size)}: {int(v)}</title></rect>"
        for k, v in enumerate(c)
    )
    return (
        f'<svg class="wb-hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{html.escape(label or "histogram")}">'
        f'<line x1="{pl}" y1="{pt + ih}" x2="{pl + iw}" y2="{pt + ih}" stroke="#9aa0a6"/>'
        f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ih}" stroke="#9aa0a6"/>{bars}'
        f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end">{int(top)}</text>'
        f'<text x="{pl - 4}" y="{pt + ih}" text-anchor="end">0</text>'
        f'<text x="{pl}" y="{pt + ih + 13}" text-anchor="start">{fmt(lo)}</text>'
        f'<text x="{pl + iw}" y="{pt + ih + 13}" text-anchor="end">{fmt(hi)}</text>'
        f'<text x="{pl + iw / 2}" y="{pt + ih + 26}" text-anchor="middle">{html.escape(label)}</text></svg>'
    )
