"""What the AttributionViewer sends to its :class:`~workbench.widgets.map_grid.MapGrid` views, cached.

Each image once as a PNG, each map as its raw float32 values (base64; block means above ``limit`` a
side) with its colour range, and the object mask contour as a transparent PNG layer. A viewer asks
again for the same payload whenever a row is redrawn; an LRU cache keeps the last few thousand.
"""

from __future__ import annotations

import base64
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workbench.widgets.colormaps import map_range
from workbench.widgets.images import contour_layer, png_data_uri

_CACHE_SIZE = 2048


class MapPayloads:
    """The payloads of one set of images and maps (see the module docs).

    Parameters
    ----------
    images
        (N, 3, H, W) float in [0, 1], on the CPU.
    maps, signed
        ``{method: (N, h, w) float32}`` and whether each method is signed (validated by
        :func:`~workbench.widgets.checks.check_maps`).
    masks
        (N, H, W) bool, or None.
    clip_percentile
        The percentile of |map| that sets a map's colour range (:func:`~workbench.widgets.colormaps.map_range`).
    detail_size
        Width of a detail panel in screen pixels (the contour is drawn at that scale).
    """

    def __init__(
        self,
        images: torch.Tensor,
        maps: Mapping[str, torch.Tensor],
        signed: Mapping[str, bool],
        masks: np.ndarray | None,
        clip_percentile: float,
        detail_size: int,
    ):
        self.images, self.maps, self.signed, self.masks = images, maps, signed, masks
        self.image_hw = (int(images.shape[2]), int(images.shape[3]))
        self.clip_percentile, self.detail_size = clip_percentile, detail_size
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` (least recently used entries dropped beyond the cache size)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self._cache[key] = value
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return value

    def value_range(self, index: int, method: str) -> tuple[float, float]:
        """The colour range ``(vmin, vmax)`` of the map of ``method`` for image ``index``."""
        return self.cached(
            ("range", method, int(index)),
            lambda: map_range(self.maps[method][int(index)], self.signed[method], self.clip_percentile),
        )

    def cell(self, index: int, method: str, limit: int) -> dict[str, Any]:
        """The payload of one map: raw values (block means above ``limit`` a side) and colour range."""

        def make() -> dict[str, Any]:
            m = self.maps[method][index]
            h, w = m.shape
            k = math.ceil(max(h, w) / limit)
            kind = "pixel" if (h, w) == self.image_hw else ("grid" if h < self.image_hw[0] else "pixel")
            block = ""
            if k > 1:
                size = (math.ceil(h / k), math.ceil(w / k))
                m = F.adaptive_avg_pool2d(m[None, None], size)[0, 0]
                kind, block = "block", f"{h / size[0]:.3g}\u00d7{w / size[1]:.3g}"
            vmin, vmax = self.value_range(index, method)
            data = base64.b64encode(m.numpy().astype("<f4").tobytes()).decode("ascii")
            return {
                "data": data, "h": int(m.shape[0]), "w": int(m.shape[1]), "vmin": float(vmin),
                "vmax": float(vmax), "kind": kind, "block": block,
            }  # fmt: skip

        return self.cached(("cell", method, index, limit), make)

    def image_src(self, index: int, size: int) -> str:
        """Data URI of image ``index``, downscaled to ``size`` when larger (smaller images are scaled by CSS)."""

        def make() -> str:
            big = max(self.image_hw) > size
            return png_data_uri(self.images[index], size=size if big else None)

        return self.cached(("img", index, size), make)

    def contour_src(self, index: int) -> str:
        """Data URI of the contour layer of mask ``index`` ("" without masks)."""
        if self.masks is None:
            return ""

        def make() -> str:
            h = max(self.image_hw)
            scale = max(1, round(self.detail_size / h))
            layer = contour_layer(
                self.masks[index], scale=scale, thickness=max(1, round(2 * h * scale / self.detail_size))
            )
            return png_data_uri(layer)

        return self.cached(("contour", index), make)
