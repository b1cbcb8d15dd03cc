"""AttributionViewer: attribution maps of several methods over their images, side by side.

A paged grid (rows: images; columns: the raw image, then one map per method), each map drawn as a
colormap overlay on its image, with a global opacity slider, a colormap selector and a method
selector. Hovering a map reads its value at the pixel under the mouse; clicking a row shows that
image large with all the shown methods side by side, the object mask contour over each, and an
optional table of metrics per method.

How it renders (the same in JupyterLab, under ``panel serve`` and in Playwright): the grid and the
detail view are each one small :class:`panel.custom.JSComponent` (:class:`MapGrid`). Python sends
each image once as a PNG and each map as its raw float32 values (base64, at most ``payload_size``
pixels a side: larger maps are sent as block means), with the colour range of the map and the
colormap as a 256-colour lookup table. The browser colours the values into a ``<canvas>`` stacked
over the image, so opacity and colormap changes only send a number or a table, and the value under
the mouse is read from the same array that is drawn. Clicking a row sets the component's
``selected`` parameter, which the viewer watches.

Colour scale: each map is normalised on its own ("per map"). A method whose maps have any negative
value is *signed*: its maps are shown on ``[-s, s]`` with ``s`` the ``clip_percentile``-th
percentile of ``|map|`` (99.5 by default, so that a few extreme pixels do not wash out the rest;
beyond it colours saturate), and the default colormap is the diverging ``RdBu_r`` (white at 0).
Other methods are shown on ``[0, s]`` with ``s`` the percentile of the map, in ``inferno``. Each
map's range is printed under it (and with ticks under each map of the detail view). The opacity is
uniform by default; "fade near 0" (``fade=True``) scales each pixel's opacity by ``|value| / s``, so
the image shows through wherever the map is near 0.
"""

from __future__ import annotations

import base64
import html
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import panel as pn
import param
import torch
import torch.nn.functional as F
from panel.custom import JSComponent
from panel.viewable import Viewer

from workbench._core.validation import check_images
from workbench.widgets._common import (
    COLORMAPS,
    LiveHTML,
    check_index,
    colormap_lut,
    contour_layer,
    ensure_extension,
    map_overlay,
    map_range,
    paging_controls,
    png_data_uri,
    widget_kwargs,
)
from workbench.widgets.dataset_viewer import _check_bool_matrix, _check_index_vector, _names, predict

AUTO = "auto"
UPSAMPLING = ("nearest", "bilinear")
_CACHE_SIZE = 2048
_SIGNED_DEFAULT, _UNSIGNED_DEFAULT = "RdBu_r", "inferno"
_SEP = " \u00b7 "

_CSS = """
:host { --wb-ok: #1b7f3b; --wb-bad: #c62828; --wb-accent: #1565c0; --wb-muted: #5f6368; }
.wb-header { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px; color: #202124; }
.wb-header .wb-title { font-weight: 600; font-size: 15px; margin-right: 10px; }
.wb-header .wb-summary { color: var(--wb-muted); }
.wb-header .wb-hint { color: #80868b; }
.wb-label .wb-value { color: #202124; font-variant-numeric: tabular-nums; display: inline-block; min-width: 30px; }
.wb-pageinfo, .wb-label { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px;
  color: var(--wb-muted); white-space: nowrap; line-height: 30px; }
.wb-detail-info { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px; color: #202124; }
.wb-detail-info .wb-detail-title { font-weight: 600; font-size: 15px; margin-right: 10px; }
.wb-detail-info .wb-facts { color: var(--wb-muted); }
.wb-detail-info .wb-ok { color: var(--wb-ok); font-weight: 600; }
.wb-detail-info .wb-bad { color: var(--wb-bad); font-weight: 600; }
.wb-metrics { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 12px; color: #202124; }
.wb-metrics .wb-section { font-weight: 600; font-size: 13px; margin: 2px 0 4px 0; }
.wb-metrics .wb-note { color: var(--wb-muted); font-size: 11px; margin-top: 3px; }
.wb-metrics table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.wb-metrics th, .wb-metrics td { padding: 3px 10px; border-bottom: 1px solid #e8eaed; text-align: right; }
.wb-metrics th { font-weight: 500; color: var(--wb-muted); }
.wb-metrics th.wb-method, .wb-metrics td.wb-method { text-align: left; font-weight: 600; color: #202124; }
.wb-metrics .wb-mean { color: #9aa0a6; font-size: 11px; margin-left: 4px; }
"""

_GRID_CSS = """
:host { display: block; }
.wb-attr { position: relative; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-size: 12px; color: #202124; }
.wb-readout { font-size: 12px; line-height: 18px; min-height: 18px; padding: 3px 8px; margin: 0 0 6px 0;
  background: #f1f3f4; border-radius: 4px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  font-variant-numeric: tabular-nums; }
.wb-readout.wb-idle { color: #5f6368; }
.wb-readout.wb-stale { color: #80868b; }
.wb-readout b { font-weight: 600; }
.wb-rows { display: flex; flex-direction: column; gap: 2px; }
.wb-row { display: flex; gap: 6px; padding: 3px; border: 2px solid transparent; border-radius: 6px; }
.wb-attr-grid .wb-row.wb-item { cursor: pointer; }
.wb-attr-grid .wb-row.wb-item:hover { background: #f8fbff; border-color: #d2e3fc; }
.wb-row.wb-item:focus-visible { outline: 2px solid #1565c0; outline-offset: 1px; }
.wb-attr-grid .wb-row.wb-selected, .wb-attr-grid .wb-row.wb-selected:hover { border-color: #1565c0; background: #e8f0fe; }
.wb-row.wb-head { padding-bottom: 0; align-items: flex-end; }
.wb-attr-detail .wb-row { flex-wrap: wrap; gap: 14px; padding: 0; }
.wb-cell { display: flex; flex-direction: column; align-items: stretch; gap: 2px; flex: none; }
.wb-stack { position: relative; border-radius: 3px; overflow: hidden; box-shadow: 0 0 0 1px #dadce0; background: #000; }
.wb-stack > img, .wb-stack > canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block; }
.wb-base { image-rendering: pixelated; }
.wb-map.wb-nearest { image-rendering: pixelated; }
.wb-contour { pointer-events: none; image-rendering: pixelated; }
.wb-map-cell .wb-stack { cursor: crosshair; }
.wb-caption { font-size: 11px; line-height: 13px; color: #5f6368; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; text-align: center; font-variant-numeric: tabular-nums; }
.wb-caption.wb-ok { color: #1b7f3b; }
.wb-caption.wb-bad { color: #c62828; font-weight: 600; }
.wb-col-title { font-weight: 600; font-size: 12px; line-height: 15px; text-align: center; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.wb-attr-grid .wb-head .wb-col-title { white-space: normal; overflow-wrap: anywhere; display: -webkit-box;
  -webkit-line-clamp: 2; -webkit-box-orient: vertical; }
.wb-attr-detail .wb-col-title { font-size: 13px; text-align: left; }
.wb-cbar { height: 8px; border-radius: 2px; box-shadow: inset 0 0 0 1px rgba(0, 0, 0, 0.15); margin-top: 2px; }
.wb-ticks { display: flex; justify-content: space-between; font-size: 10px; line-height: 12px; color: #5f6368;
  font-variant-numeric: tabular-nums; }
.wb-attr-detail .wb-ticks { font-size: 11px; line-height: 13px; }
.wb-tip { position: absolute; pointer-events: none; z-index: 10; background: rgba(32, 33, 36, 0.92); color: #fff;
  font-size: 11px; line-height: 14px; padding: 2px 6px; border-radius: 3px; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.wb-empty { color: #5f6368; font-style: italic; padding: 12px; font-size: 13px; }
"""


class MapGrid(JSComponent):
    """Rows of an image followed by attribution maps drawn over it (``mode="grid"``: one row per
    image, click a row to select it; ``mode="detail"``: one large row with a colorbar under each map).

    Each row of ``rows`` is a dict: ``index``, ``src`` (data URI of the image), ``alt``, ``caption``
    and ``sub`` (caption lines), ``status`` ("ok", "bad" or ""), ``contour`` (data URI of a
    transparent contour layer, or ""), and ``cells``: method key -> ``{"data": base64 float32
    little-endian values, "h", "w", "vmin", "vmax", "kind", "block"}`` with ``kind`` "pixel" (one
    value per image pixel), "grid" (a coarser map, one value per cell) or "block" (block means of a
    larger map). ``columns`` lists the methods: ``{"key", "title", "signed", "cmap"}``; ``luts``
    maps colormap names to 768 RGB bytes.
    """

    rows = param.List(default=[], doc="Rows to draw, in order.")
    columns = param.List(default=[], doc="The map columns: key, title, signed, cmap.")
    luts = param.Dict(default={}, doc="Colormap name -> 256 RGB triples, flattened.")
    image_shape = param.List(default=[1, 1], doc="(H, W) of the images, for pixel coordinates.")
    cell_size = param.Integer(default=96, bounds=(16, None), doc="Width of a cell in screen pixels.")
    opacity = param.Number(default=0.6, bounds=(0.0, 1.0), doc="Opacity of the maps over the images.")
    smooth = param.Boolean(default=False, doc="Bilinear (True) or nearest-neighbour upsampling of the maps.")
    fade = param.Boolean(default=False, doc="Scale each map pixel's opacity by its distance from 0.")
    selected = param.Integer(default=-1, doc="Index of the selected image (grid mode; -1: none).")
    mode = param.Selector(default="grid", objects=["grid", "detail"], constant=True)
    scale_note = param.String(default="", doc="How the colour range is chosen (tooltip of the colorbars).")

    _stylesheets = [_GRID_CSS]

    _esm = """
    export function render({ model, el }) {
      const detail = model.mode === "detail";
      const root = document.createElement("div");
      root.className = "wb-attr " + (detail ? "wb-attr-detail" : "wb-attr-grid");
      root.dataset.mode = model.mode;
      const readout = document.createElement("div");
      readout.className = "wb-readout wb-idle";
      readout.setAttribute("aria-live", "polite");
      const body = document.createElement("div");
      body.className = "wb-rows";
      const tip = document.createElement("div");
      tip.className = "wb-tip";
      tip.hidden = true;
      root.append(readout, body, tip);
      el.appendChild(root);
      const HINT = "Hover a map to read its value";

      function decode(b64) {
        const bin = atob(b64);
        const view = new DataView(new ArrayBuffer(bin.length));
        for (let i = 0; i < bin.length; i++) { view.setUint8(i, bin.charCodeAt(i)); }
        const out = new Float32Array(bin.length >> 2);
        for (let i = 0; i < out.length; i++) { out[i] = view.getFloat32(4 * i, true); }
        return out;
      }

      function fmt(v) {
        if (!Number.isFinite(v)) { return String(v); }
        if (v === 0) { return "0"; }
        const a = Math.abs(v);
        if (a >= 1e-3 && a < 1e4) { return String(Number(v.toPrecision(3))); }
        return v.toExponential(2).replace("e-", "e\u2212");
      }

      function lut(name) {
        return model.luts[name] || Object.values(model.luts)[0] || [];
      }

      function gradient(name) {
        const t = lut(name);
        const stops = [];
        for (let k = 0; k <= 16; k++) {
          const i = Math.min(255, Math.round(k * 255 / 16));
          stops.push(`rgb(${t[3 * i]}, ${t[3 * i + 1]}, ${t[3 * i + 2]}) ${(k * 100 / 16).toFixed(2)}%`);
        }
        return `linear-gradient(to right, ${stops.join(", ")})`;
      }

      function paint(canvas, cell, values, cmap) {
        const t = lut(cmap);
        canvas.width = cell.w;
        canvas.height = cell.h;
        const ctx = canvas.getContext("2d");
        const img = ctx.createImageData(cell.w, cell.h);
        const span = (cell.vmax - cell.vmin) || 1;
        const centred = cell.vmin < 0 && cell.vmax > 0, half = Math.max(-cell.vmin, cell.vmax);
        for (let p = 0; p < values.length; p++) {
          const v = values[p];
          let k = Math.round((v - cell.vmin) / span * 255);
          k = k < 0 ? 0 : (k > 255 ? 255 : k);
          img.data[4 * p] = t[3 * k];
          img.data[4 * p + 1] = t[3 * k + 1];
          img.data[4 * p + 2] = t[3 * k + 2];
          let a = 1;
          if (model.fade) { a = centred ? Math.abs(v) / half : (v - cell.vmin) / span; }
          img.data[4 * p + 3] = Math.round(255 * (a < 0 ? 0 : (a > 1 ? 1 : a)));
        }
        ctx.putImageData(img, 0, 0);
      }

      function div(cls, text) {
        const d = document.createElement("div");
        d.className = cls;
        if (text !== undefined) { d.textContent = text; }
        return d;
      }

      function colorbar(col, ticks) {
        const wrap = div("wb-scale");
        const bar = div("wb-cbar");
        bar.style.background = gradient(col.cmap);
        wrap.title = model.scale_note;
        const tk = div("wb-ticks");
        for (const t of ticks) { tk.appendChild(div("wb-tick", t)); }
        wrap.append(bar, tk);
        return wrap;
      }

      function idle() {
        readout.className = "wb-readout wb-idle";
        readout.textContent = HINT + (detail ? "" : " \u00b7 click a row to inspect it");
      }

      function hover(ev, stack, row, col, cell, values) {
        const r = stack.getBoundingClientRect();
        const fx = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 0.999999);
        const fy = Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 0.999999);
        const [H, W] = model.image_shape;
        const pr = Math.floor(fy * H), pc = Math.floor(fx * W);
        const mr = Math.floor(fy * cell.h), mc = Math.floor(fx * cell.w);
        const v = values[mr * cell.w + mc];
        let where = "";
        if (cell.kind === "grid") { where = ` \u00b7 cell (${mr}, ${mc}) of ${cell.h}\u00d7${cell.w}`; }
        if (cell.kind === "block") { where = ` \u00b7 mean of a ${cell.block} px block`; }
        readout.className = "wb-readout wb-live";
        readout.replaceChildren(
          document.createTextNode(`${col.title} \u00b7 image ${row.index} \u00b7 (${pr}, ${pc}) = `),
          Object.assign(document.createElement("b"), { className: "wb-value", textContent: fmt(v) }),
          document.createTextNode(where),
        );
        readout.dataset.method = col.key;
        readout.dataset.index = String(row.index);
        readout.dataset.value = String(v);
        const rr = root.getBoundingClientRect();
        tip.textContent = fmt(v);
        tip.hidden = false;
        const x = ev.clientX - rr.left + 12, y = ev.clientY - rr.top + 14;
        tip.style.left = Math.min(x, rr.width - tip.offsetWidth - 2) + "px";
        tip.style.top = y + "px";
      }

      function mark() {
        for (const r of body.querySelectorAll(".wb-item")) {
          const on = Number(r.dataset.index) === model.selected;
          r.classList.toggle("wb-selected", on);
          r.setAttribute("aria-pressed", on ? "true" : "false");
        }
      }

      function style() {
        for (const c of body.querySelectorAll("canvas.wb-map")) {
          c.style.opacity = String(model.opacity);
          c.classList.toggle("wb-nearest", !model.smooth);
        }
        root.dataset.opacity = String(model.opacity);
      }

      function build() {
        const [H, W] = model.image_shape;
        const cw = model.cell_size, ch = Math.max(1, Math.round(cw * H / W));
        body.replaceChildren();
        idle();
        tip.hidden = true;
        const row0 = model.rows.length ? model.rows[0] : null;
        root.dataset.index = detail && row0 ? String(row0.index) : "";
        root.dataset.methods = model.columns.map((c) => c.key).join(",");
        root.dataset.fade = String(model.fade);
        if (!model.rows.length) { body.appendChild(div("wb-empty", "No images.")); return; }
        if (!detail) {  // header: column titles and the colour scale of each method
          const head = div("wb-row wb-head");
          const first = div("wb-cell wb-image-cell");
          first.style.width = cw + "px";
          first.appendChild(div("wb-col-title", "image"));
          head.appendChild(first);
          for (const col of model.columns) {
            const c = div("wb-cell wb-map-cell");
            c.style.width = cw + "px";
            const title = div("wb-col-title", col.title);
            title.title = col.title;
            c.append(title, colorbar(col, col.signed ? ["\u2212s", "0", "+s"] : ["0", "s"]));
            head.appendChild(c);
          }
          body.appendChild(head);
        }
        for (const row of model.rows) {
          const r = div("wb-row wb-item");
          r.dataset.index = String(row.index);
          if (!detail) {
            r.setAttribute("role", "button");
            r.tabIndex = 0;
            r.setAttribute("aria-label", row.alt);
            r.addEventListener("click", () => { model.selected = row.index; });
            r.addEventListener("keydown", (ev) => {
              if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); model.selected = row.index; return; }
              const step = { ArrowUp: -1, ArrowDown: 1 }[ev.key];
              if (step === undefined) { return; }
              const items = Array.from(body.querySelectorAll(".wb-item"));
              const next = items[items.indexOf(r) + step];
              if (next) { ev.preventDefault(); next.focus(); model.selected = Number(next.dataset.index); }
            });
          }
          // the image itself
          const ic = div("wb-cell wb-image-cell");
          ic.style.width = cw + "px";
          ic.dataset.index = String(row.index);
          if (detail) { ic.appendChild(div("wb-col-title", "image")); }
          const is = div("wb-stack");
          is.style.width = cw + "px";
          is.style.height = ch + "px";
          const img = document.createElement("img");
          img.className = "wb-base";
          img.src = row.src;
          img.alt = row.alt;
          img.draggable = false;
          is.appendChild(img);
          if (row.contour) {
            const ct = document.createElement("img");
            ct.className = "wb-contour";
            ct.src = row.contour;
            ct.alt = "";
            is.appendChild(ct);
          }
          ic.appendChild(is);
          ic.appendChild(div("wb-caption", row.caption));
          if (row.sub) { ic.appendChild(div("wb-caption" + (row.status ? " wb-" + row.status : ""), row.sub)); }
          r.appendChild(ic);
          // one map per method
          for (const col of model.columns) {
            const cell = row.cells[col.key];
            if (cell === undefined) { continue; }  // rows and columns of one update arrive one by one
            const c = div("wb-cell wb-map-cell");
            c.style.width = cw + "px";
            c.dataset.index = String(row.index);
            c.dataset.method = col.key;
            if (detail) { c.appendChild(div("wb-col-title", col.title)); }
            const st = div("wb-stack");
            st.style.width = cw + "px";
            st.style.height = ch + "px";
            const base = document.createElement("img");
            base.className = "wb-base";
            base.src = row.src;
            base.alt = "";
            base.draggable = false;
            const canvas = document.createElement("canvas");
            canvas.className = "wb-map";
            canvas.setAttribute("role", "img");
            canvas.setAttribute("aria-label", `${col.title} map of image ${row.index}`);
            const values = decode(cell.data);
            paint(canvas, cell, values, col.cmap);
            st.append(base, canvas);
            if (row.contour) {
              const ct = document.createElement("img");
              ct.className = "wb-contour";
              ct.src = row.contour;
              ct.alt = "";
              st.appendChild(ct);
            }
            st.addEventListener("mousemove", (ev) => hover(ev, st, row, col, cell, values));
            st.addEventListener("mouseleave", () => { tip.hidden = true; readout.classList.add("wb-stale"); });
            c.appendChild(st);
            if (detail) {
              c.appendChild(colorbar(col, col.signed ? [fmt(cell.vmin), "0", fmt(cell.vmax)] : ["0", fmt(cell.vmax)]));
            } else {
              const cap = div("wb-caption", col.signed ? `\u00b1${fmt(cell.vmax)}` : `0\u2013${fmt(cell.vmax)}`);
              cap.title = `colour range of this map: [${fmt(cell.vmin)}, ${fmt(cell.vmax)}]. ${model.scale_note}`;
              c.appendChild(cap);
            }
            r.appendChild(c);
          }
          body.appendChild(r);
        }
        mark();
        style();
      }

      // Parameters changed together arrive as separate events: draw once, after the last of them.
      let pending = false;
      function schedule() {
        if (pending) { return; }
        pending = true;
        queueMicrotask(() => { pending = false; build(); });
      }

      build();
      model.on(["rows", "columns", "luts", "cell_size", "image_shape", "fade"], schedule);
      model.on("selected", mark);
      model.on(["opacity", "smooth"], style);
    }
    """


# ---------------------------------------------------------------- validation


def _as_tensor(x: Any, name: str, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        try:
            return torch.from_numpy(x)
        except TypeError as err:
            raise ValueError(f"{name}: could not convert the array of dtype {x.dtype} to a tensor") from err
    raise ValueError(f"{name}: expected a torch.Tensor of shape {what}, got {type(x).__name__}")


def _check_maps(
    maps_by_method: Any, n: int, image_hw: tuple[int, int]
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, bool]]:
    """Validate ``maps_by_method``: a non-empty dict name -> (N, h, w) finite float maps."""
    if not isinstance(maps_by_method, Mapping):
        raise ValueError(
            "maps_by_method: expected a dict {method name: maps of shape (N, H, W)}, got"
            f" {type(maps_by_method).__name__}"
        )
    if not maps_by_method:
        raise ValueError("maps_by_method: expected at least one method, got an empty dict")
    maps: OrderedDict[str, torch.Tensor] = OrderedDict()
    signed: dict[str, bool] = {}
    H, W = image_hw
    for key, value in maps_by_method.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"maps_by_method: method names must be non-empty strings, got {key!r}")
        name = f"maps_by_method[{key!r}]"
        m = _as_tensor(value, name, f"({n}, H, W)")
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3:
            hint = " (one map? add a batch dimension with m[None])" if m.ndim == 2 else ""
            raise ValueError(f"{name}: expected shape ({n}, H, W), got {tuple(m.shape)}{hint}")
        if m.shape[0] != n:
            raise ValueError(
                f"{name}: expected {n} maps (one per image), got shape {tuple(m.shape)}; maps must be (N, H, W)"
            )
        h, w = int(m.shape[1]), int(m.shape[2])
        if h < 1 or w < 1:
            raise ValueError(f"{name}: got an empty map, shape {tuple(m.shape)}")
        if h * W != w * H:
            raise ValueError(
                f"{name}: maps of shape {(h, w)} do not have the aspect ratio of the {(H, W)} images;"
                " expected (H, W) or a coarser grid such as (8, 8) for square images"
            )
        if m.is_complex():
            raise ValueError(f"{name}: expected real values, got dtype {m.dtype}")
        m = m.detach().to("cpu", torch.float32)
        finite = torch.isfinite(m).flatten(1).all(1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            kind = "NaN" if bool(torch.isnan(m).any()) else "infinite"
            shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            raise ValueError(f"{name}: method {key!r} has {kind} values in the maps of images [{shown}]")
        maps[key] = m.contiguous()
        signed[key] = bool((m < 0).any())
    return maps, signed


def _check_metrics(metrics: Any, methods: Sequence[str], n: int) -> dict[str, dict[str, Any]]:
    """``{method: {metric: float or (N,) per-image values}}`` -> the same with floats / float arrays."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"metrics: expected a dict {{method: {{metric: value}}}}, got {type(metrics).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for method, scores in metrics.items():
        if method not in methods:
            raise ValueError(f"metrics: unknown method {method!r}; the methods are {list(methods)}")
        if not isinstance(scores, Mapping):
            raise ValueError(
                f"metrics[{method!r}]: expected a dict {{metric name: value}}, got {type(scores).__name__}"
            )
        out[method] = {}
        for metric, value in scores.items():
            where = f"metrics[{method!r}][{metric!r}]"
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{where}: expected a number or {n} per-image numbers, got {value!r}"
                ) from err
            if arr.ndim == 0:
                out[method][str(metric)] = float(arr)
            elif arr.shape == (n,):
                out[method][str(metric)] = arr
            else:
                raise ValueError(
                    f"{where}: expected a number or shape ({n},) (one per image), got shape {arr.shape}"
                )
    return out


def _fmt(v: float) -> str:
    """Numbers as the browser shows them: 3 significant digits, exponent outside [1e-3, 1e4)."""
    if not math.isfinite(v):
        return "\u2013" if math.isnan(v) else str(v)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{float(f'{v:.3g}'):g}"
    return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+").replace("e-", "e\u2212")


class AttributionViewer(Viewer):
    """Attribution maps of several methods over their images: a paged grid, hover values, a detail view.

    Rows are images, columns the raw image and then one map per method, drawn as a colormap
    overlay on the image. Hover a map to read the value under the mouse ("method · image i ·
    (row, col) = value"); click a row (or call :meth:`select`) to show that image large with all
    shown methods side by side and the object mask contour over each.

    Parameters
    ----------
    images
        (N, 3, H, W) float tensor in [0, 1].
    maps_by_method
        ``{method name: maps}``, each (N, H, W) (or (N, 1, H, W)), float, possibly signed, finite.
        Coarser maps with the images' aspect ratio, e.g. (N, 8, 8) for a Sobol grid, are upsampled
        for display (nearest neighbour, or bilinear with ``upsampling="bilinear"``).
    model
        Optional classifier; when given without ``predictions``, it runs once here (batched, under
        inference mode) to predict each image's class. Its ``labels`` name the classes when
        ``class_names`` is not given.
    masks
        (N, H, W) bool ground-truth object masks, drawn as a contour in the detail view.
    labels, predictions
        (N,) integer class indices, shown under each image (a wrong prediction in red).
    class_names
        Names of the class indices (default "0", "1", ...).
    metrics
        ``{method: {metric name: value}}``, shown as a table under the detail view; a value is one
        number (a score over the dataset) or (N,) numbers (one per image: the table shows the
        selected image's value and the mean). See also :attr:`metrics`.
    max_rows
        Images per page of the grid.
    cell_size, detail_size
        Width of a grid cell and of a detail panel, in screen pixels.
    clip_percentile
        The colour range of a map is set by this percentile of its (absolute) values: see the
        module docs. 100 uses the maximum.
    payload_size
        Maps larger than this (a side) are sent to the browser as block means for the grid (the
        detail view allows twice as many values); the readout says so.
    title
        Heading shown above the grid.
    **params
        Initial values of the parameters: ``methods``, ``cmap``, ``opacity``, ``upsampling``,
        ``fade``, ``selected``, ``show_mask``.

    Attributes
    ----------
    selected, page, methods, cmap, opacity, upsampling, fade, show_mask
        The state (``param`` parameters, watchable); widgets and clicks change them, and so can code.
    """

    selected = param.Integer(default=0, bounds=(0, None), doc="Index of the image in the detail view.")
    page = param.Integer(default=0, bounds=(0, None), doc="Current page (0-based) of the grid.")
    methods = param.ListSelector(default=[], objects=[], doc="The methods shown, as columns.")
    cmap = param.Selector(
        default=AUTO,
        objects=[AUTO, *COLORMAPS],
        doc=f'Colormap of the maps; "auto": {_SIGNED_DEFAULT} for signed methods, {_UNSIGNED_DEFAULT} for the others.',
    )
    opacity = param.Number(
        default=0.6, bounds=(0.0, 1.0), step=0.05, doc="Opacity of the maps over the images."
    )
    upsampling = param.Selector(
        default="nearest", objects=list(UPSAMPLING), doc="How maps coarser than the image are upsampled."
    )
    show_mask = param.Boolean(default=True, doc="Draw the object mask contour in the detail view.")
    fade = param.Boolean(
        default=False,
        doc="Fade each map pixel by its distance from 0 (|value| / s), so the image shows where the map is near 0.",
    )

    def __init__(
        self,
        images: torch.Tensor,
        maps_by_method: Mapping[str, torch.Tensor],
        model: torch.nn.Module | None = None,
        masks: Any = None,
        labels: Any = None,
        predictions: Any = None,
        class_names: Sequence[str] | None = None,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        max_rows: int = 8,
        cell_size: int = 96,
        detail_size: int = 200,
        clip_percentile: float = 99.5,
        payload_size: int = 64,
        title: str = "Attribution maps",
        **params: Any,
    ):
        ensure_extension()
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        check_images(images, name="images", channels=3)
        n, _, h, w = images.shape
        for name, value, lo, hi in (
            ("max_rows", max_rows, 1, 100),
            ("cell_size", cell_size, 32, 512),
            ("detail_size", detail_size, 64, 1024),
            ("payload_size", payload_size, 4, 512),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
                raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
        if isinstance(clip_percentile, bool) or not (
            isinstance(clip_percentile, int | float) and 0 < clip_percentile <= 100
        ):
            raise ValueError(f"clip_percentile: expected a number in (0, 100], got {clip_percentile!r}")

        self.images = images.detach().cpu()
        self.n, self.image_hw = int(n), (int(h), int(w))
        self.maps, self.signed = _check_maps(maps_by_method, self.n, self.image_hw)
        self.method_names = list(self.maps)
        self.masks = (
            None
            if masks is None
            else _check_bool_matrix(masks, "masks", (self.n, h, w), "N, H, W like the images")
        )
        self.labels = None if labels is None else _check_index_vector(labels, "labels", self.n)
        self.confidences = None
        if predictions is not None:
            self.predictions = _check_index_vector(predictions, "predictions", self.n)
        elif model is not None:
            if not isinstance(model, torch.nn.Module):
                raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
            preds, confs = predict(model, self.images)
            self.predictions, self.confidences = preds.numpy(), confs.numpy()
        else:
            self.predictions = None
        if class_names is None and model is not None:
            try:
                class_names = list(model.labels)
            except (AttributeError, TypeError):
                class_names = None
        present = [a for a in (self.labels, self.predictions) if a is not None]
        top = max([int(a.max()) for a in present], default=-1)
        self.class_names = _names(class_names, top + 1 if class_names is None else 0, "class_names", "")
        for name, arr in (("labels", self.labels), ("predictions", self.predictions)):
            if arr is not None and int(arr.max()) >= len(self.class_names):
                raise ValueError(
                    f"{name}: class index {int(arr.max())} is out of range for {len(self.class_names)} class_names"
                )
        self._metrics = _check_metrics(metrics, self.method_names, self.n)
        self.max_rows, self.cell_size, self.detail_size = int(max_rows), int(cell_size), int(detail_size)
        self.payload_size, self.clip_percentile = int(payload_size), float(clip_percentile)
        self.title = str(title)
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

        methods = params.pop("methods", None)
        selected = params.pop("selected", 0)
        super().__init__(**params)
        self.param.methods.objects = list(self.method_names)
        self.param.methods.check_on_set = True  # unknown method names fail
        self.param.selected.bounds = (0, self.n - 1)
        self.param.page.bounds = (0, self.n_pages - 1)
        self.methods = list(self.method_names) if methods is None else list(methods)
        self.select(selected)
        self.page = self.selected // self.max_rows
        self._build()
        self.param.watch(self._on_methods, ["methods"])
        self.param.watch(self._on_cmap, ["cmap"])
        self.param.watch(self._on_style, ["opacity", "upsampling", "fade"])
        self.param.watch(self._on_page, ["page"])
        self.param.watch(self._on_selected, ["selected"])
        self.param.watch(self._render_detail, ["show_mask"])

    # ------------------------------------------------------------------ public state
    @property
    def shown_methods(self) -> list[str]:
        """The shown methods, in the order of ``maps_by_method``."""
        chosen = set(self.methods)
        return [m for m in self.method_names if m in chosen]

    @property
    def n_pages(self) -> int:
        """Number of pages of the grid (at least 1)."""
        return max(1, math.ceil(self.n / self.max_rows))

    @property
    def visible_indices(self) -> list[int]:
        """Indices of the images (rows) on the current page."""
        start = self.page * self.max_rows
        return list(range(start, min(start + self.max_rows, self.n)))

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """``{method: {metric: float or (N,) array}}`` shown under the detail view; assign to replace."""
        return {m: dict(s) for m, s in self._metrics.items()}

    @metrics.setter
    def metrics(self, value: Mapping[str, Mapping[str, Any]] | None) -> None:
        self._metrics = _check_metrics(value, self.method_names, self.n)
        self._render_metrics()

    def select(self, index: int) -> None:
        """Show image ``index`` (0 <= index < N) in the detail view (and its page in the grid)."""
        index = check_index(index, self.n)
        self.selected = index

    def next_page(self) -> None:
        """Go to the next page of the grid (stays on the last one)."""
        self.page = min(self.page + 1, self.n_pages - 1)

    def previous_page(self) -> None:
        """Go to the previous page of the grid (stays on the first one)."""
        self.page = max(self.page - 1, 0)

    def colormap_of(self, method: str) -> str:
        """The colormap ``method`` is drawn with (``cmap``, or the "auto" choice for its sign)."""
        self._check_method(method)
        if self.cmap != AUTO:
            return self.cmap
        return _SIGNED_DEFAULT if self.signed[method] else _UNSIGNED_DEFAULT

    def value_range(self, index: int, method: str) -> tuple[float, float]:
        """The colour range ``(vmin, vmax)`` of the map of ``method`` for image ``index``."""
        self._check_method(method)
        key = ("range", method, int(index))
        if key not in self._cache:
            self._remember(
                key, map_range(self.maps[method][int(index)], self.signed[method], self.clip_percentile)
            )
        return self._cache[key]

    def overlay(self, index: int, method: str) -> np.ndarray:
        """The map of ``method`` over image ``index`` as the viewer draws it, (H, W, 3) uint8
        (the current colormap, opacity and upsampling; e.g. for a figure: ``PIL.Image.fromarray``)."""
        if not 0 <= int(index) < self.n:
            raise IndexError(f"overlay: index {index} is out of range for {self.n} images")
        vmin, vmax = self.value_range(index, method)
        return map_overlay(
            self.images[int(index)], self.maps[method][int(index)], self.colormap_of(method),
            self.opacity, vmin, vmax, smooth=self.upsampling == "bilinear", fade=self.fade,
        )  # fmt: skip

    def panel(self) -> pn.viewable.Viewable:
        """The Panel layout (also what displaying the viewer shows)."""
        return self._layout

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def __repr__(self) -> str:
        return (
            f"AttributionViewer(n={self.n}, methods={self.shown_methods}, selected={self.selected},"
            f" page={self.page + 1}/{self.n_pages})"
        )

    __str__ = __repr__

    # ------------------------------------------------------------------ payloads
    def _check_method(self, method: str) -> None:
        if method not in self.maps:
            raise ValueError(f"unknown method {method!r}; the methods are {self.method_names}")

    def _remember(self, key: tuple, value: Any) -> None:
        self._cache[key] = value
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _cached(self, key: tuple, make) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self._remember(key, value)
        return value

    def _cell(self, index: int, method: str, limit: int) -> dict[str, Any]:
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

        return self._cached(("cell", method, index, limit), make)

    def _image_src(self, index: int, size: int) -> str:
        def make() -> str:
            big = max(self.image_hw) > size
            return png_data_uri(self.images[index], size=size if big else None)

        return self._cached(("img", index, size), make)

    def _contour_src(self, index: int) -> str:
        if self.masks is None or not self.show_mask:
            return ""

        def make() -> str:
            h = max(self.image_hw)
            scale = max(1, round(self.detail_size / h))
            layer = contour_layer(
                self.masks[index], scale=scale, thickness=max(1, round(2 * h * scale / self.detail_size))
            )
            return png_data_uri(layer)

        return self._cached(("contour", index), make)

    def _captions(self, i: int) -> tuple[str, str, str, str]:
        """(caption, second line, status, accessible name) of image ``i``."""
        label = None if self.labels is None else self.class_names[self.labels[i]]
        pred = None if self.predictions is None else self.class_names[self.predictions[i]]
        caption = f"#{i}" + (f" {label}" if label is not None else "")
        sub, status = "", ""
        alt = f"Image {i}" + (f": label {label}" if label is not None else "")
        if pred is not None:
            conf = "" if self.confidences is None else f" {self.confidences[i]:.2f}"
            sub = ("\u2192 " if label is not None else "pred ") + pred + conf
            alt += f"{',' if label is not None else ':'} prediction {pred}"
            if label is not None:
                status = "ok" if label == pred else "bad"
                alt += " (mistake)" if status == "bad" else ""
        return caption, sub, status, alt

    def _row(self, i: int, detail: bool) -> dict[str, Any]:
        caption, sub, status, alt = self._captions(i)
        size = self.detail_size if detail else self.cell_size
        limit = 2 * self.payload_size if detail else self.payload_size
        return {
            "index": i, "src": self._image_src(i, size), "alt": alt, "caption": caption, "sub": sub,
            "status": status, "contour": self._contour_src(i) if detail else "",
            "cells": {m: self._cell(i, m, limit) for m in self.shown_methods},
        }  # fmt: skip

    def _columns(self) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
        cols = [
            {"key": m, "title": m, "signed": self.signed[m], "cmap": self.colormap_of(m)}
            for m in self.shown_methods
        ]
        names = {c["cmap"] for c in cols} or {_SIGNED_DEFAULT}
        return cols, {name: colormap_lut(name).reshape(-1).tolist() for name in sorted(names)}

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        note = (
            f"Each map has its own colour range: signed maps [\u2212s, s], others [0, s], with s the"
            f" {self.clip_percentile:g}th percentile of |value| in the map; colours saturate beyond it."
        )
        common = {
            "image_shape": list(self.image_hw), "opacity": self.opacity,
            "smooth": self.upsampling == "bilinear", "fade": self.fade, "scale_note": note,
        }  # fmt: skip
        self._grid = MapGrid(
            mode="grid", cell_size=self.cell_size, selected=self.selected, margin=(5, 5),
            css_classes=["wb-attr-grid-pane"], **common,
        )  # fmt: skip
        self._grid.param.watch(self._on_grid_click, "selected")
        self._detail_view = MapGrid(
            mode="detail",
            cell_size=self.detail_size,
            margin=(0, 0),
            css_classes=["wb-attr-detail-pane"],
            **common,
        )
        self._detail_info = LiveHTML(
            object="", stylesheets=[_CSS], margin=(0, 0, 6, 0), css_classes=["wb-detail-pane"]
        )
        self._metrics_pane = LiveHTML(
            object="", stylesheets=[_CSS], margin=(8, 0, 0, 0), css_classes=["wb-metrics-pane"]
        )
        kinds = sorted({"signed" if s else "unsigned" for s in self.signed.values()})
        summary = (
            f"{self.n} images \u00b7 {self.image_hw[0]}\u00d7{self.image_hw[1]} px \u00b7"
            f" {len(self.method_names)} methods ({', '.join(kinds)})"
        )
        header = pn.pane.HTML(
            f'<div class="wb-header"><span class="wb-title">{html.escape(self.title)}</span>'
            f'<span class="wb-summary">{html.escape(summary)}</span>'
            '<span class="wb-hint"> \u00b7 hover a map to read values \u00b7 click a row to compare methods</span></div>',
            stylesheets=[_CSS], margin=(0, 5), sizing_mode="stretch_width",
        )  # fmt: skip

        def label(text: str, left: int = 5) -> pn.pane.HTML:
            return pn.pane.HTML(
                f'<span class="wb-label">{text}</span>', stylesheets=[_CSS], margin=(5, 0, 5, left)
            )

        self._methods_widget = pn.widgets.CheckBoxGroup.from_param(
            self.param.methods, **widget_kwargs(pn.widgets.CheckBoxGroup, label=""), inline=True,
            margin=(10, 8, 5, 5), css_classes=["wb-methods"],
        )  # fmt: skip
        self._cmap_widget = pn.widgets.Select.from_param(
            self.param.cmap, **widget_kwargs(pn.widgets.Select, label=""), width=110, margin=(5, 5),
            css_classes=["wb-cmap"],
        )  # fmt: skip
        self._opacity_widget = pn.widgets.FloatSlider.from_param(
            self.param.opacity, **widget_kwargs(pn.widgets.FloatSlider, label=""), step=0.05, width=140,
            show_value=False, margin=(12, 10, 5, 5), css_classes=["wb-opacity"],
        )  # fmt: skip
        self._opacity_label = LiveHTML(
            object=self._opacity_html(),
            stylesheets=[_CSS],
            margin=(5, 0, 5, 12),
            css_classes=["wb-opacity-label"],
        )
        self._upsampling_widget = pn.widgets.RadioButtonGroup.from_param(
            self.param.upsampling,
            **widget_kwargs(pn.widgets.RadioButtonGroup, label="", color="light", variant="outline"),
            width=150, margin=(5, 5), css_classes=["wb-upsampling"],
        )  # fmt: skip
        self._fade_widget = pn.widgets.Checkbox.from_param(
            self.param.fade, **widget_kwargs(pn.widgets.Checkbox, label="fade near 0"),
            margin=(12, 5, 5, 12), css_classes=["wb-fade"],
        )  # fmt: skip
        controls = pn.FlexBox(  # groups of label + widget, wrapped onto several lines when narrow
            pn.Row(label("Methods", 5), self._methods_widget, margin=0),
            pn.Row(label("Colormap", 12), self._cmap_widget, margin=0),
            pn.Row(self._opacity_label, self._opacity_widget, margin=0),
            pn.Row(label("Upsampling", 12), self._upsampling_widget, self._fade_widget, margin=0),
            flex_wrap="wrap", align_items="flex-start", margin=0, css_classes=["wb-controls"],
        )  # fmt: skip
        self._prev, self._next, self._page_info = paging_controls(self.previous_page, self.next_page, _CSS)
        paging = pn.Row(self._prev, self._page_info, self._next, margin=0, visible=self.n_pages > 1)
        mask_toggle = pn.widgets.Checkbox.from_param(
            self.param.show_mask, **widget_kwargs(pn.widgets.Checkbox, label="object mask contour"),
            margin=(6, 0, 0, 0), disabled=self.masks is None, css_classes=["wb-mask-toggle"],
        )  # fmt: skip
        self._detail = pn.Column(
            self._detail_info, self._detail_view, mask_toggle, self._metrics_pane,
            margin=(5, 5, 5, 16), css_classes=["wb-detail"],
            styles={"padding": "10px", "border": "1px solid #dadce0", "border-radius": "8px", "background": "#fff"},
        )  # fmt: skip
        self._layout = pn.Column(
            header, controls,
            pn.FlexBox(pn.Column(self._grid, paging, margin=0), self._detail, flex_wrap="wrap",
                       align_items="flex-start", margin=0),
            sizing_mode="stretch_width", css_classes=["wb-attribution-viewer"],
        )  # fmt: skip
        self._on_methods()

    # ------------------------------------------------------------------ rendering
    def _render_columns(self) -> dict[str, Any]:
        """The column payload (methods shown, their colormaps) for :meth:`_render_grid`/:meth:`_render_detail`;
        sizes the views for that many columns."""
        cols, luts = self._columns()
        k = len(cols)
        self._grid.width = (k + 1) * (self.cell_size + 6) + 24
        per_line = min(k + 1, 4)
        self._detail_view.width = per_line * (self.detail_size + 14) + 4
        self._detail.width = self._detail_view.width + 24
        return {"columns": cols, "luts": luts}

    def _render_grid(self, columns: dict[str, Any] | None = None) -> None:
        rows = [self._row(i, detail=False) for i in self.visible_indices]
        self._grid.param.update(rows=rows, **(columns or {}))
        start = self.page * self.max_rows
        self._page_info.object = (
            f'<span class="wb-pageinfo">Page {self.page + 1} / {self.n_pages} \u00b7 images {start}\u2013'
            f"{min(start + self.max_rows, self.n) - 1}</span>"
        )
        self._prev.disabled = self.page == 0
        self._next.disabled = self.page >= self.n_pages - 1

    def _render_detail(self, *_events: Any, columns: dict[str, Any] | None = None) -> None:
        i = self.selected
        self._detail_view.param.update(rows=[self._row(i, detail=True)], **(columns or {}))
        caption, sub, status, _alt = self._captions(i)
        esc = html.escape
        facts = []
        if self.labels is not None:
            facts.append(f'label <span class="wb-label-value">{esc(self.class_names[self.labels[i]])}</span>')
        if self.predictions is not None:
            conf = "" if self.confidences is None else f" ({self.confidences[i]:.2f})"
            verdict = {"ok": " \u2713", "bad": " \u2717 mistake", "": ""}[status]
            cls = f' class="wb-{status}"' if status else ""
            pred = esc(self.class_names[self.predictions[i]])
            facts.append(f"prediction <span{cls}>{pred}{conf}{verdict}</span>")
        shown = self.shown_methods
        facts.append(f"{len(shown)} method{'s' if len(shown) != 1 else ''}")
        self._detail_info.object = (
            f'<div class="wb-detail-info" data-index="{i}" data-methods="{esc(",".join(shown))}">'
            f'<span class="wb-detail-title">Image #{i}</span>'
            f'<span class="wb-facts">{_SEP.join(facts)}</span></div>'
        )
        self._render_metrics()

    def _render_metrics(self) -> None:
        """The metrics table (a placeholder for a fuller metrics panel: table + curves per method)."""
        rows = [m for m in self.shown_methods if m in self._metrics]
        if not rows:
            self._metrics_pane.object = ""
            self._metrics_pane.visible = False
            return
        names: list[str] = []
        for m in rows:
            names += [k for k in self._metrics[m] if k not in names]
        i = self.selected
        esc = html.escape
        per_image = False
        head = '<th class="wb-method">method</th>' + "".join(f"<th>{esc(k)}</th>" for k in names)
        body = []
        for m in rows:
            cells = [f'<td class="wb-method">{esc(m)}</td>']
            for k in names:
                v = self._metrics[m].get(k)
                if v is None:
                    cells.append("<td>\u2013</td>")
                elif isinstance(v, np.ndarray):
                    per_image = True
                    cells.append(
                        f'<td title="image #{i}; mean over the {self.n} images in grey">{_fmt(float(v[i]))}'
                        f'<span class="wb-mean">({_fmt(float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"))})</span></td>'
                    )
                else:
                    cells.append(f"<td>{_fmt(v)}</td>")
            body.append(f'<tr data-method="{esc(m)}">{"".join(cells)}</tr>')
        note = (
            f'<div class="wb-note">Per-image metrics: image #{i}, mean over all {self.n} images in brackets.</div>'
            if per_image
            else ""
        )
        self._metrics_pane.object = (
            f'<div class="wb-metrics" data-index="{i}"><div class="wb-section">Metrics</div>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}</div>"
        )
        self._metrics_pane.visible = True

    # ------------------------------------------------------------------ callbacks
    def _on_methods(self, *_events: Any) -> None:
        columns = self._render_columns()
        self._render_grid(columns)
        self._render_detail(columns=columns)

    def _on_cmap(self, *_events: Any) -> None:
        columns = self._render_columns()
        for view in (self._grid, self._detail_view):
            view.param.update(**columns)

    def _opacity_html(self) -> str:
        return f'<span class="wb-label">Opacity <span class="wb-value">{self.opacity:.2f}</span></span>'

    def _on_style(self, *_events: Any) -> None:
        self._opacity_label.object = self._opacity_html()
        for view in (self._grid, self._detail_view):
            view.param.update(opacity=self.opacity, smooth=self.upsampling == "bilinear", fade=self.fade)

    def _on_page(self, *_events: Any) -> None:
        self._render_grid()

    def _on_selected(self, *_events: Any) -> None:
        page = self.selected // self.max_rows
        if page != self.page:
            self.page = page
        self._grid.selected = self.selected
        self._render_detail()

    def _on_grid_click(self, event: Any) -> None:
        if event.new is not None and 0 <= event.new < self.n and event.new != self.selected:
            self.selected = int(event.new)
